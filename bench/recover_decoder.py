"""Recovery by distillation of a trained decoder: held-out perplexity of the
compact models against distillation steps (bench/recover_decoder.sh).

  score OUT NAME RUN STUDENT   perplexity of STUDENT (step 0), of RUN/step-N.onnx and of
                               RUN/model.onnx (the last step) -> OUT/recover.jsonl
  report OUT ORIG              the table (ORIG: the original model, for its perplexity) and
                               bench/recover-decoder.svg
"""
import json
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decoder_ppl as d  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ppl(model, out):
    ids = np.load(os.path.join(out, "heldout.npy"))
    sess = d.session(model, 0)
    nll = sum(d.nll_sum(sess.run(["logits"], d.feeds(sess, ids[i:i + 8]))[0], ids[i:i + 8])
              for i in range(0, len(ids), 8))
    loss = nll / (len(ids) * (d.SEQ - 1))
    return loss, math.exp(loss), d.onnx_params(model)[0]


def score(out, name, run, student):
    steps = len(open(os.path.join(run, "log.jsonl")).read().splitlines())
    models = [(0, student)]
    for f in os.listdir(run):
        m = re.fullmatch(r"step-(\d+)\.onnx", f)
        if m:
            models.append((int(m.group(1)), os.path.join(run, f)))
    models.append((steps, os.path.join(run, "model.onnx")))
    with open(os.path.join(out, "recover.jsonl"), "a") as f:
        for step, model in sorted(models):
            loss, p, params = ppl(model, out)
            f.write(json.dumps(dict(name=name, step=step, loss=loss, ppl=p, params=params)) + "\n")
            print(f"{name} step {step}: held-out loss {loss:.4f}, ppl {p:.1f}")


def svg(series, reference, path):
    w, h, pad = 640, 360, 56
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts] + [reference]
    x1, y0, y1 = max(xs) or 1, min(ys) * 0.98, max(ys) * 1.02

    def sx(x):
        return pad + x / x1 * (w - 2 * pad)

    def sy(y):
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    parts = []
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        parts.append(f'<text x="{pad - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.1f}</text>'
                     f'<line x1="{pad}" x2="{w - pad}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>')
        x = x1 * i / 5
        parts.append(f'<text x="{sx(x):.1f}" y="{h - pad + 16}" text-anchor="middle" font-size="11">{x:.0f}</text>')
    parts.append(f'<line x1="{pad}" x2="{w - pad}" y1="{sy(reference):.1f}" y2="{sy(reference):.1f}" '
                 f'stroke="#c33" stroke-dasharray="4"/><text x="{w - pad}" y="{sy(reference) - 4:.1f}" '
                 f'text-anchor="end" font-size="11" fill="#c33">original {reference:.1f}</text>')
    for (name, pts), colour, k in zip(series.items(), ["#2364aa", "#3da35d", "#e8871e"], range(3)):
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>'
                     f'<text x="{pad + 8}" y="{pad + 14 * k}" font-size="11" fill="{colour}">{name}</text>')
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
                f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="13">held-out perplexity of the '
                f'compact decoder vs. distillation steps</text>{"".join(parts)}'
                f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle" font-size="11">distillation steps</text></svg>')


def report(out, orig):
    ref_loss, ref, ref_params = ppl(orig, out)
    rows = [json.loads(l) for l in open(os.path.join(out, "recover.jsonl"))]
    series = {}
    print(f"original: {ref_params:,} parameters, held-out loss {ref_loss:.4f}, ppl {ref:.1f}\n")
    print("| student | steps | params | held-out loss | held-out ppl | of the lost loss recovered |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in dict.fromkeys(r["name"] for r in rows):
        pts = sorted((r for r in rows if r["name"] == name), key=lambda r: r["step"])
        start = pts[0]["loss"]
        for r in pts:
            gained = (start - r["loss"]) / (start - ref_loss) if start > ref_loss else float("nan")
            print(f"| {name} | {r['step']} | {r['params']:,} | {r['loss']:.4f} | {r['ppl']:.1f} | {gained:.0%} |")
        series[name] = [(r["step"], r["ppl"]) for r in pts]
    svg(series, ref, os.path.join(ROOT, "bench", "recover-decoder.svg"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "score":
        score(*args)
    elif cmd == "report":
        report(*args)
    else:
        raise SystemExit(__doc__)
