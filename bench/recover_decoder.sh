#!/usr/bin/env bash
# Recovery by distillation of a trained decoder: the compact models of
# bench/decoder_ppl.sh (the trained LLaMA-style 6x256 and its ecospac compiles
# at --budget 0.5: the default compile and the weights-only one) distilled from
# the original on the training side of its file split, with a snapshot every
# STEPS/4 steps, each scored by held-out perplexity (the same 512 held-out
# sequences as bench/decoder_ppl.sh); table and bench/recover-decoder.svg.
#
#   bench/recover_decoder.sh [STEPS]      (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-200}
out=.cache/bench/decoder
[ -f "$out/orig.onnx" ] && [ -f "$out/ecospac-default.onnx" ] || bench/decoder_ppl.sh
./scripts/setup-torch.sh
source scripts/torch-env.sh
CARGO_TARGET_DIR=target/train cargo build --release --locked --features train
bin=target/train/release/ecospac
rm -f "$out/recover.jsonl"
for name in default weights; do
  run="$out/recover-$name"
  rm -rf "$run"
  OMP_NUM_THREADS=${TRAIN_THREADS:-2} "$bin" train --from "$out/ecospac-$name.onnx" --teacher "$out/orig.onnx" \
    --data "$out/data/train" --tokenizer "$out/run/tokenizer.json" --steps "$steps" --batch 16 --seq-len 128 \
    --lr 2e-4 --warmup 10 --weight-decay 0 --match-layers --eval-every $((steps / 4)) \
    --checkpoint-every $((steps / 4)) --device cpu -o "$run"
  .venv-torch/bin/python bench/recover_decoder.py score "$out" "ecospac 0.5, $name" "$run" "$out/ecospac-$name.onnx"
done
.venv-torch/bin/python bench/recover_decoder.py report "$out" "$out/orig.onnx"
