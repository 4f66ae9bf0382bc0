#!/usr/bin/env bash
# Training throughput of the IR executor against the hand-written tch models
# it replaced (last in commit 6ec2f0d), side by side on one machine: the same
# pre-training runs (GPT-2- and LLaMA-style, 6 layers, hidden 256, dense and
# EcoSpa to 0.5) alternate between the two builds, ROUNDS times (this machine
# is shared and noisy: alternating spreads the noise over both; the data is
# the howto/ part of the corpus, so that tokenizing does not dominate), and
# bench/train_engines.py prints the median tokens/s of each and their ratio.
#
#   bench/train_engines.sh [STEPS] [BASELINE_REV]     (defaults: 30 steps, 6ec2f0d; ROUNDS=2)
#   BASELINE_BIN=... EXECUTOR_BIN=... bench/train_engines.sh   (binaries built already)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-30}
rounds=${ROUNDS:-2}
rev=${2:-6ec2f0d}
./scripts/setup.sh
./scripts/setup-torch.sh
source scripts/torch-env.sh
corpus=$(bench/python_docs.sh)
out=.cache/bench/engines
mkdir -p "$out"
# The baseline: the commit with the hand-written models, built in its own worktree.
if [ -z "${BASELINE_BIN:-}" ]; then
  base="$out/baseline-src"
  if [ ! -d "$base" ]; then git worktree add --detach "$base" "$rev" >&2; fi
  (cd "$base" && git checkout -q --detach "$rev" && CARGO_TARGET_DIR=../baseline-target cargo build --release --locked --features train >&2)
  BASELINE_BIN="$out/baseline-target/release/ecospac"
fi
if [ -z "${EXECUTOR_BIN:-}" ]; then
  CARGO_TARGET_DIR=target/train cargo build --release --locked --features train >&2
  EXECUTOR_BIN=target/train/release/ecospac
fi
declare -A bin=([handwritten]="$BASELINE_BIN" [executor]="$EXECUTOR_BIN")
tok=()
[ -f "$out/tokenizer.json" ] && tok=(--tokenizer "$out/tokenizer.json")
for arch in gpt2 llama; do
  for run in dense ecospac; do
    case $run in
      dense) extra=(--target 1.0) ;;
      ecospac) extra=(--target 0.5 --start $((steps / 10)) --end $((steps * 6 / 10)) --every $((steps / 8))) ;;
    esac
    for round in $(seq "$rounds"); do for engine in handwritten executor; do
      dir="$out/$arch-$run-$engine-$round"
      rm -rf "$dir"
      "${bin[$engine]}" train --config "bench/configs/$arch-6x256.json" --data "$corpus/howto" "${tok[@]}" \
        --vocab 8192 -o "$dir" --steps "$steps" --batch 16 --seq-len 128 --lr 1e-3 --warmup $((steps / 20)) \
        --eval-every "$steps" --eval-sequences 32 --checkpoint-every 0 --seed 0 --device cpu "${extra[@]}" \
        2> "$dir.stderr" > /dev/null
      if [ ! -f "$out/tokenizer.json" ]; then cp "$dir/tokenizer.json" "$out/tokenizer.json"; tok=(--tokenizer "$out/tokenizer.json"); fi
    done; done
  done
done
.venv/bin/python bench/train_engines.py "$out" "$rounds"
