"""Compile time and size on ALBERT (every layer reuses one set of weights) at
the real ALBERT-base shape, random-initialised: hidden 768, 12 heads, FFN
3072, embeddings 128 of a 30000-token vocabulary, at 6, 12 and 24 layers
(the same parameters, a graph twice as long each time). Exported by the
TorchScript exporter (opset 17); compiled with the release binary at
`--budget 0.5 --criterion coupled --allocation global --refit none` (weight
scores, a global allocation, no refit: no model runs, so the times are the
compiler's own);
per-pass times from the compile report. Checks that the
compact model has fewer parameters than its input, and counts initializers
(the shared weights stay one tensor each).

    .venv-torch/bin/python bench/shared_weights.py [--layers 6 12 24]

Writes its models under .cache/bench/; prints a Markdown table for BENCHMARKS.md.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target/release/ecospac")


def export(layers, path):
    import torch
    import transformers as tf
    torch.manual_seed(0)
    cfg = tf.AlbertConfig(vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=layers,
                          num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                          attn_implementation="eager")
    model = tf.AlbertModel(cfg).eval()
    with torch.no_grad():  # trained-like vectors, not all ones and zeros
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.05 * torch.randn_like(p))

    class Last(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(0, 30000, (1, 16))
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "last_hidden_state": {0: "batch", 1: "seq"}}
    torch.onnx.export(Last(model), (ids, torch.ones_like(ids)), path, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)


def inspect(path):
    """(nodes, initializers) as `ecospac inspect` counts them."""
    out = subprocess.run([EXE, "inspect", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if " nodes, " in line and "initializers" in line:
            n, i = line.split(" nodes, ")
            return int(n), int(i.split()[0])
    sys.exit(f"no node count in: {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, nargs="+", default=[6, 12, 24])
    args = ap.parse_args()
    cache = os.path.join(ROOT, ".cache/bench")
    os.makedirs(cache, exist_ok=True)
    print("| layers | nodes | file MB | analyse-coupling s | score s | slice s | compile wall s | params after / before "
          "| initializers before, after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for layers in args.layers:
        src = os.path.join(cache, f"albert-base-{layers}l.onnx")
        if not os.path.exists(src):
            export(layers, src)
        with tempfile.TemporaryDirectory() as tmp:
            out, report = os.path.join(tmp, "c.onnx"), os.path.join(tmp, "r.json")
            start = time.perf_counter()
            flags = ["--budget", "0.5", "--criterion", "coupled", "--allocation", "global", "--refit", "none"]
            r = subprocess.run([EXE, "compile", src, *flags, "-o", out, "--report", report], capture_output=True,
                               text=True)
            wall = time.perf_counter() - start
            if r.returncode != 0:
                sys.exit(f"compile failed: {r.stderr}")
            with open(report) as f:
                rep = json.load(f)
            times = dict(rep["seconds"])
            before, after = rep["parameters"]["before"], rep["parameters"]["after"]
            assert after < before, f"the compact model is not smaller: {after} of {before}"
            (nodes, inits), (_, inits_after) = inspect(src), inspect(out)
            print(f"| {layers} | {nodes} | {os.path.getsize(src) / 1e6:.1f} | {times.get('analyse-coupling', 0):.2f} "
                  f"| {times.get('score', 0):.2f} | {times.get('slice', 0):.2f} | {wall:.1f} | {after} / {before} ({after / before:.3f}) "
                  f"| {inits}, {inits_after} |")


if __name__ == "__main__":
    main()
