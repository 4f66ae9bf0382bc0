"""Graphs from the wild on the real all-MiniLM-L6-v2: the plain export and the
same model after ONNX Runtime's transformer optimizer (LayerNorm + residual
fused into SkipLayerNormalization only; and the default BERT fusions with fused
Attention, EmbedLayerNormalization, BiasGelu), plus a QDQ int8 graph
(`quantize_static`, per-channel) and an int4 weight-only graph (`MatMulNBits`,
block 32, symmetric). Each compiled by `ecospac compile --budget 0.5`
with the built-in corpus: groups found, exactness (`verify --masked`, max |Δ|
relative to the largest output), parameter ratio (`ecospac inspect`'s
weights: float, and quantised data with its zero points), ONNX Runtime speedup
(1 thread, 32 × 64, alternating) and held-out fidelity against its own original.

    .venv-torch/bin/python bench/coverage_minilm.py --tokenizer TOKENIZER_JSON [--only SUBSTRING]
"""
import json
import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality_minilm as q  # noqa: E402

ROOT = q.ROOT
EXE = os.path.join(ROOT, "target", "release", "ecospac")


def variants(src, out):
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions
    only_skip = FusionOptions("bert")
    for k in ("enable_attention", "enable_bias_gelu", "enable_gelu", "enable_embed_layer_norm",
              "enable_bias_skip_layer_norm", "enable_gelu_approximation"):
        setattr(only_skip, k, False)
    paths = {"exporter (TorchScript)": src}
    for name, opts in (("ORT optimizer: SkipLayerNorm only", only_skip), ("ORT optimizer: default fusions", None)):
        p = os.path.join(out, re.sub(r"\W+", "-", name).strip("-").lower() + ".onnx")
        if not os.path.exists(p):
            optimizer.optimize_model(src, model_type="bert", num_heads=12, hidden_size=384,
                                     optimization_options=opts, opt_level=0).save_model_to_file(p)
        paths[name] = p
    p = os.path.join(out, "qdq-int8.onnx")
    if not os.path.exists(p):
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                f = q.held_out(TOKENIZER)
                self.items = iter([{k: v[i:i + 1] for k, v in f.items()} for i in range(8)])

            def get_next(self):
                return next(self.items, None)
        quantize_static(src, p, Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    paths["QDQ int8 (quantize_static, per-channel)"] = p
    p = os.path.join(out, "int4-matmulnbits.onnx")
    if not os.path.exists(p):
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                     MatMulNBitsQuantizer)
        quant = MatMulNBitsQuantizer(onnx.load(src), algo_config=DefaultWeightOnlyQuantConfig(block_size=32,
                                                                                             is_symmetric=True))
        quant.process()
        quant.model.save_model_to_file(p, False)
    paths["int4 MatMulNBits (block 32, symmetric)"] = p
    return paths


def main():
    global TOKENIZER
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, ".cache", "minilm", "model.onnx"))
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench", "coverage"))
    ap.add_argument("--only", default="", help="run the graphs whose name contains this")
    ap.add_argument("--extra", default="", help="more compile flags, e.g. '--refit none'")
    a = ap.parse_args()
    TOKENIZER = a.tokenizer
    os.makedirs(a.out, exist_ok=True)
    feeds = q.held_out(a.tokenizer)
    print("| graph | ops ecospac does not model or slice | groups | exact (max rel. Δ) | params | speedup | all rows | real | compile s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, path in variants(a.model, a.out).items():
        if a.only not in name:
            continue
        out = os.path.join(a.out, re.sub(r"\W+", "-", name).strip("-").lower() + ".compact.onnx")
        plan = out + ".plan.json"
        t0 = time.time()
        report = out + ".report.json"
        r = subprocess.run([EXE, "compile", path, "--budget", "0.5", "--tokenizer", a.tokenizer, "--threads", "1",
                            "-o", out, "--emit-plan", plan, "--report", report] + a.extra.split(), capture_output=True, text=True)
        wall = time.time() - t0
        err = r.stderr
        groups = re.search(r"coupling analysis: (\d+) groups", err)
        unmodelled = re.search(r"does not model or slice(?: yet)?: (.*?)(?:\)|$)", err, re.M)
        unm = unmodelled.group(1).strip() if unmodelled else "–"
        if r.returncode != 0:
            msg = err.strip().splitlines()[-1][:160].replace("|", "/")
            print(f"| {name} | {unm} | 0 | – | 1.000 | – | – | – | {wall:.1f} |  <!-- {msg} -->")
            print(f"{name}: {msg}", file=sys.stderr)
            continue
        v = subprocess.run([EXE, "verify", path, out, "--masked", plan, "--text", os.path.join(ROOT, "bench", "sentences.txt"),
                            "--tokenizer", a.tokenizer, "--runs", "1"], capture_output=True, text=True)
        v = v.stdout + v.stderr
        delta = re.search(r"\(([0-9.e+-]+) of the largest output\)", v)
        ref = q.run(path, feeds)
        ref5 = q.top5(q.pooled(ref, feeds["attention_mask"]))
        s = q.score(out, feeds, ref, ref5)
        speed = q.speedups(path, [out], feeds)[out]
        with open(report) as f:
            p = json.load(f)["parameters"]
        ratio = p["after"] / p["before"]
        print(f"| {name} | {unm} | {groups.group(1) if groups else '?'} | {delta.group(1) if delta else '?'} | "
              f"{ratio:.3f} | {speed:.2f} | {s['all_rows']:.3f} | {s['real']:.3f} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
