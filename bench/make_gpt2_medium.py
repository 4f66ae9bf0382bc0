"""Writes a GPT-2-medium-shaped ONNX model (24 layers, hidden 1024, 16 heads,
~355M parameters, random weights) for the import/export and compile benchmarks.

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


def main(path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.manual_seed(0)
    cfg = tf.GPT2Config(n_embd=1024, n_layer=24, n_head=16, n_positions=1024, attn_implementation="eager", use_cache=False)
    model = Logits(tf.GPT2LMHeadModel(cfg).eval())
    ids = torch.randint(0, cfg.vocab_size, (1, 16))
    mask = torch.ones_like(ids)
    masking_utils.sdpa_mask = masking_utils.sdpa_mask_older_torch  # traceable mask builder
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(model, (ids, mask), path, opset_version=17, dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes})
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path}: {os.path.getsize(path)} bytes, {n} parameters")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/bench/gpt2-medium.onnx")
