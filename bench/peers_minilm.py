"""Runs the two peer structured-pruning tools on the real all-MiniLM-L6-v2 and
writes their compact ONNX models, for bench scripts to score next to ecospac.

    bench/setup-peers.sh                                  # onnxsim 0.8.1 + torch-pruning 1.6.1 into .venv-torch
    .venv-torch/bin/python scripts/export_minilm.py .cache/minilm
    .venv-torch/bin/python bench/peers_minilm.py --make-calibration 128 --calibration CALIB.npz
    .venv-torch/bin/python bench/peers_minilm.py --model .cache/minilm/model.onnx \\
        --calibration CALIB.npz --out-dir DIR [--budgets 0.3,0.5,0.7] [--methods onnxsim-l2,...]

Budget B = fraction of the attention (Q, K, V, O) + FFN (intermediate, output)
linear weight-matrix parameters kept (biases and embeddings aside). Writes
DIR/<method>-<budget>.onnx (inputs input_ids/attention_mask/token_type_ids,
output last_hidden_state, dynamic batch and sequence, like the original) and
prints one JSON line per (method, budget).

Methods:
  onnxsim-l2           onnxsim.apply_attention_head_pruning + apply_structured_pruning (L2)
  onnxsim-wanda        apply_attention_head_wanda_pruning + apply_structured_wanda_pruning
  onnxsim-wanda-refit  onnxsim-wanda, then onnxsim.apply_pruning_finetune (closed-form ridge refit)
  tp-l2                Torch-Pruning BasePruner, MagnitudeImportance(p=2), heads + FFN channels
  tp-taylor            the same with GroupTaylorImportance (gradients: see TAYLOR_NOTE)

onnxsim works on ONNX graphs and only recognizes this model's FFN chains and
(decomposed) attention heads once the graph is statically shaped (every Reshape
target a literal; with the dynamic batch/seq of the TorchScript export it
matches nothing at all). So it is run the way its own docs describe: simplify
at a fixed [S, 64] shape (S = --static-batch) and opset 20 (so that its
fuse_gelu makes a native Gelu: the C++ code behind apply_structured_wanda_pruning
does not see through the exported erf-GELU and prunes no FFN channel at opset
17, while the Python apply_structured_pruning does), prune (and refit) there with
calibration batches of that shape; its result (every changed weight/bias keeps
its initializer name) is then carried back into the dynamic-shape original,
whose Reshape targets are rewritten to equivalent literals that infer the head
count (0 = copy a dim, -1 = infer), and checked to match the tool's static
model to float precision.
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np
from importlib.metadata import version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ = 64
HEAD = 32
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
METHODS = ("onnxsim-l2", "onnxsim-wanda", "onnxsim-wanda-refit", "tp-l2", "tp-taylor")
LINEAR_RE = re.compile(r"/encoder/layer\.(\d+)/(attention/self/query|attention/self/key|attention/self/value|"
                       r"attention/output/dense|intermediate/dense|output/dense)/MatMul$")
TAYLOR_NOTE = ("Taylor gradients from a label-free loss: unsupervised SimCSE / MultipleNegativesRanking "
               "(the all-MiniLM training objective): mean-pooled, L2-normalised embeddings of each "
               "calibration batch of 32 under two dropout masks (train mode), in-batch negatives, "
               "cosine scale 20, cross-entropy; gradients summed over the calibration batches as in "
               "Torch-Pruning's ViT Taylor example. (MSE to the original model would give zero "
               "gradients at the unpruned model.)")


def export_module():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import export_minilm  # noqa: E402  (Encoder, MODEL_DIR: the export recipe of the original)
    return export_minilm


# ---------------------------------------------------------------- calibration

def make_calibration(n, path):
    import transformers as tf
    ex = export_module()
    with open(os.path.join(ROOT, "frontends", "data", "calibration-en.txt")) as f:
        texts = [line.rstrip("\n") for line in f if line.strip()][:n]
    tok = tf.AutoTokenizer.from_pretrained(ex.MODEL_DIR)
    enc = tok(texts, padding="max_length", max_length=SEQ, truncation=True, return_tensors="np")
    arrays = {k: enc[k].astype(np.int64) for k in INPUTS}
    np.savez(path, **arrays)
    print(json.dumps({"calibration": path, "texts": len(texts), "shape": list(arrays["input_ids"].shape)}), flush=True)


def load_calibration(path):
    d = np.load(path)
    c = {k: d[k].astype(np.int64) for k in INPUTS}
    assert c["input_ids"].ndim == 2 and c["input_ids"].shape[1] == SEQ, c["input_ids"].shape
    return c


# ---------------------------------------------------------------- measuring

def linear_weights(model):
    """{(layer, role): 2-D float weight array} of the attention/FFN MatMuls of a
    TorchScript-exported BERT graph (node names as scripts/export_minilm.py writes them)."""
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        m = LINEAR_RE.search(n.name)
        if n.op_type == "MatMul" and m and n.input[1] in inits:
            out[(int(m.group(1)), m.group(2))] = numpy_helper.to_array(inits[n.input[1]])
    return out


def float_params(model):
    import onnx
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
    return int(sum(np.prod(i.dims, dtype=np.int64) for i in model.graph.initializer if i.data_type in floats))


def match_blocks(orig, pruned, width):
    """Indices of `orig`'s column blocks (of `width`) that `pruned`'s blocks are (nearest) copies of."""
    ob = orig.reshape(orig.shape[0], -1, width)
    pb = pruned.reshape(pruned.shape[0], -1, width)
    return sorted(int(np.argmin(((ob - pb[:, [j]]) ** 2).sum((0, 2)))) for j in range(pb.shape[1]))


def describe(orig_model, model):
    """Kept fraction of the linear weights, a one-line summary and what was removed per layer."""
    ow, pw = linear_weights(orig_model), linear_weights(model)
    assert set(ow) == set(pw), "written model lost attention/FFN MatMuls"
    kept = sum(w.size for w in pw.values()) / sum(w.size for w in ow.values())
    layers, heads, ffn = [], [], []
    for layer in sorted({k[0] for k in ow}):
        q0, q1 = ow[(layer, "attention/self/query")], pw[(layer, "attention/self/query")]
        i0, i1 = ow[(layer, "intermediate/dense")], pw[(layer, "intermediate/dense")]
        h0, h1 = q0.shape[1] // HEAD, q1.shape[1] // HEAD
        kept_heads = match_blocks(q0, q1, HEAD)
        layers.append({"layer": layer, "heads": h1, "heads_removed": [h for h in range(h0) if h not in kept_heads],
                       "ffn": i1.shape[1], "ffn_removed": i0.shape[1] - i1.shape[1]})
        heads.append(h1)
        ffn.append(i1.shape[1])
        for role in ("attention/self/key", "attention/self/value"):
            assert pw[(layer, role)].shape == q1.shape, (layer, role)
        assert pw[(layer, "attention/output/dense")].shape == (q1.shape[1], q0.shape[0])
        assert pw[(layer, "output/dense")].shape == (i1.shape[1], i0.shape[0])
    fmt = lambda v: str(v[0]) if len(set(v)) == 1 else "/".join(map(str, v))
    h0, f0 = ow[(0, "attention/self/query")].shape[1] // HEAD, ow[(0, "intermediate/dense")].shape[1]
    return kept, f"heads {h0}->{fmt(heads)}, FFN {f0}->{fmt(ffn)}", layers


def ort_session(model_or_path, threads):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.log_severity_level = 3  # onnxsim leaves stale value_info in its static models: shape-merge warnings
    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(src, o, providers=["CPUExecutionProvider"])


def run_ort(sess, calib, batch=32):
    n = calib["input_ids"].shape[0]
    return np.concatenate([sess.run(None, {k: v[i:i + batch] for k, v in calib.items()})[0] for i in range(0, n, batch)])


def check_written(path, calib, reference, threads):
    """Loads and runs the written model in onnxruntime on all calibration rows and on
    an odd shape (batch 3, seq 17); returns its mean token cosine to the original
    (calibration rows, real tokens only: a sanity check, not a score)."""
    sess = ort_session(path, threads)
    out = run_ort(sess, calib)
    n = calib["input_ids"].shape[0]
    assert out.shape == (n, SEQ, 384) and np.isfinite(out).all(), out.shape
    odd = sess.run(None, {k: v[:3, :17] for k, v in calib.items()})[0]
    assert odd.shape == (3, 17, 384) and np.isfinite(odd).all(), odd.shape
    mask = calib["attention_mask"].astype(bool)
    cos = (out * reference).sum(-1) / (np.linalg.norm(out, axis=-1) * np.linalg.norm(reference, axis=-1) + 1e-12)
    return float(cos[mask].mean())


# ---------------------------------------------------------------- onnxsim

def literalize_reshapes(model):
    """Rewrites every Reshape whose target shape is computed at run time (Shape ->
    Gather -> Concat, as the TorchScript export writes them) into an equivalent
    literal: 0 where the target copies the input's dim at that index, -1 for the
    first dim that does not (the head count, or the merged head width), literals
    elsewhere -- found from the Reshape's input and output shapes when the graph
    runs at two different (batch, seq). The
    result runs at any batch/seq and lets the head count change underneath it."""
    import onnx
    from onnx import helper, numpy_helper
    g = model.graph
    inits = {i.name for i in g.initializer}
    reshapes = [n for n in g.node if n.op_type == "Reshape" and n.input[1] not in inits]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in dict.fromkeys(x for n in reshapes for x in (n.input[0], n.output[0])):
        if name not in have:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    sess = ort_session(probe, 1)
    outs = [o.name for o in sess.get_outputs()]
    runs = [dict(zip(outs, sess.run(None, {i.name: np.ones((b, s), np.int64) for i in sess.get_inputs()})))
            for b, s in ((2, 7), (3, 11))]
    for n in reshapes:
        targets = [list(r[n.output[0]].shape) for r in runs]  # the realized shape (the computed target may hold -1)
        shapes = [r[n.input[0]].shape for r in runs]
        lit, inferred = [], False
        for j in range(len(targets[0])):
            vals = [t[j] for t in targets]
            if all(j < len(s) and s[j] == v for s, v in zip(shapes, vals)):
                lit.append(0)
            elif vals[0] == vals[1] and not inferred:
                lit.append(-1)
                inferred = True
            elif vals[0] == vals[1]:
                lit.append(vals[0])
            else:
                raise RuntimeError(f"Reshape {n.name}: target {targets} is not expressible as a literal")
        name = f"{n.name}/literal_shape"
        g.initializer.append(numpy_helper.from_array(np.array(lit, np.int64), name))
        n.input[1] = name
    return model


def remove_dead_nodes(model):
    g = model.graph
    while True:
        used = {o.name for o in g.output} | {x for n in g.node for x in n.input}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {x for n in g.node for x in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return model


def transplant(dynamic_lit, static_orig, static_pruned):
    """Copies every float initializer the tool changed (by name) from its static-shape
    result into the dynamic-shape original. Returns the new model."""
    import onnx
    from onnx import numpy_helper
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    before = {i.name: i for i in static_orig.graph.initializer}
    target = onnx.ModelProto()
    target.CopyFrom(dynamic_lit)
    slots = {i.name: k for k, i in enumerate(target.graph.initializer)}
    changed = 0
    for init in static_pruned.graph.initializer:
        if init.data_type not in floats:
            continue  # int64 shape constants: the literal -1 dims in dynamic_lit take care of those
        old = before.get(init.name)
        if old is not None and old.SerializeToString() == init.SerializeToString():
            continue
        if init.name not in slots:
            raise RuntimeError(f"the tool changed float initializer {init.name!r}, absent from the original graph")
        k = slots[init.name]
        if len(target.graph.initializer[k].dims) != len(init.dims):
            raise RuntimeError(f"rank of {init.name!r} changed")
        target.graph.initializer[k].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init), init.name))
        changed += 1
    if not changed:
        raise RuntimeError("the tool changed no weight")
    return target


def onnxsim_batches(calib, static_batch):
    n = calib["input_ids"].shape[0] // static_batch
    if n == 0:
        raise SystemExit(f"--static-batch {static_batch} exceeds the calibration rows")
    return [{k: v[i * static_batch:(i + 1) * static_batch] for k, v in calib.items()} for i in range(n)]


def run_onnxsim(method, budget, ctx):
    import onnx
    import onnxsim
    from onnxsim import pruning
    args, calib = ctx["args"], ctx["calib"]
    orig = ctx["orig"]
    att_total, ffn_total = ctx["att_total"], ctx["ffn_total"]
    wanda = method != "onnxsim-l2"
    batches = onnxsim_batches(calib, args.static_batch)
    t0 = time.perf_counter()
    # Opset 20 lets onnxsim's fuse_gelu turn the exported erf-GELU into a native Gelu: the C++
    # matcher behind apply_structured_(wanda_)pruning_cpp does not see through the decomposed
    # erf-GELU (at opset 17 the Wanda variant silently prunes no FFN channel at all).
    static, ok = onnxsim.simplify(orig, overwrite_input_shapes={k: [args.static_batch, SEQ] for k in INPUTS},
                                  target_opset_version=20)
    if not ok:
        raise RuntimeError("onnxsim.simplify failed its check")
    t_simplify = time.perf_counter() - t0
    # Heads first, at sparsity 1 - B (onnxsim keeps max(1, round(12 * B)) heads a layer).
    if wanda:
        heads = pruning.apply_attention_head_wanda_pruning(static, calibration_data=batches, sparsity=1.0 - budget)
    else:
        heads = pruning.apply_attention_head_pruning(static, sparsity=1.0 - budget)
    att_kept = attention_kept_static(heads)
    # Then FFN channels at the sparsity that brings attention + FFN to the budget.
    need = budget * (att_total + ffn_total) - att_kept
    if need <= 0:
        return {"path": None, "reason": f"the attention left after head pruning alone keeps "
                                        f"{att_kept / (att_total + ffn_total):.3f} of attention+FFN > budget {budget}: "
                                        f"FFN pruning cannot reach it"}
    ffn_frac = min(1.0, need / ffn_total)
    width = ctx["ffn_width"]
    keep = max(1, round(ffn_frac * width))
    sparsity = 1.0 - keep / width
    note = []
    if keep / width > 1 - 1e-9:
        pruned = heads
        note.append("FFN not pruned: heads alone meet the budget")
    elif wanda:
        pruned = pruning.apply_structured_wanda_pruning(heads, calibration_data=batches, sparsity=sparsity)
    else:
        pruned = pruning.apply_structured_pruning(heads, sparsity=sparsity)
    dims = {i.name: i.dims for i in pruned.graph.initializer}
    got = sorted({int(dims[name][1]) for (layer, role), name in STATIC_NAMES.items() if role == "intermediate/dense"})
    if got != [keep]:
        note.append(f"asked the tool to keep {keep} FFN channels a layer, it kept {got}")
    refit_s = None
    if method == "onnxsim-wanda-refit":
        tr = time.perf_counter()
        pruned = onnxsim.apply_pruning_finetune(static, pruned, calibration_data=batches)
        refit_s = time.perf_counter() - tr
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = remove_dead_nodes(transplant(ctx["orig_lit"], static, pruned))
    # The carried-back dynamic model must compute what the tool's static model computes.
    feeds = batches[0]
    a = ort_session(pruned, args.threads).run(None, feeds)[0]
    b = ort_session(out, args.threads).run(None, feeds)[0]
    err = float(np.abs(a - b).max())
    if err > 1e-3:
        raise RuntimeError(f"carried-back model differs from onnxsim's static one by {err}")
    fn = ("apply_attention_head_wanda_pruning + apply_structured_wanda_pruning" if wanda
          else "apply_attention_head_pruning + apply_structured_pruning")
    if method == "onnxsim-wanda-refit":
        fn += f" + apply_pruning_finetune (reg_param default 1e-2; {refit_s:.0f}s of wall_s)"
    note.insert(0, f"onnxsim {version('onnxsim')}: simplify(overwrite_input_shapes=[{args.static_batch},{SEQ}], "
                   f"target_opset_version=20 for a native Gelu) "
                   f"{t_simplify:.1f}s, {fn}; head sparsity {1 - budget:.3f}, FFN sparsity {sparsity:.4f} "
                   f"(keep {keep}/{width}); importance_norm l2, per-chain (global_sparsity False) as defaulted"
                   + (f"; calibration {len(batches)} batches x {args.static_batch}" if wanda else "")
                   + f"; carried back to the dynamic-shape graph, max |diff| to the tool's static model {err:.1e}")
    return {"model": out, "wall_s": wall, "post_s": time.perf_counter() - t1, "note": "; ".join(note)}


def attention_kept_static(model):
    """Elements of the attention (Q, K, V, O) weights in a simplified (Gemm) graph, found by
    the initializer names of the original's MatMul weights (the simplifier keeps them)."""
    dims = {i.name: i.dims for i in model.graph.initializer}
    return int(sum(np.prod(dims[name]) for (layer, role), name in STATIC_NAMES.items() if role.startswith("attention")))


STATIC_NAMES = {}


# ---------------------------------------------------------------- torch-pruning

def run_tp(method, budget, ctx):
    import torch
    import torch_pruning as tp
    import transformers as tf
    from transformers.models.bert.modeling_bert import BertSelfAttention
    args, calib = ctx["args"], ctx["calib"]
    ex = export_module()
    torch.manual_seed(0)
    model = tf.BertModel.from_pretrained(ex.MODEL_DIR, attn_implementation="eager").eval()
    ratio = 1.0 - budget
    t0 = time.perf_counter()
    example = {k: torch.from_numpy(calib[k][:2]) for k in INPUTS}
    if method == "tp-l2":
        imp = tp.importance.MagnitudeImportance(p=2, group_reduction="mean")  # as examples/transformers/prune_hf_bert.py
    else:
        imp = tp.importance.GroupTaylorImportance()  # as examples/transformers/prune_timm_vit.py
    num_heads, ignored = {}, [model.pooler]
    for m in model.modules():
        if isinstance(m, BertSelfAttention):
            num_heads[m.query] = num_heads[m.key] = num_heads[m.value] = m.num_attention_heads
    # Hidden size kept: only the inner dims of attention and FFN are pruned ("bottleneck" in
    # Torch-Pruning's ViT example, which ignores each MLP's fc2; here BertOutput.dense).
    for layer in model.encoder.layer:
        ignored.append(layer.output.dense)
    pruner = tp.pruner.BasePruner(
        model, example, global_pruning=False, importance=imp, iterative_steps=1,
        pruning_ratio=ratio, num_heads=num_heads, prune_head_dims=False, prune_num_heads=True,
        head_pruning_ratio=ratio, output_transform=lambda out: out.pooler_output.sum(), ignored_layers=ignored)
    grad_s = 0.0
    if method == "tp-taylor":
        tg = time.perf_counter()
        model.zero_grad()
        model.train()  # dropout gives the two views of each text
        n = calib["input_ids"].shape[0]
        for i in range(0, n, 32):
            feeds = {k: torch.from_numpy(v[i:i + 32]) for k, v in calib.items()}
            mask = feeds["attention_mask"].unsqueeze(-1).float()
            views = []
            for _ in range(2):
                h = model(**feeds).last_hidden_state
                views.append(torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1))
            scores = 20.0 * views[0] @ views[1].T
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(scores.shape[0]))
            loss.backward()
        model.eval()
        grad_s = time.perf_counter() - tg
    for g in pruner.step(interactive=True):
        g.prune()
    for m in model.modules():
        if isinstance(m, BertSelfAttention):
            m.num_attention_heads = pruner.num_heads[m.query]
            m.attention_head_size = m.query.out_features // m.num_attention_heads
            m.all_head_size = m.query.out_features
    model.config.intermediate_size = model.encoder.layer[0].intermediate.dense.out_features
    model.zero_grad(set_to_none=True)
    wall = time.perf_counter() - t0
    # Export exactly as scripts/export_minilm.py does.
    t1 = time.perf_counter()
    import io
    import onnx
    args_t = tuple(torch.from_numpy(calib[k][:2]) for k in INPUTS)
    axes = {0: "batch", 1: "seq"}
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(ex.Encoder(model), args_t, buf, opset_version=17, dynamo=False,
                          input_names=list(INPUTS), output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "last_hidden_state": axes})
    out = onnx.load_from_string(buf.getvalue())
    note = (f"torch-pruning {version('torch-pruning')}: BasePruner, "
            f"global_pruning False, pruning_ratio = head_pruning_ratio = {ratio:.3f}, prune_num_heads True, "
            f"prune_head_dims False, ignored pooler + every BertOutput.dense (hidden size kept); "
            f"{'MagnitudeImportance(p=2, group_reduction=mean)' if method == 'tp-l2' else 'GroupTaylorImportance()'}"
            f"; heads removed = ceil(ratio*12), FFN kept = int(1536*(1-ratio)) per layer (Torch-Pruning's rounding)")
    if method == "tp-taylor":
        note += f"; {TAYLOR_NOTE} Gradient pass {grad_s:.1f}s (in wall_s)"
    return {"model": out, "wall_s": wall, "post_s": time.perf_counter() - t1, "note": note}


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, ".cache", "minilm", "model.onnx"))
    ap.add_argument("--calibration", required=True, help="npz with int64 [N, 64] input_ids/attention_mask/token_type_ids")
    ap.add_argument("--make-calibration", type=int, metavar="N",
                    help="first tokenize the first N lines of frontends/data/calibration-en.txt into --calibration")
    ap.add_argument("--out-dir")
    ap.add_argument("--budgets", default="0.3,0.5,0.7")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--static-batch", type=int, default=16, help="batch onnxsim simplifies/calibrates at (seq is 64)")
    ap.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads")
    args = ap.parse_args()
    if args.make_calibration:
        make_calibration(args.make_calibration, args.calibration)
    if not args.out_dir:
        if not args.make_calibration:
            ap.error("--out-dir is required (unless only --make-calibration)")
        return
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; known: {', '.join(METHODS)}")
    budgets = [float(b) for b in args.budgets.split(",") if b]
    os.makedirs(args.out_dir, exist_ok=True)

    import onnx
    import torch
    torch.set_num_threads(args.threads)
    calib = load_calibration(args.calibration)
    orig = onnx.load(args.model)
    ow = linear_weights(orig)
    if len(ow) != 36:
        raise SystemExit(f"{args.model}: expected 36 attention/FFN MatMuls of a TorchScript MiniLM export, found {len(ow)}")
    att_total = sum(w.size for (l, r), w in ow.items() if r.startswith("attention"))
    ffn_total = sum(w.size for (l, r), w in ow.items() if not r.startswith("attention"))
    # Initializer names of the attention/FFN weights (the simplifier keeps them).
    inits_by_layer = {}
    for n in orig.graph.node:
        m = LINEAR_RE.search(n.name)
        if n.op_type == "MatMul" and m:
            inits_by_layer[(int(m.group(1)), m.group(2))] = n.input[1]
    STATIC_NAMES.clear()
    STATIC_NAMES.update(inits_by_layer)
    reference = run_ort(ort_session(args.model, args.threads), calib)
    ctx = {"args": args, "calib": calib, "orig": orig, "att_total": att_total, "ffn_total": ffn_total,
           "ffn_width": ow[(0, "intermediate/dense")].shape[1]}
    if any(m.startswith("onnxsim") for m in methods):
        lit = onnx.ModelProto()
        lit.CopyFrom(orig)
        ctx["orig_lit"] = literalize_reshapes(lit)

    for method in methods:
        for budget in budgets:
            rec = {"method": method, "budget": budget}
            res = (run_onnxsim if method.startswith("onnxsim") else run_tp)(method, budget, ctx)
            if res.get("path", "") is None:
                rec.update({"path": None, "reason": res["reason"]})
                print(json.dumps(rec), flush=True)
                continue
            path = os.path.join(args.out_dir, f"{method}-{budget}.onnx")
            onnx.save(res["model"], path)
            kept, what, layers = describe(orig, res["model"])
            cos = check_written(path, calib, reference, args.threads)
            rec.update({"path": path, "wall_s": round(res["wall_s"], 2), "post_s": round(res["post_s"], 2),
                        "kept_linear_fraction": round(kept, 4), "float_params": float_params(res["model"]),
                        "float_params_original": float_params(orig), "what": what,
                        "sanity_calib_token_cos": round(cos, 4), "per_layer": layers, "note": res["note"]})
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
