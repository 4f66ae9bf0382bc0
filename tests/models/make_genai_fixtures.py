# /// script
# requires-python = ">=3.10"
# dependencies = [
#   "onnxruntime-genai==0.18.0",
#   "onnxruntime==1.31.1",
#   "onnx==1.20.1",
#   "onnx-ir==1.1.0",
#   "transformers==5.24.0",
#   "tokenizers==0.23.3",
#   "torch==2.11.0",
# ]
# ///
"""A decoder as ONNX Runtime GenAI's model builder writes it for CPU
(`python -m onnxruntime_genai.models.builder -p fp32 -e cpu`), from a small
random-initialised LLaMA checkpoint saved with `save_pretrained` (hidden 64,
2 layers, 4 query heads over 2 key/value heads, FFN 128, vocab 256, 128
positions) and a word-level tokenizer made here (the builder requires one):

  llama-genai.onnx  com.microsoft GroupQueryAttention (packed QKV, rotary inside
                    the op from cos/sin caches, the key/value cache as graph
                    inputs past_key_values.N.key/value [batch, 2, past, head] and
                    outputs present.N.*), SkipSimplifiedLayerNormalization,
                    SimplifiedLayerNormalization; seqlens_k and
                    total_sequence_length computed from attention_mask. The
                    builder annotates its [1]-shaped constant as a scalar in
                    value_info (ONNX Runtime ignores that; so does ecospac, with
                    a warning).
  llama-genai-unfused.onnx  the same with `--extra_options disable_qkv_fusion=true`:
                    separate Q, K and V projections feeding the GroupQueryAttention.

The weights are stored in the file (the builder writes external data; it is
inlined here). No model hub is needed.

    python tests/models/make_genai_fixtures.py OUTDIR
"""
import os
import subprocess
import sys
import tempfile

import onnx
import torch
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "llama")
        torch.manual_seed(0)
        cfg = tf.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             tie_word_embeddings=False)
        model = tf.LlamaForCausalLM(cfg)
        with torch.no_grad():
            # Norm weights not all ones, so that a wrong scale shows.
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(ckpt)
        tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(256)}, unk_token="t0"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token="t1",
                                   eos_token="t2").save_pretrained(ckpt)
        for name, extra in [("llama-genai.onnx", []),
                            ("llama-genai-unfused.onnx", ["--extra_options", "disable_qkv_fusion=true"])]:
            built = os.path.join(tmp, "out-" + name)
            subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", ckpt, "-o", built,
                            "-p", "fp32", "-e", "cpu", "-c", os.path.join(tmp, "cache")] + extra,
                           check=True, stdout=subprocess.DEVNULL)
            m = onnx.load(os.path.join(built, "model.onnx"))
            onnx.save(m, os.path.join(out_dir, name))
            print("wrote", name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures"))
