# /// script
# requires-python = ">=3.10"
# dependencies = ["onnx==1.20.1", "numpy"]
# ///
"""A graph whose `If` branch reads a prunable weight of the enclosing graph by
name: two FFN blocks `x + W2·relu(W1·x)`; the If (on the sign of the input's
sum) returns `x @ W1` of block 0 (then) or `x @ B` with a branch-local `B`
(else) as a second graph output. Slicing block 0's FFN width would silently
change that output's shape; only block 1's FFN may be pruned.

    python tests/models/make_subgraph_fixture.py tests/fixtures/if-reads-weight.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(path):
    rng = np.random.default_rng(0)
    w = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)  # noqa: E731
    inits = [w("b0.w1", 16, 32), w("b0.w2", 32, 16), w("b1.w1", 16, 32), w("b1.w2", 32, 16)]
    nodes = []
    x = "x"
    for b in ("b0", "b1"):
        nodes += [
            helper.make_node("MatMul", [x, f"{b}.w1"], [f"{b}.up"]),
            helper.make_node("Relu", [f"{b}.up"], [f"{b}.act"]),
            helper.make_node("MatMul", [f"{b}.act", f"{b}.w2"], [f"{b}.down"]),
            helper.make_node("Add", [x, f"{b}.down"], [f"{b}.out"]),
        ]
        x = f"{b}.out"
    then_g = helper.make_graph([helper.make_node("MatMul", ["x", "b0.w1"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("MatMul", ["x", "local"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
                               initializer=[w("local", 16, 32)])
    nodes += [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch"], then_branch=then_g, else_branch=else_g),
    ]
    inits.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"))
    graph = helper.make_graph(
        nodes, "if-reads-weight",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 16])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 8, 16]),
         helper.make_tensor_value_info("branch", TensorProto.FLOAT, ["batch", 8, 32])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/if-reads-weight.onnx")
