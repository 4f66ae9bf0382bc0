"""Tokenizes text (one text per line) with a model's tokenizer.json into an
.npz of input_ids, attention_mask and token_type_ids, padded/truncated to a
fixed length, for `ecospac compile --calibration` and scripts/compare_onnx.py.

    .venv/bin/python scripts/tokenize_text.py TOKENIZER.json TEXT.txt OUT.npz [--length 64] [--first N]
"""
import argparse

import numpy as np
from tokenizers import Tokenizer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tokenizer")
    p.add_argument("text")
    p.add_argument("out")
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--first", type=int, default=0, help="only the first N texts (0: all)")
    args = p.parse_args()
    with open(args.text, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    if args.first:
        texts = texts[: args.first]
    tok = Tokenizer.from_file(args.tokenizer)
    tok.enable_truncation(args.length)
    tok.enable_padding(length=args.length)
    enc = tok.encode_batch(texts)
    arrays = {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }
    np.savez(args.out, **arrays)
    print(f"{args.out}: {len(texts)} texts x {args.length} tokens")


if __name__ == "__main__":
    main()
