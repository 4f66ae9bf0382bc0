# /// script
# requires-python = ">=3.9"
# ///
"""Builds ecospac's built-in English calibration corpus (one text per line) from
two Debian packages, pinned:

- fortunes 1:1.99.1-7.3 (BSD fortune data files; BSD licence): quotations and
  short prose from the clean categories (no offensive or joke-table files);
- python3.11-doc 3.11.2-6+deb12u7 (reST sources of the Python documentation;
  PSF licence): prose paragraphs of the tutorial, the HOWTOs and the FAQ,
  markup stripped, code left out; some paragraphs also split into sentences.

The selection is deterministic (sorted inputs, a seeded shuffle), and it shares
nothing with bench/sentences.txt, on which fidelity is measured.

    python3 scripts/make_calibration_corpus.py frontends/data/calibration-en.txt
"""
import glob
import os
import random
import re
import subprocess
import sys
import tempfile

PACKAGES = {"fortunes": "1:1.99.1-7.3", "python3.11-doc": "3.11.2-6+deb12u7"}
FORTUNE_FILES = ["wisdom", "people", "education", "work", "science", "food", "pets", "kids", "humorists",
                 "love", "tao", "songs-poems", "miscellaneous", "platitudes", "pratchett", "sports"]
DOC_DIRS = ["tutorial", "howto", "faq"]
N_FORTUNES, N_PARAGRAPHS, N_SENTENCES = 200, 150, 100


def fetch(tmp):
    roots = {}
    for pkg, version in PACKAGES.items():
        subprocess.run(["apt-get", "download", f"{pkg}={version}"], cwd=tmp, check=True, capture_output=True)
        deb = glob.glob(os.path.join(tmp, f"{pkg}_*.deb"))[0]
        root = os.path.join(tmp, pkg)
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        roots[pkg] = root
    return roots


def prose(text):
    """True for text that reads as English prose (letters, spaces, punctuation)."""
    if not text or not text.isascii() or len(text.split()) < 4:
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters / len(text) > 0.85 and text[0].isupper() and text[-1] in ".!?\"'"


def fortunes(root):
    out = []
    for name in FORTUNE_FILES:
        path = os.path.join(root, "usr/share/games/fortunes", name)
        with open(path, encoding="latin-1") as f:
            entries = f.read().split("\n%\n")
        for e in entries:
            lines = [l for l in e.splitlines() if l.strip()]
            # Drop attribution lines ("-- Author") and anything laid out as a table or a list.
            body = [l for l in lines if not l.strip().startswith("--")]
            if not body or any("\t" in l.strip() or re.match(r"\s*(\(?\d+[).]|[A-Z]:)", l) for l in body):
                continue
            text = " ".join(l.strip() for l in body)
            text = re.sub(r"\s+", " ", text)
            if prose(text) and len(text.split()) <= 120:
                out.append(text)
    return out


def strip_rst(p):
    p = re.sub(r":[a-z:]+:`~?([^`<]*?)(?: <[^>]*>)?`", r"\1", p)  # roles
    p = re.sub(r"`([^`<]*?)(?: <[^>]*>)?`_*", r"\1", p)  # links and literals
    p = p.replace("``", "").replace("**", "").replace("*", "")
    p = re.sub(r"\[#?\w*\]_", "", p)
    return re.sub(r"\s+", " ", p).strip()


def doc_paragraphs(root):
    out = []
    base = os.path.join(root, "usr/share/doc/python3.11/html/_sources")
    for d in DOC_DIRS:
        for path in sorted(glob.glob(os.path.join(base, d, "*.rst.txt"))):
            with open(path, encoding="utf-8") as f:
                blocks = f.read().split("\n\n")
            for b in blocks:
                lines = b.splitlines()
                # Prose paragraphs start at column 0 and are not directives, titles or tables.
                if not lines or lines[0].startswith((" ", "..", "=", "-", "*", "+", "|", ">>>", "#")):
                    continue
                if any(re.fullmatch(r"[=\-~^*#+]{3,}", l.strip()) for l in lines):
                    continue
                text = strip_rst(" ".join(lines))
                if text.endswith("::"):
                    text = text[:-2] + "."
                if prose(text) and 8 <= len(text.split()) <= 150:
                    out.append(text)
    return out


def main(dst):
    rng = random.Random(20261201)
    with tempfile.TemporaryDirectory() as tmp:
        roots = fetch(tmp)
        fs = sorted(set(fortunes(roots["fortunes"])))
        ps = sorted(set(doc_paragraphs(roots["python3.11-doc"])))
    rng.shuffle(fs)
    rng.shuffle(ps)
    paragraphs = ps[:N_PARAGRAPHS]
    sentences = []
    for p in ps[N_PARAGRAPHS:]:
        sentences += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", p) if prose(s) and len(s.split()) >= 6]
    rng.shuffle(sentences)
    texts = fs[:N_FORTUNES] + paragraphs + sentences[:N_SENTENCES]
    rng.shuffle(texts)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "sentences.txt")) as f:
        held_out = {l.strip() for l in f}
    texts = [t for t in texts if t not in held_out]
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(dst, "w") as f:
        for t in texts:
            f.write(t + "\n")
    words = [len(t.split()) for t in texts]
    print(f"{len(texts)} texts, {sum(words)} words, {min(words)}..{max(words)} words each -> {dst}")


if __name__ == "__main__":
    main(sys.argv[1])
