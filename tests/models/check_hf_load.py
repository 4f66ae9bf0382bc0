"""Loads a checkpoint folder written by `ecospac compile -o DIR/` with stock
`transformers`, runs it on the inputs stored in REFERENCE (a safetensors file
of named arrays), runs ecospac's compact ONNX on the same inputs in ONNX
Runtime, and compares every output both produce. Exit 1 when the largest
absolute difference exceeds the tolerance.

    python tests/models/check_hf_load.py CHECKPOINT_DIR COMPACT.onnx REFERENCE.safetensors [TOL]
"""
import json
import sys

import numpy as np
import onnxruntime as ort
import torch
import transformers as tf
from safetensors.numpy import load_file


def main(folder, onnx_path, reference, tol):
    arrays = load_file(reference)
    with open(f"{folder}/config.json") as f:
        archs = json.load(f).get("architectures") or []
    causal = any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs)
    auto = tf.AutoModelForCausalLM if causal else tf.AutoModel
    model = auto.from_pretrained(folder, attn_implementation="eager")
    model.eval()

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    feeds = {i.name: arrays[i.name] for i in session.get_inputs()}
    onnx_out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    with torch.no_grad():
        o = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}, output_hidden_states=True)
    hf_out = {"last_hidden_state": (o.hidden_states[-1] if causal else o.last_hidden_state).numpy()}
    if causal:
        hf_out["logits"] = o.logits.numpy()
    if getattr(o, "pooler_output", None) is not None:
        hf_out["pooler_output"] = o.pooler_output.numpy()

    worst = 0.0
    for name, ours in onnx_out.items():
        diff = float(np.abs(ours - hf_out[name]).max())
        worst = max(worst, diff)
        print(f"{name}: shape {ours.shape}, max |transformers - ecospac onnx| = {diff:.3e}")
    if worst > tol:
        print(f"FAIL: {worst:.3e} > {tol:.1e}")
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4)
