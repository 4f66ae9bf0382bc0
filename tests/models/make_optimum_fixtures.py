# /// script
# requires-python = ">=3.10"
# dependencies = [
#   "optimum-onnx[onnxruntime]==0.1.0",
#   "optimum==2.1.0",
#   "transformers==4.57.6",
#   "onnxruntime==1.31.1",
#   "onnx==1.20.1",
#   "torch==2.11.0",
# ]
# ///
"""Graphs as users make them with `optimum-cli export onnx --optimize O1|O2|O3`
(Hugging Face Optimum's exporter, then ONNX Runtime's transformer optimizer at that
level), from small random-initialised checkpoints saved with `save_pretrained`
(hidden 64, 2 layers, 4 heads, FFN 128, vocab 256, 128 positions; LLaMA with 2 KV heads):

  bert-optimum-o1.onnx   BERT, --task feature-extraction, O1: basic ONNX Runtime graph
                         optimizations only (constant folding, LayerNormalization fused to the
                         standard op); no com.microsoft ops
  bert-optimum-o2.onnx   BERT, O2: plus the transformer fusions: com.microsoft Attention (packed
                         QKV weight and bias, num_heads=4, 1-D mask_index from Cast + ReduceSum
                         of attention_mask), SkipLayerNormalization, BiasGelu
  bert-optimum-o3.onnx   BERT, O3: O2 with the GELU approximation (FastGelu instead of BiasGelu)
  gpt2-optimum-o1.onnx   GPT-2 (LM head), --task text-generation (no past key values), O1:
                         Conv1D as Gemm, LayerNormalization, tanh GELU unfused
  gpt2-optimum-o2.onnx   GPT-2, O2: SkipLayerNormalization (some with the residual-sum output),
                         FastGelu (from the tanh GELU); attention is not fused
  gpt2-optimum-o3.onnx   GPT-2, O3 (the same graph as O2: GELU is already the tanh form)
  llama-optimum-o1.onnx  LLaMA (GQA, RoPE, SwiGLU, RMSNorm), --task text-generation, O1: plain
                         ONNX ops (RMSNorm as Pow/ReduceMean/Sqrt/Div)
  llama-optimum-o2.onnx  LLaMA, O2: RMSNorm as SimplifiedLayerNormalization (default domain),
                         SiLU as com.microsoft QuickGelu (alpha 1), the shape Gathers as
                         Split + Squeeze; attention and RoPE are not fused
  llama-optimum-o3.onnx  LLaMA, O3 (the same graph as O2)

Committed in tests/fixtures: bert O2 and O3, gpt2 O2, llama O1 and O2 (the O1 graphs of
BERT and GPT-2 are close to the plain exports of `make_fixtures.py`).

The norms' weights and all biases get seeded noise so they are not all ones and zeros (the
exporter merges identical all-zero biases into one initializer shared by all layers). Each
file holds its weights (no external data). Runs `optimum-cli` from the same environment
as this interpreter; no model hub is needed (the checkpoints are made here, no tokenizer).

    python tests/models/make_optimum_fixtures.py OUTDIR
"""
import collections
import os
import shutil
import subprocess
import sys
import tempfile

import onnx
import torch
import transformers as tf

SIZES = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=128, max_position_embeddings=128)


def checkpoints():
    """(name, task, model) for each family, every one seeded on its own."""
    def bert():
        return tf.BertModel(tf.BertConfig(**SIZES))

    def gpt2():
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=256, n_embd=64, n_layer=2, n_head=4,
                                                n_inner=128, n_positions=128))

    def llama():
        return tf.LlamaForCausalLM(tf.LlamaConfig(num_key_value_heads=2, **SIZES))

    for name, task, make in (("bert", "feature-extraction", bert),
                             ("gpt2", "text-generation", gpt2),
                             ("llama", "text-generation", llama)):
        torch.manual_seed(0)
        model = make().eval()
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, torch.nn.LayerNorm) or type(mod).__name__.endswith("RMSNorm"):
                    mod.weight.add_(0.1 * torch.randn_like(mod.weight))
            # Every bias (norms' and linear layers'), else the all-zero ones are one
            # initializer that the exporter shares between layers.
            for pname, p in model.named_parameters():
                if pname.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
        yield name, task, model


def optimum_cli():
    here = os.path.join(os.path.dirname(sys.executable), "optimum-cli")
    return here if os.path.exists(here) else shutil.which("optimum-cli")


def main(out):
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, PYTHONHASHSEED="0", CUDA_VISIBLE_DEVICES="")
    with tempfile.TemporaryDirectory() as tmp:
        for name, task, model in checkpoints():
            ckpt = os.path.join(tmp, name)
            model.save_pretrained(ckpt)
            for level in ("O1", "O2", "O3"):
                exported = os.path.join(tmp, f"{name}-{level}")
                subprocess.run([optimum_cli(), "export", "onnx", "--model", ckpt, "--task", task,
                                "--optimize", level, "--device", "cpu", exported],
                               check=True, env=env, cwd=tmp)
                dest = os.path.join(out, f"{name}-optimum-{level.lower()}.onnx")
                m = onnx.load(os.path.join(exported, "model.onnx"))  # pulls in any external data
                onnx.save(m, dest)
                ops = collections.Counter(f"{n.domain}.{n.op_type}" if n.domain else n.op_type
                                          for n in m.graph.node)
                print(os.path.basename(dest), os.path.getsize(dest), dict(sorted(ops.items())))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/optimum-fixtures")
