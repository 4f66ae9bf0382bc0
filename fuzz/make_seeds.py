# /// script
# requires-python = ">=3.10"
# dependencies = ["torch==2.11.0", "transformers==4.57.6", "onnx==1.20.1", "safetensors"]
# ///
"""Seed corpora for the fuzz targets (fuzz/fuzz_targets/*.rs): tiny real
graphs and checkpoints (hidden size 8, one layer), so that mutations explore
the structure of real models at a few KB an input.

    .venv-torch/bin/python fuzz/make_seeds.py ECOSPAC_BINARY

writes fuzz/seeds/{onnx_import,checkpoint,plan_recipe,compile}/ and
fuzz/seeds/block.ir (the graph `plan_recipe` binds plans to).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch
import transformers as tf
from transformers import masking_utils

assert tf.__version__ == "4.57.6", tf.__version__
assert torch.__version__.startswith("2.11.0"), torch.__version__

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
TINY = dict(vocab_size=16, hidden_size=8, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=16)


def models():
    torch.manual_seed(13)
    yield "bert", tf.BertModel(tf.BertConfig(**TINY, type_vocab_size=2, attn_implementation="eager"))
    yield "gpt2", tf.GPT2Model(tf.GPT2Config(vocab_size=16, n_embd=8, n_layer=1, n_head=2, n_positions=16,
                                             n_inner=12, use_cache=False, attn_implementation="eager"))
    yield "llama", tf.LlamaForCausalLM(tf.LlamaConfig(**TINY, num_key_value_heads=1, use_cache=False, attn_implementation="eager"))


class Plain(torch.nn.Module):
    """input_ids and attention_mask by name; the first output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)[0]


def main(ecospac):
    for d in ["onnx_import", "checkpoint", "plan_recipe", "compile"]:
        os.makedirs(os.path.join(SEEDS, d), exist_ok=True)
    ids = torch.randint(0, 16, (1, 5))
    mask = torch.ones(1, 5, dtype=torch.int64)
    # The vmap-built causal mask of recent transformers does not trace (as in tests/models/make_fixtures.py).
    masking_utils.sdpa_mask = masking_utils.sdpa_mask_older_torch
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    for name, model in models():
        model.eval()
        onnx_path = os.path.join(SEEDS, "onnx_import", f"{name}.onnx")
        torch.onnx.export(Plain(model), (ids, mask), onnx_path, input_names=["input_ids", "attention_mask"], dynamo=False,
                          opset_version=17, dynamic_axes=axes)
        text = subprocess.run([ecospac, "inspect", "--text", onnx_path], check=True, capture_output=True,
                              text=True).stdout
        with open(os.path.join(SEEDS, "compile", f"{name}.ir"), "w") as f:
            f.write(text)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            config = open(os.path.join(tmp, "config.json"), "rb").read()
            weights = open(os.path.join(tmp, "model.safetensors"), "rb").read()
            with open(os.path.join(SEEDS, "checkpoint", name), "wb") as f:
                f.write(struct.pack("<I", len(config)) + config + weights)
            if name == "bert":
                with open(os.path.join(SEEDS, "block.ir"), "w") as f:
                    f.write(text)
                plan = os.path.join(tmp, "plan.json")
                subprocess.run([ecospac, "compile", onnx_path, "-o", os.path.join(tmp, "out.onnx"), "--budget",
                                "0.5", "--criterion", "coupled", "--allocation", "global", "--refit", "none",
                                "--emit-plan", plan], check=True, capture_output=True)
                with open(plan) as src, open(os.path.join(SEEDS, "plan_recipe", "plan.json"), "w") as dst:
                    dst.write(json.dumps(json.load(src)))
    for flags, name in [(["--budget", "0.5"], "default.toml"), (["--budget", "0.3", "--refit", "bias"], "bias.toml")]:
        r = subprocess.run([ecospac, "recipe", *flags], check=True, capture_output=True, text=True).stdout
        with open(os.path.join(SEEDS, "plan_recipe", name), "w") as f:
            f.write(r)
    r = subprocess.run([ecospac, "recipe", "--budget", "0.5", "--json"], check=True, capture_output=True, text=True)
    with open(os.path.join(SEEDS, "plan_recipe", "default.json"), "w") as f:
        f.write(r.stdout)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/release/ecospac")
