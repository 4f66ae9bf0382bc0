# /// script
# requires-python = ">=3.10"
# dependencies = ["onnxruntime==1.31.1", "onnx==1.20.1", "torch==2.11.0"]
# ///
"""Graphs as ONNX Runtime's own transformer optimizer rewrites them, made from
the exporter-made fixtures (`make_fixtures.py`), the way deployment guides do:

  bert-ortopt-skipln.onnx  BERT with only SkipLayerNormalization fused (LayerNorm + residual Add)
  bert-ortopt.onnx         BERT with the default fusions: EmbedLayerNormalization, fused
                           Attention, BiasGelu, SkipLayerNormalization
  bert-ortopt-mha.onnx     BERT with the attention fused as MultiHeadAttention instead
                           (`use_multi_head_attention`: the Q, K and V projections stay
                           MatMuls, their biases packed into the op's bias input)
  gpt2-ortopt.onnx         GPT-2 with the default fusions for gpt2 (SkipLayerNormalization,
                           FastGelu/BiasGelu where matched)
  llama-ortopt.onnx        LLaMA with the gpt2 fusions but RotaryEmbedding: RMS norms as
                           SimplifiedLayerNormalization and SkipSimplifiedLayerNormalization
  llama-ortopt-rotary.onnx LLaMA with the default gpt2 fusions, RotaryEmbedding included
                           (its position_ids are computed in the graph with a batch of 1, so
                           ONNX Runtime runs it one sample at a time only); its cos/sin caches
                           are cut to their first 256 positions to keep the file small

(`onnxruntime.transformers.optimizer` imports torch, hence the dependency.)

    python tests/models/make_ort_fixtures.py tests/fixtures
"""
import collections
import os
import sys

from onnx import numpy_helper
from onnxruntime.transformers import optimizer
from onnxruntime.transformers.fusion_options import FusionOptions


# Rows kept of a RotaryEmbedding's cos/sin caches (positions beyond any test's sequence).
POSITIONS = 256


def main(out):
    src = lambda n: os.path.join(out, n)  # noqa: E731
    only_skip = FusionOptions("bert")
    for k in ("enable_attention", "enable_bias_gelu", "enable_gelu", "enable_embed_layer_norm",
              "enable_bias_skip_layer_norm", "enable_gelu_approximation"):
        setattr(only_skip, k, False)
    mha = FusionOptions("bert")
    mha.use_multi_head_attention = True
    no_rotary = FusionOptions("gpt2")
    no_rotary.enable_rotary_embeddings = False
    jobs = [
        ("bert-ortopt-skipln.onnx", "bert-torchscript.onnx", "bert", only_skip),
        ("bert-ortopt.onnx", "bert-torchscript.onnx", "bert", None),
        ("bert-ortopt-mha.onnx", "bert-torchscript.onnx", "bert", mha),
        ("gpt2-ortopt.onnx", "gpt2-torchscript.onnx", "gpt2", None),
        ("llama-ortopt.onnx", "llama-torchscript.onnx", "gpt2", no_rotary),
        ("llama-ortopt-rotary.onnx", "llama-torchscript.onnx", "gpt2", None),
    ]
    for name, base, kind, opts in jobs:
        m = optimizer.optimize_model(src(base), model_type=kind, num_heads=4, hidden_size=64,
                                     optimization_options=opts, opt_level=0)
        for init in m.model.graph.initializer:
            if init.name in ("cos_cache", "sin_cache") and init.dims[0] > POSITIONS:
                table = numpy_helper.to_array(init)[:POSITIONS]
                init.CopyFrom(numpy_helper.from_array(table, init.name))
        m.save_model_to_file(src(name))
        ops = collections.Counter(f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in m.model.graph.node)
        print(name, os.path.getsize(src(name)), dict(sorted(ops.items())))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
