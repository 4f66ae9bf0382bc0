"""Writes a GPT-2-shaped ONNX model (by default GPT-2-medium: 24 layers, hidden 1024, 16 heads,
~355M parameters; random weights) for the import/export and compile benchmarks.

    .venv-torch/bin/python bench/make_gpt2_medium.py .cache/bench/gpt2-medium.onnx
"""
import os
import sys

import torch
import transformers as tf
from transformers import masking_utils


class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def main(path, layers=24, hidden=1024, heads=16, seq=16):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.manual_seed(0)
    cfg = tf.GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=1024, attn_implementation="eager", use_cache=False)
    model = Logits(tf.GPT2LMHeadModel(cfg).eval())
    ids = torch.randint(0, cfg.vocab_size, (1, seq))
    mask = torch.ones_like(ids)
    masking_utils.sdpa_mask = masking_utils.sdpa_mask_older_torch  # traceable mask builder
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(model, (ids, mask), path, opset_version=17, dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes})
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path}: {os.path.getsize(path)} bytes, {n} parameters")


if __name__ == "__main__":
    # python bench/make_gpt2_medium.py OUT [LAYERS HIDDEN HEADS SEQ]; GPT-2 small: OUT 12 768 12 128
    args = sys.argv[1:]
    main(args[0] if args else ".cache/bench/gpt2-medium.onnx", *[int(a) for a in args[1:5]])
