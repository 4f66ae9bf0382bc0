"""Quality of compact models on the real all-MiniLM-L6-v2, side by side in one run:
ecospac (default compile at three budgets, one row per lever switched off) and the
peers (onnxsim 0.8.1, Torch-Pruning 1.6.1, via bench/peers_minilm.py), all from the
same ONNX export, calibrated on the same built-in English corpus, scored held-out.

    bench/quality_minilm.sh            # sets up, builds, exports, then runs this

Held-out data: the 64 sentences of bench/sentences.txt (no tool sees them before
scoring), tokenized to 64 positions (attention_mask marks the real tokens).
Metrics against the original's last_hidden_state:
  all rows     mean row cosine over every position (how the peers were first scored)
  real         mean row cosine over real tokens only
  top-5        mean overlap of each sentence's 5 nearest neighbours (cosine of
               mean-pooled embeddings, among the 64) between compact and original
  speedup      ONNX Runtime CPU, 1 thread, 32 sentences x 64 tokens, original and
               compact alternating, median of ROUNDS rounds
  params       float parameters of the whole model, compact / original
  wall s       the tool's own compile / pruning time
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 12


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def held_out(tokenizer_json):
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(tokenizer_json)
    tk.enable_padding(length=64, pad_id=0, pad_token="[PAD]")
    tk.enable_truncation(64)
    with open(os.path.join(ROOT, "bench", "sentences.txt")) as f:
        lines = [line.strip() for line in f if line.strip()]
    enc = tk.encode_batch(lines)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def run(path, feeds):
    s = session(path)
    names = {i.name for i in s.get_inputs()}
    return s.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def cosine(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def pooled(h, mask):
    m = mask[..., None].astype(h.dtype)
    e = (h * m).sum(1) / m.sum(1)
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def top5(e):
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return [set(np.argsort(-row)[:5]) for row in sim]


def score(path, feeds, ref, ref_top5):
    h = run(path, feeds)
    c = cosine(h, ref)
    mask = feeds["attention_mask"].astype(bool)
    nn = top5(pooled(h, feeds["attention_mask"]))
    overlap = np.mean([len(a & b) / 5 for a, b in zip(nn, ref_top5)])
    return {"all_rows": float(c.mean()), "real": float(c[mask].mean()), "top5": float(overlap)}


def speedups(original, paths, feeds):
    """Median latency ratio original/compact, the original and each compact model alternating."""
    small = {k: v[:32] for k, v in feeds.items()}
    base = session(original)
    out = {}
    for p in paths:
        s = session(p)
        names = {i.name for i in s.get_inputs()}
        f = {k: v for k, v in small.items() if k in names}
        base.run(None, small)
        s.run(None, f)
        ratios = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            base.run(None, small)
            a = time.perf_counter() - t
            t = time.perf_counter()
            s.run(None, f)
            ratios.append(a / (time.perf_counter() - t))
        out[p] = float(np.median(ratios))
    return out


def float_params(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    return int(sum(np.prod(i.dims, dtype=np.int64) for i in m.graph.initializer if i.data_type in floats))


def ecospac(exe, model, out, tokenizer, extra, recipe=None):
    cmd = [exe, "compile", model, "-o", out, "--tokenizer", tokenizer, "--threads", "1"] + extra
    if recipe:
        cmd += ["--recipe", recipe]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    what = [line.strip() for line in r.stderr.splitlines() if "kept per group" in line]
    return wall, "; ".join(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, ".cache", "minilm", "model.onnx"))
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench", "quality"))
    ap.add_argument("--peer-calibration", type=int, default=128, help="calibration texts the peers get")
    ap.add_argument("--skip-peers", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    exe = os.path.join(ROOT, "target", "release", "ecospac")
    feeds = held_out(args.tokenizer)
    ref = run(args.model, feeds)
    ref_top5 = top5(pooled(ref, feeds["attention_mask"]))
    n0 = float_params(args.model)
    rows = []

    def add(tool, setting, budget, path, wall, what=""):
        r = {"tool": tool, "setting": setting, "budget": budget, "path": path, "wall_s": wall, "what": what}
        r.update(score(path, feeds, ref, ref_top5))
        r["params"] = float_params(path) / n0
        rows.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)

    o = lambda name: os.path.join(args.out, name + ".onnx")
    for b in (0.3, 0.5, 0.7):
        wall, what = ecospac(exe, args.model, o(f"ecospac-{b}"), args.tokenizer, ["--budget", str(b)])
        add("ecospac", "default (built-in corpus, 450 texts)", b, o(f"ecospac-{b}"), wall, what)
    levers = [
        ("same data as the peers (128 texts)", ["--calibration-samples", str(args.peer_calibration)], None),
        ("no residual correction in the refit", [], "residual"),
        ("refit off: bias compensation", ["--refit", "bias"], None),
        ("refit off: nothing", ["--refit", "none"], None),
        ("no whole heads (dims inside heads and FFN only)", ["--no-whole-heads"], None),
        ("uniform allocation (every group keeps half)", ["--allocation", "uniform"], None),
        ("criterion variance instead of obs", ["--criterion", "variance"], None),
        ("criterion coupled-act (EcoSpa on activations)", ["--criterion", "coupled-act"], None),
        ("no data: generated token sequences", ["--no-calibration"], None),
        ("no data, weights only (coupled, global, no refit: the old default)",
         ["--criterion", "coupled", "--allocation", "global", "--refit", "none"], None),
    ]
    for i, (setting, extra, special) in enumerate(levers):
        recipe = None
        flags = ["--budget", "0.5"] + extra
        if special == "residual":
            text = subprocess.run([exe, "recipe", "--budget", "0.5"], capture_output=True, text=True, check=True).stdout
            recipe = os.path.join(args.out, "no-residual.toml")
            with open(recipe, "w") as f:
                f.write(text.replace("residual = true", "residual = false"))
            flags = []
        name = f"ecospac-lever{i}"
        wall, what = ecospac(exe, args.model, o(name), args.tokenizer, flags, recipe)
        add("ecospac", setting, 0.5, o(name), wall, what)

    if not args.skip_peers:
        py = os.path.join(ROOT, ".venv-torch", "bin", "python")
        calib = os.path.join(args.out, f"peer-calibration-{args.peer_calibration}.npz")
        peers = os.path.join(ROOT, "bench", "peers_minilm.py")
        subprocess.run([py, peers, "--make-calibration", str(args.peer_calibration), "--calibration", calib], check=True,
                       capture_output=True)
        r = subprocess.run([py, peers, "--model", args.model, "--calibration", calib, "--out-dir", args.out,
                            "--budgets", "0.3,0.5,0.7"], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"peers failed:\n{r.stderr}")
        for line in r.stdout.splitlines():
            rec = json.loads(line)
            if "method" not in rec:
                continue
            if rec.get("path") is None:
                print(json.dumps(rec), file=sys.stderr)
                continue
            add(rec["method"], f"{args.peer_calibration} calibration texts", rec["budget"], rec["path"],
                rec["wall_s"], rec["what"])

    speed = speedups(args.model, [r["path"] for r in rows], feeds)
    for r in rows:
        r["speedup"] = speed[r["path"]]
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("| tool | setting | budget | params | all rows | real | top-5 | speedup | wall s | kept |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['tool']} | {r['setting']} | {r['budget']} | {r['params']:.3f} | {r['all_rows']:.3f} | "
              f"{r['real']:.3f} | {r['top5']:.3f} | {r['speedup']:.2f} | {r['wall_s']:.1f} | {r['what']} |")


if __name__ == "__main__":
    main()
