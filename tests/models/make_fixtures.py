# /// script
# requires-python = ">=3.10"
# dependencies = [
#   "torch==2.11.0",
#   "transformers==4.57.6",
#   "onnx==1.20.1",
#   "onnxscript==0.7.2",
#   "numpy",
# ]
# ///
"""Builds the small exporter-made ONNX fixtures that ecospac's tests run on.

Random-initialised GPT-2 (fused c_attn), LLaMA (GQA + RoPE, SwiGLU), Qwen2 (q/k/v
biases), Phi-3 (fused qkv_proj and gate_up_proj), BERT, ViT and ALBERT (one set of
layer weights shared by all layers),
each exported by both torch exporters: TorchScript (opset 17) and dynamo (opset 18).
Weights are random (seeded), so files are small and the script is the source.

    python tests/models/make_fixtures.py tests/fixtures
"""
import os
import sys

import torch
import transformers as tf
from transformers import masking_utils


class LastHidden(torch.nn.Module):
    """Returns one tensor, so both exporters see a plain function."""

    def __init__(self, model, key, names):
        super().__init__()
        self.model, self.key, self.names = model, key, names

    def forward(self, *args):
        return getattr(self.model(**dict(zip(self.names, args))), self.key)


def models():
    torch.manual_seed(0)
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=4, attn_implementation="eager"))
    llama = tf.LlamaForCausalLM(
        tf.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, attn_implementation="eager")
    )
    bert = tf.BertModel(tf.BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=128, max_position_embeddings=64, attn_implementation="eager"))
    vit = tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=128, attn_implementation="eager"))
    ids = torch.randint(0, 256, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    pixels = torch.randn(2, 3, 32, 32)
    # Made after the inputs above, so that adding them left the earlier fixtures unchanged.
    qwen2 = tf.Qwen2ForCausalLM(
        tf.Qwen2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       attn_implementation="eager")
    )
    phi3 = tf.Phi3ForCausalLM(
        tf.Phi3Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      original_max_position_embeddings=64, pad_token_id=0, attn_implementation="eager")
    )
    # ALBERT shares one set of layer weights across all its layers (weights with
    # several readers); made last, so the fixtures above stay unchanged.
    albert = tf.AlbertModel(tf.AlbertConfig(vocab_size=256, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=128, max_position_embeddings=64,
                                            attn_implementation="eager"))
    # Decoders get an explicit attention mask, as deployment exports have; without
    # it transformers builds a packed-sequence mask that does not trace.
    text_axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    yield "gpt2", LastHidden(gpt2, "logits", ["input_ids", "attention_mask"]), (ids, mask), ["input_ids", "attention_mask"], ["logits"], text_axes
    yield "llama", LastHidden(llama, "logits", ["input_ids", "attention_mask"]), (ids, mask), ["input_ids", "attention_mask"], ["logits"], text_axes
    yield "qwen2", LastHidden(qwen2, "logits", ["input_ids", "attention_mask"]), (ids, mask), \
        ["input_ids", "attention_mask"], ["logits"], text_axes
    yield "phi3", LastHidden(phi3, "logits", ["input_ids", "attention_mask"]), (ids, mask), \
        ["input_ids", "attention_mask"], ["logits"], text_axes
    yield "bert", LastHidden(bert, "last_hidden_state", ["input_ids", "attention_mask"]), (ids, mask), ["input_ids", "attention_mask"], \
        ["last_hidden_state"], text_axes
    yield "albert", LastHidden(albert, "last_hidden_state", ["input_ids", "attention_mask"]), (ids, mask), \
        ["input_ids", "attention_mask"], ["last_hidden_state"], text_axes
    yield ("vit", LastHidden(vit, "last_hidden_state", ["pixel_values"]), (pixels,), ["pixel_values"], ["last_hidden_state"],
           {"pixel_values": {0: "batch"}})


def main(out_dir, only=()):
    os.makedirs(out_dir, exist_ok=True)
    for name, module, args, inputs, outputs, axes in models():
        if only and name not in only:
            continue
        module.eval()
        if hasattr(module.model.config, "use_cache"):
            module.model.config.use_cache = False
        path = os.path.join(out_dir, f"{name}-torchscript.onnx")
        # The vmap-built causal mask of recent transformers does not trace; the
        # older builder is the one the TorchScript exporter handles.
        masking_utils.sdpa_mask = masking_utils.sdpa_mask_older_torch
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                          dynamic_axes={k: v for k, v in axes.items()} | {outputs[0]: {0: "batch"}},
                          opset_version=17, dynamo=False)
        print("wrote", path, os.path.getsize(path))
        masking_utils.sdpa_mask = masking_utils.sdpa_mask_recent_torch
        path = os.path.join(out_dir, f"{name}-dynamo.onnx")
        shapes = tuple({i: torch.export.Dim.DYNAMIC for i in axes[k]} for k in inputs)
        prog = torch.onnx.export(module, args, input_names=inputs, output_names=outputs, dynamic_shapes=(shapes,),
                                 opset_version=18, dynamo=True, external_data=False)
        prog.save(path, external_data=False)
        print("wrote", path, os.path.getsize(path))


if __name__ == "__main__":
    # make_fixtures.py OUT_DIR [NAME ...]: only the named models (all by default)
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures", tuple(sys.argv[2:]))
