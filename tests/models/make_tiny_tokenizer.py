"""Writes tests/fixtures/tiny-tokenizer.json: a word-level tokenizer (lowercase,
whitespace/punctuation split) over the first 200 words of bench/sentences.txt,
ids < 256 so that the fixtures' 256-token embeddings accept them.

    python3 tests/models/make_tiny_tokenizer.py
"""
import json
import re

words = sorted(set(w for line in open("bench/sentences.txt") for w in re.findall(r"\w+|[^\w\s]", line.lower())))[:200]
vocab = {"[UNK]": 0, "[PAD]": 1}
for w in words:
    vocab[w] = len(vocab)
special = dict(single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [dict(id=0, content="[UNK]", **special), dict(id=1, content="[PAD]", **special)],
    "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
    "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
}
json.dump(tok, open("tests/fixtures/tiny-tokenizer.json", "w"), indent=1)
