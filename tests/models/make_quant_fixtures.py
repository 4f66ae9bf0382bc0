# /// script
# requires-python = ">=3.10"
# dependencies = ["onnxruntime==1.31.1", "onnx==1.20.1", "onnx-ir==1.1.0", "numpy"]
# ///
"""Quantised graphs made from the exporter-made fixtures (`make_fixtures.py`)
the way ONNX Runtime's quantisation guide does it:

  bert-qdq.onnx      BERT, static QDQ int8 (`quantize_static`, per-channel
                     symmetric int8 weights, uint8 activations, QuantFormat.QDQ)
                     after `quant_pre_process`
  gpt2-qdq.onnx      GPT-2, the same
  llama-qdq-pt.onnx  LLaMA, static QDQ with per-tensor weights
  bert-dynq.onnx     BERT, `quantize_dynamic` (DynamicQuantizeLinear + MatMulInteger)
  llama-dynq-pc.onnx LLaMA, `quantize_dynamic` with per-channel weights (a scale
                     and zero point per column)
  bert-qop.onnx      BERT, static int8 in the operator format (`QuantFormat.QOperator`:
                     QLinearMatMul, QLinearAdd, QLinearMul, QLinearSoftmax)
  gpt2-qop.onnx      GPT-2, the same (its Conv1D projections as QGemm)
  llama-qop.onnx     LLaMA, the same (QLinearSigmoid, QLinearConcat besides)
  cnn-qop.onnx       a small CNN (Conv, Relu, Conv) in the operator format: QLinearConv
                     with per-channel weight scales, the Relu folded into the first
                     (the float CNN is built here with onnx.helper, seeded; the
                     quantiser is what users run)
  llama-int4.onnx    LLaMA, int4 weight-only `MatMulNBits` (block 16, symmetric)
  gpt2-fp16.onnx     GPT-2 in float16 (`onnxruntime.transformers.float16`,
                     float32 inputs and outputs kept), as GPU deployment does

The float fixtures are random-initialised, so all their biases are zero and
LayerNorm scales one, and the exporter merged the equal ones into one shared
tensor, which no trained model has. Each use of a vector (rank-1 float
initializer) first gets its own copy with seeded noise, like trained weights. Calibration reads seeded random
token ids, so the files are reproducible.

    python tests/models/make_quant_fixtures.py tests/fixtures
"""
import collections
import os
import sys
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process


class Tokens(CalibrationDataReader):
    def __init__(self, vocab=100, batches=8):
        rng = np.random.default_rng(0)
        self.items = iter([{"input_ids": rng.integers(0, vocab, (2, 16), dtype=np.int64),
                            "attention_mask": np.ones((2, 16), dtype=np.int64)} for _ in range(batches)])

    def get_next(self):
        return next(self.items, None)


class Images(CalibrationDataReader):
    def __init__(self, batches=4):
        rng = np.random.default_rng(0)
        self.items = iter([{"image": rng.standard_normal((2, 3, 16, 16), dtype=np.float32)} for _ in range(batches)])

    def get_next(self):
        return next(self.items, None)


def small_cnn():
    """Conv 3→8 (3×3), Relu, Conv 8→8 (3×3): seeded weights and biases."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(2)
    w = lambda name, *shape: numpy_helper.from_array(  # noqa: E731
        (rng.standard_normal(shape) * 0.2).astype(np.float32), name)
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["features"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 8, 16, 16])],
                              [w("w1", 8, 3, 3, 3), w("b1", 8), w("w2", 8, 8, 3, 3), w("b2", 8)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def trained_like(src, dst):
    """Each use of a rank-1 float initializer (biases, norm scales) gets its own noisy copy."""
    from onnx import numpy_helper
    m = onnx.load(src)
    rng = np.random.default_rng(1)
    vectors = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer
               if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 1 and t.dims[0] > 1}
    copies = []
    for n in m.graph.node:
        for j, name in enumerate(n.input):
            if name in vectors:
                a = vectors[name]
                new = f"{name}.use{len(copies)}"
                copies.append(numpy_helper.from_array((a + rng.normal(0, 0.05, a.shape)).astype(np.float32), new))
                n.input[j] = new
    kept = [t for t in m.graph.initializer if t.name not in vectors]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept + copies)
    onnx.save(m, dst)


def static(src, dst, per_channel, quant_format=QuantFormat.QDQ):
    with tempfile.TemporaryDirectory() as tmp:
        pre, noisy = os.path.join(tmp, "pre.onnx"), os.path.join(tmp, "noisy.onnx")
        trained_like(src, noisy)
        quant_pre_process(noisy, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, Tokens(), quant_format=quant_format, per_channel=per_channel,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)


def int4(src, dst):
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    cfg = DefaultWeightOnlyQuantConfig(block_size=16, is_symmetric=True)
    q = MatMulNBitsQuantizer(onnx.load(src), algo_config=cfg)
    q.process()
    q.model.save_model_to_file(dst, False)


def main(out):
    p = lambda n: os.path.join(out, n)  # noqa: E731
    static(p("bert-torchscript.onnx"), p("bert-qdq.onnx"), True)
    static(p("gpt2-torchscript.onnx"), p("gpt2-qdq.onnx"), True)
    static(p("llama-torchscript.onnx"), p("llama-qdq-pt.onnx"), False)
    static(p("bert-torchscript.onnx"), p("bert-qop.onnx"), True, QuantFormat.QOperator)
    static(p("gpt2-torchscript.onnx"), p("gpt2-qop.onnx"), True, QuantFormat.QOperator)
    static(p("llama-torchscript.onnx"), p("llama-qop.onnx"), True, QuantFormat.QOperator)
    with tempfile.TemporaryDirectory() as tmp:
        cnn = os.path.join(tmp, "cnn.onnx")
        onnx.save(small_cnn(), cnn)
        quantize_static(cnn, p("cnn-qop.onnx"), Images(), quant_format=QuantFormat.QOperator, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    dynamic = lambda s, d: quantize_dynamic(s, d, weight_type=QuantType.QInt8)  # noqa: E731
    dynamic_pc = lambda s, d: quantize_dynamic(s, d, weight_type=QuantType.QInt8, per_channel=True)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        for base, dst, quant in (("bert", "bert-dynq.onnx", dynamic), ("llama", "llama-dynq-pc.onnx", dynamic_pc),
                                 ("llama", "llama-int4.onnx", int4)):
            noisy = os.path.join(tmp, base + ".onnx")
            trained_like(p(base + "-torchscript.onnx"), noisy)
            quant(noisy, p(dst))
    from onnxruntime.transformers.float16 import convert_float_to_float16
    onnx.save(convert_float_to_float16(onnx.load(p("gpt2-torchscript.onnx")), keep_io_types=True), p("gpt2-fp16.onnx"))
    for n in ("bert-qdq.onnx", "gpt2-qdq.onnx", "llama-qdq-pt.onnx", "bert-qop.onnx", "gpt2-qop.onnx",
              "llama-qop.onnx", "cnn-qop.onnx", "bert-dynq.onnx",
              "llama-dynq-pc.onnx", "llama-int4.onnx", "gpt2-fp16.onnx"):
        m = onnx.load(p(n))
        ops = collections.Counter(f"{x.domain}.{x.op_type}" if x.domain else x.op_type for x in m.graph.node)
        print(n, os.path.getsize(p(n)), dict(sorted(ops.items())))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
