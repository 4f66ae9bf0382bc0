#!/usr/bin/env bash
# Pre-training benchmark of the training runtime: a GPT-2-style and a
# LLaMA-style model (6 layers, hidden 256) on the reST sources of the Python
# 3.11 documentation (Debian's python3.11-doc), for a fixed token budget:
# dense vs. EcoSpa (coupled Taylor, target 0.5) vs. the uncoupled criterion
# (target 0.5), same seed, data and schedule. Then bench/train_report.py
# writes the side-by-side figures and the loss-curve SVG.
#
#   bench/train_ecospa.sh [STEPS] [DEVICE]      (defaults: 400 steps, auto)
#   ARCHS=gpt2 OUT=.cache/bench/train-600 bench/train_ecospa.sh 600 cpu   (one model, another folder)
#
# Each step is 16 sequences of 128 tokens (2048 tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-400}
device=${2:-auto}
./scripts/setup.sh
./scripts/setup-torch.sh
source scripts/torch-env.sh
corpus=$(bench/python_docs.sh)
cargo build --release --locked --features train
ecospac=./target/release/ecospac
out=${OUT:-.cache/bench/train}
mkdir -p "$out"
start=$((steps / 10)); end=$((steps * 6 / 10))
for arch in ${ARCHS:-gpt2 llama}; do
  for run in dense ecospac uncoupled; do
    case $run in
      dense) extra=(--target 1.0) ;;
      ecospac) extra=(--target 0.5 --criterion coupled) ;;
      uncoupled) extra=(--target 0.5 --criterion uncoupled) ;;
    esac
    dir="$out/$arch-$run"
    rm -rf "$dir"
    # One tokenizer for every run: trained once, then reused.
    tok=()
    [ -f "$out/tokenizer.json" ] && tok=(--tokenizer "$out/tokenizer.json")
    "$ecospac" train --config "bench/configs/$arch-6x256.json" --data "$corpus" "${tok[@]}" \
      --vocab 8192 -o "$dir" --steps "$steps" --batch 16 --seq-len 128 --lr 1e-3 --warmup $((steps / 20)) \
      --start "$start" --end "$end" --every 25 --eval-every $((steps / 10)) --eval-sequences 128 \
      --checkpoint-every 0 --seed 0 --device "$device" "${extra[@]}" 2> "$dir.stderr"
    [ -f "$out/tokenizer.json" ] || cp "$dir/tokenizer.json" "$out/tokenizer.json"
  done
done
.venv/bin/python bench/train_report.py "$out" ${ARCHS:-gpt2 llama}
