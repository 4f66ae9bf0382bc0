"""Graphs from the wild, by family: BERT, GPT-2 and LLaMA (random-initialised
with transformers 4.57.6 at hidden 256, 4 layers, 8 heads (LLaMA: 4 key/value
heads), FFN 1024, with the seeded noise on every vector of
`tests/models/make_quant_fixtures.py` so that no two biases are equal),
exported by the TorchScript exporter, and each also as users bring it: after
ONNX Runtime's transformer optimizer (default fusions), statically quantised
(QDQ int8, per-channel, and the operator format `QuantFormat.QOperator`),
dynamically quantised (`quantize_dynamic`,
per-channel), int4 weight-only (`MatMulNBits`, block 32) and in float16.

Each graph is compiled by `ecospac compile --budget 0.5 --calibration-length 128`
(generated calibration sequences: these models have no tokenizer; the decoders'
exports bake the traced length 128 into their Reshape targets) and checked with `verify --masked`
(max |Δ| relative to the largest output); params are `ecospac inspect`'s
weight parameters compact / input; speedup is ONNX Runtime, 1 thread, batch 8
x 128 tokens (1 x 128 for a graph that ONNX Runtime runs on one sample
only, the fused RotaryEmbedding's), the two models alternating, median of 7. Next to it, onnxsim
0.8.1's structured pruning at sparsity 0.5 on the same graph (its head pruning,
then the FFN pruning of the kind that matches the graph: `apply_structured_pruning`,
`_qdq`, `_dynamic_quantize_matmul` or `_matmul_nbits`): params kept, and
whether ONNX Runtime loads and runs what it wrote.

    bench/setup-peers.sh    # onnxsim 0.8.1 into .venv-torch
    cargo build --release
    .venv-torch/bin/python bench/coverage_families.py [--only bert] [--out DIR]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target", "release", "ecospac")
sys.path.insert(0, os.path.join(ROOT, "tests", "models"))
VOCAB, HIDDEN, LAYERS, HEADS, FFN, SEQ = 2000, 256, 4, 8, 1024, 128


def export(family, path):
    import torch
    import transformers as tf
    from transformers import masking_utils
    import make_fixtures as mf
    import make_quant_fixtures as mq
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=FFN, max_position_embeddings=256, attn_implementation="eager")
    if family == "bert":
        model, key = tf.BertModel(tf.BertConfig(**common)), "last_hidden_state"
    elif family == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_positions=256, n_embd=HIDDEN, n_layer=LAYERS,
                                                 n_head=HEADS, n_inner=FFN, attn_implementation="eager"))
        key = "logits"
    else:
        model = tf.LlamaForCausalLM(tf.LlamaConfig(num_key_value_heads=HEADS // 2, **common))
        key = "logits"
    model.eval()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    names = ["input_ids", "attention_mask"]
    module = mf.LastHidden(model, key, names)
    # Traced at the length the benchmark runs: the decoders' exports bake it into their Reshape targets.
    ids = torch.randint(0, VOCAB, (2, SEQ))
    mask = torch.ones(2, SEQ, dtype=torch.int64)
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    masking_utils.sdpa_mask = masking_utils.sdpa_mask_older_torch
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.onnx")
        torch.onnx.export(module, (ids, mask), raw, input_names=names, output_names=[key],
                          dynamic_axes=axes | {key: {0: "batch"}}, opset_version=17, dynamo=False)
        mq.trained_like(raw, path)


def variants(family, out):
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import make_quant_fixtures as mq
    p = lambda n: os.path.join(out, f"{family}-{n}.onnx")  # noqa: E731
    if not os.path.exists(p("exporter")):
        export(family, p("exporter"))
    src = p("exporter")
    if not os.path.exists(p("ortopt")):
        from onnxruntime.transformers import optimizer
        kind = "bert" if family == "bert" else "gpt2"
        optimizer.optimize_model(src, model_type=kind, num_heads=HEADS, hidden_size=HIDDEN,
                                 opt_level=0).save_model_to_file(p("ortopt"))
    if family == "llama" and not os.path.exists(p("ortopt-norope")):
        # ORT's fused RotaryEmbedding takes position_ids of batch 1 only (ONNX
        # Runtime itself fails on a batch), so also without that fusion.
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions
        opts = FusionOptions("gpt2")
        opts.enable_rotary_embeddings = False
        optimizer.optimize_model(src, model_type="gpt2", num_heads=HEADS, hidden_size=HIDDEN, optimization_options=opts,
                                 opt_level=0).save_model_to_file(p("ortopt-norope"))
    for slug, fmt in (("qdq", QuantFormat.QDQ), ("qop", QuantFormat.QOperator)):
        if os.path.exists(p(slug)):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            pre = os.path.join(tmp, "pre.onnx")
            quant_pre_process(src, pre, skip_symbolic_shape=True)
            tokens = mq.Tokens(vocab=VOCAB)
            tokens.items = iter([{k: v[:1] for k, v in feeds(seed).items()} for seed in range(8)])
            quantize_static(pre, p(slug), tokens, quant_format=fmt, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    if not os.path.exists(p("dynq")):
        quantize_dynamic(src, p("dynq"), weight_type=QuantType.QInt8, per_channel=True)
    if not os.path.exists(p("int4")):
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
        q = MatMulNBitsQuantizer(onnx.load(src), algo_config=DefaultWeightOnlyQuantConfig(block_size=32,
                                                                                         is_symmetric=True))
        q.process()
        q.model.save_model_to_file(p("int4"), False)
    if not os.path.exists(p("fp16")):
        from onnxruntime.transformers.float16 import convert_float_to_float16
        onnx.save(convert_float_to_float16(onnx.load(src), keep_io_types=True), p("fp16"))
    norope = [("ORT optimizer, without RotaryEmbedding", p("ortopt-norope"))] if family == "llama" else []
    return [("exporter (TorchScript)", src), ("ORT optimizer, default fusions", p("ortopt"))] + norope + [
            ("QDQ int8, per-channel", p("qdq")), ("QOperator int8, per-channel", p("qop")),
            ("dynamic int8, per-channel", p("dynq")),
            ("int4 MatMulNBits, block 32", p("int4")), ("float16", p("fp16"))]


def session(path):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def feeds(seed=0):
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, VOCAB, (8, SEQ)).astype(np.int64),
            "attention_mask": np.ones((8, SEQ), np.int64)}


def speedup(a, b, x, runs=7):
    sa, sb = session(a), session(b)
    ta, tb = [], []
    for s in (sa, sb):
        s.run(None, x)
    for _ in range(runs):
        for s, t in ((sa, ta), (sb, tb)):
            t0 = time.perf_counter()
            s.run(None, x)
            t.append(time.perf_counter() - t0)
    return float(np.median(ta) / np.median(tb))


def runs_batched(path, x):
    """Whether ONNX Runtime runs the graph on two samples at once."""
    try:
        session(path).run(None, {k: t[:2] for k, t in x.items()})
        return True
    except Exception:  # noqa: BLE001 (its refusal is the answer)
        return False


def params(path):
    r = subprocess.run([EXE, "inspect", path, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise ValueError("ecospac cannot read it: " + r.stderr.strip().splitlines()[-1][:80])
    return json.loads(r.stdout)["weight_parameters"]


def onnxsim(name, path, out):
    """onnxsim's structured pruning of the kind that matches the graph, then its head pruning."""
    import onnxsim.pruning as sp
    kind = ("_qdq" if "QDQ" in name else "_dynamic_quantize_matmul" if "dynamic" in name
            else "_matmul_nbits" if "int4" in name else "")
    try:
        m = getattr(sp, "apply_structured_pruning" + kind)(path, sparsity=0.5)
        if not kind:
            m = sp.apply_attention_head_pruning(m, sparsity=0.5)
    except Exception as e:  # noqa: BLE001 (a peer's failure is a result)
        return f"fails: {type(e).__name__}", None
    import onnx
    onnx.save(m, out)
    try:
        ratio = params(out) / params(path)
    except ValueError as e:
        return str(e).replace("|", "/"), None
    try:
        s = session(out)
        s.run(None, {k: v[:2] for k, v in feeds().items()})
        runs = "yes"
    except Exception as e:  # noqa: BLE001
        runs = "no: " + str(e).splitlines()[0][:60].replace("|", "/")
    return runs, ratio


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench", "coverage-families"))
    ap.add_argument("--only", default="", help="families or graphs whose name contains this")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    x = feeds()
    print("| family | graph | groups | exact (max rel. Δ) | params | speedup | compile s | onnxsim params | onnxsim output runs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for family in ("bert", "gpt2", "llama"):
        for name, path in variants(family, a.out):
            if a.only and a.only not in family and a.only not in name:
                continue
            slug = os.path.splitext(os.path.basename(path))[0]
            out = os.path.join(a.out, slug + ".compact.onnx")
            plan, report = out + ".plan.json", out + ".report.json"
            t0 = time.time()
            r = subprocess.run([EXE, "compile", path, "--budget", "0.5", "--threads", "1", "-o", out,
                                "--calibration-length", str(SEQ),
                                "--emit-plan", plan, "--report", report], capture_output=True, text=True)
            wall = time.time() - t0
            groups = re.search(r"coupling analysis: (\d+) groups", r.stderr)
            groups = groups.group(1) if groups else "0"
            sim_runs, sim_ratio = onnxsim(name, path, os.path.join(a.out, slug + ".onnxsim.onnx"))
            sim = f"{sim_ratio:.3f}" if sim_ratio is not None else "–"
            if r.returncode != 0:
                msg = r.stderr.strip().splitlines()[-1][:140].replace("|", "/")
                print(f"| {family} | {name} | {groups} | refused: {msg} | – | – | {wall:.1f} | {sim} | {sim_runs} |",
                      flush=True)
                continue
            # ONNX Runtime runs some graphs on one sample only (its fused
            # RotaryEmbedding's positions are computed for one): those are
            # checked and timed at batch 1.
            rows = 2 if runs_batched(path, x) else 1
            v = subprocess.run([EXE, "verify", path, out, "--masked", plan, "--runs", "1", "--bind",
                                f"batch={rows},seq={SEQ}"], capture_output=True, text=True)
            delta = re.search(r"\(([0-9.e+-]+) of the largest output\)", v.stdout + v.stderr)
            ratio = params(out) / params(path)
            xs = x if rows == 2 else {k: t[:1] for k, t in x.items()}
            at = "" if rows == 2 else " (batch 1)"
            print(f"| {family} | {name} | {groups} | {delta.group(1) if delta else '?'} | {ratio:.3f} | "
                  f"{speedup(path, out, xs):.2f}{at} | {wall:.1f} | {sim} | {sim_runs} |", flush=True)


if __name__ == "__main__":
    main()
