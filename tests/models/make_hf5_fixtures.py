# /// script
# requires-python = ">=3.10"
# dependencies = ["torch==2.11.0", "transformers==5.24.0", "numpy"]
# ///
"""Checkpoint fixtures in the transformers 5 config format: RoPE settings live
in `rope_parameters` (theta, type, the type's keys, `partial_rotary_factor`),
not in `rope_theta`/`rope_scaling`. Non-default values everywhere, so that a
frontend that ignores the key builds a visibly different model:

  llama-tf5   theta 500000, llama3 scaling (Llama 3 style)
  qwen2-tf5   theta 1000000, yarn scaling
  phi3-tf5    theta 250000, partial_rotary_factor 0.5 (only half of each head rotates)
  qwen3-tf5   theta 1000000, per-head q_norm/k_norm, head_dim 32 (made after the above, which stay unchanged)
  gemma2-tf5  theta 50000, soft-capped scores and logits, sliding and global layers
  gemma3-tf5  one RoPE table per layer type: global layers theta 1000000 with linear scaling,
              sliding ones theta 10000 (made last; `gemma` makes only these two)

Each folder has `reference.safetensors` as make_hf_fixtures.py writes it: the
inputs and the outputs transformers 5 computes.

    PYTHONPATH=<transformers 5 install> python tests/models/make_hf5_fixtures.py tests/fixtures/hf [gemma]
"""
import sys

import torch
import transformers as tf

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from make_hf_fixtures import noisy_norms, save, save_lm  # noqa: E402

assert tf.__version__ == "5.24.0", tf.__version__


def gemma(out, ids, mask):
    small = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24, sliding_window=4,
                 max_position_embeddings=64, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                 attn_implementation="eager")
    torch.manual_seed(7)
    gemma2 = tf.Gemma2ForCausalLM(tf.Gemma2Config(
        attn_logit_softcapping=1.0, final_logit_softcapping=2.0,
        rope_parameters={"rope_type": "default", "rope_theta": 50000.0}, **small))
    torch.manual_seed(8)
    gemma3 = tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(rope_parameters={
        "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 2.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}, **small))
    for name, model in [("gemma2-tf5", gemma2), ("gemma3-tf5", gemma3)]:
        noisy_norms(model)
        save_lm(out, name, model, ids, mask)


def main(out, only=None):
    torch.manual_seed(5)
    ids = torch.randint(0, 128, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[1, 9:] = 0
    if only == "gemma":
        return gemma(out, ids, mask)
    small = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                 attn_implementation="eager")
    models = [
        ("llama-tf5", tf.LlamaForCausalLM(tf.LlamaConfig(rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8}, **small))),
        ("qwen2-tf5", tf.Qwen2ForCausalLM(tf.Qwen2Config(rope_parameters={
            "rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 16},
            **small))),
        ("phi3-tf5", tf.Phi3ForCausalLM(tf.Phi3Config(pad_token_id=0, rope_parameters={
            "rope_type": "default", "rope_theta": 250000.0, "partial_rotary_factor": 0.5}, **small))),
    ]
    for name, model in models:
        model.eval()
        with torch.no_grad():
            o = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        save(out, name, model, {"input_ids": ids, "attention_mask": mask},
             {"last_hidden_state": o.hidden_states[-1], "logits": o.logits})
    torch.manual_seed(6)
    qwen3 = tf.Qwen3ForCausalLM(tf.Qwen3Config(head_dim=32, rope_parameters={
        "rope_type": "default", "rope_theta": 1000000.0}, **small))
    with torch.no_grad():
        for name, p in qwen3.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    qwen3.eval()
    with torch.no_grad():
        o = qwen3(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    save(out, "qwen3-tf5", qwen3, {"input_ids": ids, "attention_mask": mask},
         {"last_hidden_state": o.hidden_states[-1], "logits": o.logits})
    gemma(out, ids, mask)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hf", sys.argv[2] if len(sys.argv) > 2 else None)
