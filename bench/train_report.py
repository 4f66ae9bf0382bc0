"""Side-by-side figures of bench/train_ecospa.sh runs, and the loss curves as SVG.

    .venv/bin/python bench/train_report.py .cache/bench/train [MODEL ...]

Reads OUT/{MODEL}-{dense,ecospac,uncoupled}/log.jsonl (MODEL: gpt2 and llama
unless given); prints a Markdown
table (tokens/s over the whole run and after the last shrink, training-state
memory and peak RSS, final validation loss and perplexity, each with its ratio
to dense) and writes OUT/loss-curves.svg.
"""
import json
import math
import os
import sys

RUNS = ["dense", "ecospac", "uncoupled"]
COLORS = {"dense": "#333333", "ecospac": "#1f77b4", "uncoupled": "#d62728"}


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def throughput(lines):
    tokens = [l["tokens_per_s"] for l in lines]
    # Each step's time is its tokens over its rate; tokens per step are constant.
    return len(tokens) / sum(1.0 / t for t in tokens)


def summary(lines):
    shrunk_from = next((i for i, l in enumerate(lines) if l["density"] <= lines[-1]["density"] + 1e-9), 0)
    val = [l for l in lines if l.get("val_loss") is not None]
    return {
        "tok_s": throughput(lines),
        "tok_s_after": throughput(lines[shrunk_from:]),
        "state": lines[-1]["state_bytes"],
        "rss": max(l["peak_rss"] for l in lines),
        "val": val[-1]["val_loss"],
        "params": lines[-1]["params"],
        "density": lines[-1]["density"],
    }


def smooth(xs, k=0.9):
    out, m = [], None
    for x in xs:
        m = x if m is None else k * m + (1 - k) * x
        out.append(m)
    return out


def svg(curves, path):
    w, h, pad = 460, 300, 45
    panels = list(curves)
    width = w * len(panels)
    lo = min(min(v) for c in curves.values() for v, _ in c.values())
    hi = max(max(v[len(v) // 20:]) for c in curves.values() for v, _ in c.values())
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{h}" fill="white"/>']
    for p, arch in enumerate(panels):
        x0 = p * w
        parts.append(f'<text x="{x0 + w / 2}" y="18" text-anchor="middle">{arch}: training loss (EMA 0.9) vs step</text>')
        parts.append(f'<rect x="{x0 + pad}" y="{pad - 15}" width="{w - pad - 15}" height="{h - 2 * pad + 15}" fill="none" stroke="#999"/>')
        for frac in (0, 0.5, 1):
            y = h - pad - frac * (h - 2 * pad)
            parts.append(f'<text x="{x0 + pad - 4}" y="{y + 4}" text-anchor="end">{lo + frac * (hi - lo):.2f}</text>')
        for i, (run, (values, steps)) in enumerate(curves[arch].items()):
            n = max(steps)
            pts = []
            for v, s in zip(values, steps):
                x = x0 + pad + (s / n) * (w - pad - 15)
                y = h - pad - (min(v, hi) - lo) / (hi - lo) * (h - 2 * pad)
                pts.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<polyline fill="none" stroke="{COLORS[run]}" stroke-width="1.5" points="{" ".join(pts)}"/>')
            parts.append(f'<text x="{x0 + w - 20}" y="{pad + 5 + 15 * i}" text-anchor="end" fill="{COLORS[run]}">{run}</text>')
        parts.append(f'<text x="{x0 + w / 2}" y="{h - 10}" text-anchor="middle">step (of {n})</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def main(out, models):
    print("| model | run | final params | density | tokens/s (run) | ratio | tokens/s (after last shrink) | ratio | train state MB | ratio | peak RSS MB | ratio | val loss | val ppl |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    curves = {}
    for arch in models:
        stats = {}
        curves[arch] = {}
        for run in RUNS:
            p = os.path.join(out, f"{arch}-{run}", "log.jsonl")
            if not os.path.exists(p):
                continue
            lines = load(p)
            stats[run] = summary(lines)
            curves[arch][run] = (smooth([l["loss"] for l in lines]), [l["step"] for l in lines])
        d = stats.get("dense")
        for run, s in stats.items():
            r = lambda k: f"{s[k] / d[k]:.2f}" if d else "-"
            print(f"| {arch} | {run} | {s['params']:,} | {s['density']:.3f} | {s['tok_s']:.0f} | {r('tok_s')} | "
                  f"{s['tok_s_after']:.0f} | {r('tok_s_after')} | {s['state'] / 1e6:.1f} | {r('state')} | "
                  f"{s['rss'] / 1e6:.0f} | {r('rss')} | {s['val']:.3f} | {math.exp(s['val']):.1f} |")
    svg(curves, os.path.join(out, "loss-curves.svg"))
    print(f"\nwrote {os.path.join(out, 'loss-curves.svg')}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/bench/train", sys.argv[2:] or ["gpt2", "llama"])
