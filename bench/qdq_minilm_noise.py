"""How much of the QDQ MiniLM's fidelity is activation quantisation: scores
the compact QDQ graph that `bench/coverage_minilm.py` wrote, and the same
graphs with every QuantizeLinear → DequantizeLinear pair on an activation
removed (weights stay int8), against the QDQ original and the float export.

    .venv-torch/bin/python bench/qdq_minilm_noise.py --tokenizer TOKENIZER_JSON
"""
import argparse
import os
import sys

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality_minilm as q  # noqa: E402


def float_activations(src, dst):
    m = onnx.load(src)
    prod = {o: n for n in m.graph.node for o in n.output}
    source = {n.output[0]: prod[n.input[0]].input[0] for n in m.graph.node
              if n.op_type == "DequantizeLinear" and n.input[0] in prod and prod[n.input[0]].op_type == "QuantizeLinear"}
    for n in m.graph.node:
        for i, x in enumerate(n.input):
            if x in source:
                n.input[i] = source[x]
    onnx.save(m, dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--dir", default=os.path.join(q.ROOT, ".cache", "bench", "coverage"))
    ap.add_argument("--float", default=os.path.join(q.ROOT, ".cache", "minilm", "model.onnx"))
    a = ap.parse_args()
    feeds = q.held_out(a.tokenizer)
    orig = os.path.join(a.dir, "qdq-int8.onnx")
    comp = os.path.join(a.dir, "qdq-int8-quantize_static-per-channel.compact.onnx")
    orig_f, comp_f = orig + ".float-act.onnx", comp + ".float-act.onnx"
    float_activations(orig, orig_f)
    float_activations(comp, comp_f)

    def ref(path):
        r = q.run(path, feeds)
        return r, q.top5(q.pooled(r, feeds["attention_mask"]))
    rows = [("compact QDQ", comp, orig), ("QDQ original", orig, a.float), ("compact QDQ", comp, a.float),
            ("original, float activations", orig_f, orig), ("compact, float activations", comp_f, orig_f)]
    print("| model | against | all rows | real |")
    print("| --- | --- | --- | --- |")
    for name, path, against in rows:
        s = q.score(path, feeds, *ref(against))
        label = {orig: "QDQ original", a.float: "float export", orig_f: "original, float activations"}[against]
        print(f"| {name} | {label} | {s['all_rows']:.3f} | {s['real']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
