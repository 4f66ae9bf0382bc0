"""ONNX Runtime (CPU) latency of an original model and its ecospac-compiled
version, side by side in one run, next to the ratio of their MatMul FLOPs
(the ideal speedup).

    python3 bench/ort_speed.py ORIGINAL.onnx COMPACT.onnx [--seq 128] [--batches 1 8] [--runs 20]
"""
import argparse
import json
import subprocess
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def matmul_flops(path, batch, seq):
    """MatMul/Gemm FLOPs as ecospac's cost model counts them (`*` binds the dims a
    TorchScript trace leaves unnamed: they are batch-sized in these models)."""
    exe = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target/release/ecospac")
    out = subprocess.run([exe, "inspect", path, "--json", "--bind", f"batch={batch},seq={seq},*={batch}"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["matmul_flops"]


def feeds_for(sess, batch, seq):
    f = {}
    for i in sess.get_inputs():
        shape = [batch if k == 0 else seq for k, _ in enumerate(i.shape)]
        f[i.name] = np.ones(shape, np.int64) if "mask" in i.name else np.random.default_rng(0).integers(0, 1000, shape, dtype=np.int64)
    return f


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("compact")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print("| threads | batch | original (ms) | compact (ms) | speedup | FLOPs ratio (ideal) | speedup / ideal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for threads in (1, os.cpu_count()):
        sessions = []
        for p in (args.original, args.compact):
            o = ort.SessionOptions()
            o.intra_op_num_threads = threads
            sessions.append(ort.InferenceSession(p, o, providers=["CPUExecutionProvider"]))
        for batch in args.batches:
            feeds = feeds_for(sessions[0], batch, args.seq)
            times = [[], []]
            for s in sessions:
                s.run(None, feeds)
            for _ in range(args.runs):
                for k, s in enumerate(sessions):
                    t = time.perf_counter()
                    s.run(None, feeds)
                    times[k].append(time.perf_counter() - t)
            a, b = statistics.median(times[0]), statistics.median(times[1])
            ideal = matmul_flops(args.original, batch, args.seq) / matmul_flops(args.compact, batch, args.seq)
            print(f"| {threads} | {batch} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f} | {ideal:.2f} | {a / b / ideal:.2f} |", flush=True)


if __name__ == "__main__":
    main()
