"""Runs two ONNX models in ONNX Runtime (CPU) on the same inputs and compares
their first outputs: max abs difference and mean row cosine (over the last axis,
mask-weighted rows when an attention mask is given).

    .venv/bin/python scripts/compare_onnx.py A.onnx B.onnx INPUTS.npz [--exact | --atol X]

Exits 1 when the outputs differ more than allowed (default: bit-identical).
"""
import argparse
import sys

import numpy as np
import onnxruntime as ort


def run(path, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    return s.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("inputs")
    p.add_argument("--atol", type=float, default=0.0)
    args = p.parse_args()
    feeds = dict(np.load(args.inputs))
    a, b = run(args.a, feeds), run(args.b, feeds)
    if a.shape != b.shape:
        print(f"shapes differ: {a.shape} vs {b.shape}")
        return 1
    diff = float(np.max(np.abs(a - b)))
    ra, rb = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    cos = np.sum(ra * rb, 1) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1) + 1e-12)
    if "attention_mask" in feeds:
        w = feeds["attention_mask"].reshape(-1).astype(bool)
        cos = cos[w]
    identical = np.array_equal(a.view(np.uint32), b.view(np.uint32))
    print(f"outputs {a.shape}: max |a-b| = {diff:.3g}, mean cosine = {cos.mean():.6f}, bit-identical = {identical}")
    ok = identical if args.atol == 0.0 else diff <= args.atol
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
