"""Recovery by distillation on the real all-MiniLM-L6-v2: a compile at --budget
0.5 (0.763 of the parameters) calibrated on 2,000 of the sentences it then
distils on, then `ecospac train --from compact.onnx
--teacher model.onnx`, distilling on 20,000 sentences of one source (WordNet's
usage examples or the Python 3.11 documentation; never the scoring text),
scored held-out on bench/sentences.txt against the original.

    [RECOVER_CORPUS=docs|wordnet] bench/recover_minilm.sh [STEPS] [extra `ecospac train` flags]

Held-out data and metrics as in bench/quality_minilm.py (64 sentences x 64
positions; all rows = mean row cosine over every position, real = over real
tokens only), and per source, 64 of its sentences that were not distilled on. The curve (validation cosine over all rows, on the same held-out
sentences, every --eval-every steps) comes from the run's log.jsonl and is drawn
to bench/recover-minilm.svg.

    recover_minilm.py sentences DOCS|WORDNET OUT.txt   sentences of 5-40 words from the docs (or
                                                        WordNet's usage examples), shuffled (seed 0),
                                                        one per paragraph
    recover_minilm.py heldout OUT.npz TOKENIZER      the held-out sentences as model inputs
    recover_minilm.py score ORIGINAL COMPACT TOKENIZER RUN_DIR SOURCE...
    recover_minilm.py bands ORIGINAL TOKENIZER MODEL...  held-out cosine by position band
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality_minilm as q  # noqa: E402


TRAIN = 20000  # sentences distilled on; the next 64 score in-domain


def docs_sentences(docs):
    """Sentences of 5-40 words from the docs, shuffled with seed 0."""
    import glob
    import random
    import re
    found = []
    for f in sorted(glob.glob(os.path.join(docs, "**", "*.txt"), recursive=True)):
        for p in open(f, errors="ignore").read().split("\n\n"):
            p = " ".join(p.split())
            if not p or p.startswith(("..", "::", ">>>", "*", "=", "-", "|")):
                continue
            for s in re.split(r"(?<=[.!?])\s+", p):
                if 5 <= len(s.split()) <= 40 and re.match(r"^[A-Z]", s):
                    found.append(s)
    random.Random(0).shuffle(found)
    return found


def wordnet_sentences(wordnet):
    """WordNet's usage examples of 5-40 words as sentences (first letter
    upper case, a full stop where none ends them), shuffled with seed 0,
    without any sentence of bench/sentences.txt."""
    import glob
    import random
    import re
    with open(os.path.join(q.ROOT, "bench", "sentences.txt")) as f:
        scored = {line.strip().lower().rstrip(".!?") for line in f if line.strip()}
    found = []
    for f in sorted(glob.glob(os.path.join(wordnet, "data.*"))):
        for line in open(f, errors="ignore"):
            if line.startswith("  ") or "|" not in line:
                continue
            for e in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                e = " ".join(e.split())
                if not 5 <= len(e.split()) <= 40 or e.lower().rstrip(".!?") in scored:
                    continue
                e = e[0].upper() + e[1:]
                found.append(e if e[-1] in ".!?" else e + ".")
    found = sorted(set(found))
    random.Random(0).shuffle(found)
    return found


def sentences(source, out):
    found = source_sentences(source)
    with open(out, "w") as w:
        w.write("\n\n".join(found[:TRAIN]))
    print(f"{min(TRAIN, len(found))} of {len(found)} sentences -> {out}")


def is_wordnet(source):
    """Whether a source folder holds WordNet's data files (else the docs)."""
    return os.path.exists(os.path.join(source, "data.noun"))


def source_sentences(source):
    """The sentences of a source folder: WordNet's data files or the docs."""
    return wordnet_sentences(source) if is_wordnet(source) else docs_sentences(source)


def unseen(source, tokenizer):
    """64 sentences of the source never distilled on, as model inputs (as q.held_out pads them)."""
    from tokenizers import Tokenizer
    found = source_sentences(source)
    used = set(found[:TRAIN])
    test = [t for t in found[TRAIN:] if t not in used][:64]
    tk = Tokenizer.from_file(tokenizer)
    tk.enable_padding(length=64, pad_id=0, pad_token="[PAD]")
    tk.enable_truncation(64)
    enc = tk.encode_batch(test)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def heldout(out, tokenizer):
    np.savez(out, **q.held_out(tokenizer))


def svg(points, path, title):
    w, h, pad = 640, 360, 50
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = 0, max(xs) or 1
    y0, y1 = min(min(ys), 0.9), 1.0

    def sx(x):
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y):
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    ticks = []
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        ticks.append(f'<text x="{pad - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.3f}</text>'
                     f'<line x1="{pad}" x2="{w - pad}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>')
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        ticks.append(f'<text x="{sx(x):.1f}" y="{h - pad + 16}" text-anchor="middle" font-size="11">{x:.0f}</text>')
    target = f'<line x1="{pad}" x2="{w - pad}" y1="{sy(0.97):.1f}" y2="{sy(0.97):.1f}" stroke="#c33" stroke-dasharray="4"/>' \
        if y0 < 0.97 else ""
    body = "".join(ticks) + target + f'<polyline fill="none" stroke="#2364aa" stroke-width="2" points="{line}"/>'
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
                f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="13">{title}</text>{body}'
                f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle" font-size="11">distillation steps</text></svg>')


def score(original, compact, tokenizer, run, *sources):
    """Both models against the original on bench/sentences.txt and on unseen
    sentences of each source folder (the docs, WordNet)."""
    sets = [("sentences.txt", q.held_out(tokenizer))] + \
        [("unseen " + ("WordNet" if is_wordnet(src) else "docs") + " sentences",
          unseen(src, tokenizer)) for src in sources]
    rows = {"compact": {}, "distilled": {}}
    for data, feeds in sets:
        ref = q.run(original, feeds)
        mask = feeds["attention_mask"].astype(bool)
        for name, path in [("compact", compact), ("distilled", os.path.join(run, "model.onnx"))]:
            c = q.cosine(q.run(path, feeds), ref)
            rows[name][data] = (float(c.mean()), float(c[mask].mean()))
    log = [json.loads(line) for line in open(os.path.join(run, "log.jsonl"))]
    curve = [(0, rows["compact"]["sentences.txt"][0])] + \
        [(e["step"], e["validation_cosine"]) for e in log if e["validation_cosine"] is not None]
    secs = log[-1]["seconds"] if log else 0.0
    svg(curve, os.path.join(q.ROOT, "bench", "recover-minilm.svg"),
        "all-MiniLM-L6-v2 at 0.763 of its parameters: held-out cosine (all rows) vs distillation steps")
    print("| model | steps | wall s | " + " | ".join(f"{d}: all rows | real" for d, _ in sets) + " |")
    print("| --- | --- | --- | " + " | ".join("--- | ---" for _ in sets) + " |")
    for name, steps, wall in [("compact (--budget 0.5, calibrated on the distillation text)", 0, "-"),
                              ("distilled", log[-1]["step"] if log else 0, f"{secs:.0f}")]:
        r = rows[name.split(" ")[0]]
        print(f"| {name} | {steps} | {wall} | " + " | ".join(f"{r[d][0]:.4f} | {r[d][1]:.4f}" for d, _ in sets) + " |")
    print("curve (step: held-out all rows): " + ", ".join(f"{s}: {c:.4f}" for s, c in curve))
    json.dump({"rows": rows, "curve": curve, "seconds": secs},
              open(os.path.join(run, "results.json"), "w"), indent=1)


def bands(original, tokenizer, *models):
    """Held-out cosine on bench/sentences.txt (64-token rows) by position band:
    all rows, real tokens, the first ([CLS]) row, padding before position 32
    and padding from 32 on (half of all rows)."""
    feeds = q.held_out(tokenizer)
    ref = q.run(original, feeds)
    pad = ~feeds["attention_mask"].astype(bool)
    print("| model | all rows | real | CLS | padding < 32 | padding >= 32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in models:
        c = q.cosine(q.run(path, feeds), ref)
        band = [c[:, :32][pad[:, :32]].mean(), c[:, 32:][pad[:, 32:]].mean()]
        print(f"| {path} | {c.mean():.4f} | {c[~pad].mean():.4f} | {c[:, 0].mean():.4f} | "
              f"{band[0]:.4f} | {band[1]:.4f} |")


if __name__ == "__main__":
    if sys.argv[1] == "sentences":
        sentences(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "heldout":
        heldout(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "score":
        score(*sys.argv[2:])
    elif sys.argv[1] == "bands":
        bands(*sys.argv[2:])
    else:
        sys.exit(__doc__)
