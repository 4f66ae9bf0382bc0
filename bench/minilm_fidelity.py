"""Fidelity of the real all-MiniLM-L6-v2 compiled by ecospac at several budgets,
per criterion and allocation: cosine of last_hidden_state rows (real tokens) and
of mean-pooled sentence embeddings, against the original. The -act criteria
calibrate on the first 32 of the 64 real sentences; fidelity is reported on
all 64 and on the held-out 32.

    python3 bench/minilm_fidelity.py [.cache/minilm]   (after scripts/demo.sh made the model)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(path, feeds):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def cos(a, b):
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def main(d):
    model = os.path.join(d, "model.onnx")
    feeds = dict(np.load(os.path.join(d, "inputs.npz")))
    mask = feeds["attention_mask"].astype(bool)
    ref = run(model, feeds)
    pool = lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    exe = os.path.join(ROOT, "target/release/ecospac")
    print("| criterion | allocation | budget | whole-model params | token cos | sentence cos | held-out token cos | held-out sentence cos |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        calib = os.path.join(tmp, "calib.npz")
        np.savez(calib, **{k: v[:32] for k, v in feeds.items()})
        for allocation in ("uniform", "global"):
            for criterion in ("coupled", "coupled-act", "uncoupled", "uncoupled-act", "random"):
                for budget in (0.3, 0.5, 0.7, 0.9):
                    out, rep = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "r.json")
                    extra = ["--calibration", calib] if criterion.endswith("-act") else []
                    subprocess.run([exe, "compile", model, "-o", out, "--budget", str(budget), "--criterion", criterion,
                                    "--allocation", allocation, "--report", rep] + extra, check=True, capture_output=True)
                    import json
                    r = json.load(open(rep))
                    ratio = r["float_parameters"]["after"] / r["float_parameters"]["before"]
                    h = run(out, feeds)
                    c = cos(h, ref)
                    tok, held_tok = c[mask].mean(), c[32:][mask[32:]].mean()
                    s = cos(pool(h, mask), pool(ref, mask))
                    print(f"| {criterion} | {allocation} | {budget} | {ratio:.3f} | {tok:.3f} | {s.mean():.3f} | {held_tok:.3f} | {s[32:].mean():.3f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".cache", "minilm"))
