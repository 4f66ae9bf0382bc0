"""Import + export of a large ONNX model by ecospac (`compile --budget 1.0`,
the identity pipeline) against `cp` of the same bytes, and a full coupled
compile at `--budget 0.5` from the weights alone (`--criterion coupled
--allocation uniform --refit none`: no calibration run), side by side in one
run; peak memory against the file size. With `--baseline BIN`, another
ecospac binary (an older release build) runs the same two compiles in the
same run (`--budget 0.5` alone: before the data-aware defaults, that was the
weights-only compile).

    python3 bench/import_export.py [MODEL] [--runs N] [--baseline BIN]

MODEL defaults to .cache/bench/gpt2-medium.onnx (made by bench/make_gpt2_medium.py).
Prints a Markdown table; the ratios go to BENCHMARKS.md.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(cmd):
    """Wall seconds and peak RSS (bytes) of one child process."""
    import time

    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    err = p.stderr.read().decode()
    if status != 0:
        sys.exit(f"{cmd[0]} failed: {err}")
    return wall, usage.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=os.path.join(ROOT, ".cache/bench/gpt2-medium.onnx"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", help="an older ecospac binary to run side by side")
    args = ap.parse_args()
    exe = os.path.join(ROOT, "target/release/ecospac")
    size = os.path.getsize(args.model)
    weights_only = ["--budget", "0.5", "--criterion", "coupled", "--allocation", "uniform", "--refit", "none"]
    compiles = [("ecospac", exe, []), ("ecospac --budget 0.5", exe, weights_only)]
    if args.baseline:
        compiles += [("baseline", args.baseline, []), ("baseline --budget 0.5", args.baseline, ["--budget", "0.5"])]
    rows = {"cp": [], "cp+fsync": [], **{name: [] for name, _, _ in compiles}}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.model))) as tmp:
        subprocess.run(["cat", args.model], stdout=subprocess.DEVNULL, check=True)  # warm the page cache once
        for _ in range(args.runs):
            rows["cp"].append(measure(["cp", args.model, os.path.join(tmp, "cp.onnx")]))
            os.remove(os.path.join(tmp, "cp.onnx"))
            # ecospac syncs its output before the rename that publishes it; so does this baseline.
            dd = ["dd", f"if={args.model}", f"of={os.path.join(tmp, 'cp.onnx')}", "bs=8M", "conv=fsync", "status=none"]
            rows["cp+fsync"].append(measure(dd))
            for name, binary, flags in compiles:
                rows[name].append(measure([binary, "compile", args.model, "-o", os.path.join(tmp, "out.onnx"), *flags]))
                os.remove(os.path.join(tmp, "out.onnx"))
            os.remove(os.path.join(tmp, "cp.onnx"))
    med = {k: (statistics.median(w for w, _ in v), max(m for _, m in v)) for k, v in rows.items()}
    print(f"model: {os.path.relpath(args.model, ROOT)}, {size / 1e6:.1f} MB; {args.runs} runs each, medians")
    print()
    print("| tool | wall (s) | peak RSS (MB) | wall / cp | wall / cp+fsync | wall / identity | peak RSS / file size | peak RSS / identity |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ident = med["ecospac"]
    for k in rows:
        wall, rss = med[k]
        print(f"| {k} | {wall:.2f} | {rss / 1e6:.0f} | {wall / med['cp'][0]:.2f} | {wall / med['cp+fsync'][0]:.2f} | "
              f"{wall / ident[0]:.2f} | {rss / size:.2f} | {rss / ident[1]:.2f} |")


if __name__ == "__main__":
    main()
