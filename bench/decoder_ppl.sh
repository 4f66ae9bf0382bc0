#!/usr/bin/env bash
# Held-out perplexity of a trained decoder: the original vs. ecospac's compact
# ONNX models at --budget 0.5 vs. Torch-Pruning 1.6.1 on the same checkpoint.
#
#   bench/decoder_ppl.sh [STEPS]      (default 600; outputs in .cache/bench/decoder/)
#
# 1. Corpus: the reST sources of the Python 3.11 docs (Debian python3.11-doc, as
#    bench/train_ecospa.sh). File-level split (bench/decoder_ppl.py split): every
#    10th file in sorted order is held out, chosen among the files outside
#    tutorial/, howto/ and faq/ (ecospac's built-in calibration corpus takes
#    prose from those three, so they stay on the training side); the rest is
#    copied to data/train/, which is all `ecospac train` (and its BPE) sees.
#    `ecospac train` itself holds out only the tail of its packed stream
#    (--val-fraction), so that is its "final validation loss", not ours.
# 2. Dense pre-training of bench/configs/llama-6x256.json, STEPS x 16 x 128
#    tokens (reused if run/final exists).
# 3. Compiles of run/final (a checkpoint folder) with ecospac; Torch-Pruning on
#    the same folder loaded as transformers.LlamaForCausalLM.
# 4. Held-out perplexity on 512 sequences of 128 tokens (next-token loss over
#    all 127 positions), ONNX Runtime CPU for the ONNX models, PyTorch (float32,
#    eager attention) for Torch-Pruning; ONNX Runtime latency of each compact model vs. the
#    original (1 thread, batch 8 x 128, alternating, median of 10).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-600}
out=.cache/bench/decoder
py=.venv-torch/bin/python
./scripts/setup.sh
./scripts/setup-torch.sh
bench/setup-peers.sh
source scripts/torch-env.sh
corpus=$(bench/python_docs.sh)
mkdir -p "$out/bin"
# Our own copy of the binary, so that another build of target/ (without the
# train feature) cannot swap it in the middle of the run.
cargo build --release --locked --features train
cp target/release/ecospac "$out/bin/ecospac"
ecospac=$out/bin/ecospac
run() { echo "+ $*" >&2; "$@"; }

run "$py" bench/decoder_ppl.py split "$corpus" "$out"
if [ ! -f "$out/run/final/model.safetensors" ]; then
  rm -rf "$out/run"
  # One thread: on this shared 2-core machine two libtorch threads stall each other
  # (measured 250 vs. 850 tokens/s while another job ran); TRAIN_THREADS=2 on an idle one.
  OMP_NUM_THREADS=${TRAIN_THREADS:-1} run "$ecospac" train --config bench/configs/llama-6x256.json --data "$out/data/train" --vocab 8192 \
    -o "$out/run" --steps "$steps" --batch 16 --seq-len 128 --lr 1e-3 --warmup $((steps / 20)) \
    --eval-every $((steps / 6)) --eval-sequences 128 --checkpoint-every 0 --seed 0 --device cpu \
    --target 1.0 2> "$out/train.stderr"
fi
ckpt=$out/run/final
# `ecospac train` writes tokenizer.json beside final/, not into it, so the
# compiles name it (without it the default compile has no tokenizer, hence no
# built-in corpus).
tok=$out/run/tokenizer.json
run "$py" bench/decoder_ppl.py heldout "$out/run" "$out" 512
rm -f "$out/results.jsonl"

# compile NAME ARGS...: times `ecospac compile $ckpt -o $out/NAME.onnx ARGS`, then scores it.
compile() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  run "$ecospac" compile "$ckpt" -o "$out/$name.onnx" "$@" > "$out/$name.log" 2>&1 || { cat "$out/$name.log"; return 1; }
  t1=$(date +%s.%N)
  cat "$out/$name.log"
  echo "$name: $(echo "$t1 - $t0" | bc) s" >&2
  echo "$t1 - $t0" | bc > "$out/$name.wall"
  return 0
}
compile orig
run "$py" bench/decoder_ppl.py onnx original "$out/orig.onnx" "$out/orig.onnx" "$out" "$(cat "$out/orig.wall")"
compile ecospac-default --budget 0.5 --tokenizer "$tok" --report "$out/ecospac-default.report.json" --emit-plan "$out/ecospac-default.plan.json"
run "$py" bench/decoder_ppl.py onnx "ecospac 0.5 (defaults: built-in corpus)" "$out/ecospac-default.onnx" "$out/orig.onnx" "$out" "$(cat "$out/ecospac-default.wall")"
compile ecospac-indomain --budget 0.5 --tokenizer "$tok" --calibration-text "$out/calib-train.txt" --report "$out/ecospac-indomain.report.json"
run "$py" bench/decoder_ppl.py onnx "ecospac 0.5 (--calibration-text training lines)" "$out/ecospac-indomain.onnx" "$out/orig.onnx" "$out" "$(cat "$out/ecospac-indomain.wall")"
# As written, final/ has no tokenizer: then the defaults calibrate on generated sequences.
compile ecospac-notok --budget 0.5 --report "$out/ecospac-notok.report.json"
run "$py" bench/decoder_ppl.py onnx "ecospac 0.5 (defaults on final/ as written: no tokenizer, generated sequences)" "$out/ecospac-notok.onnx" "$out/orig.onnx" "$out" "$(cat "$out/ecospac-notok.wall")"
compile ecospac-weights --budget 0.5 --criterion coupled --allocation global --refit none --report "$out/ecospac-weights.report.json"
run "$py" bench/decoder_ppl.py onnx "ecospac 0.5 (coupled, global, no refit)" "$out/ecospac-weights.onnx" "$out/orig.onnx" "$out" "$(cat "$out/ecospac-weights.wall")"
run "$py" bench/decoder_ppl.py tp "original (PyTorch)" "$ckpt" "$out" dense
# TP 1.6.1 as released prunes no heads here (its GQA guard; bench/decoder_ppl.py), so
# MLP channels only; the *-heads rows apply its GQA rule as intended (heads + MLP).
run "$py" bench/decoder_ppl.py tp "Torch-Pruning L2 (MLP only)" "$ckpt" "$out" l2
run "$py" bench/decoder_ppl.py tp "Torch-Pruning Taylor (MLP only)" "$ckpt" "$out" taylor
run "$py" bench/decoder_ppl.py tp "Torch-Pruning L2 (heads + MLP, GQA guard fixed)" "$ckpt" "$out" l2-heads
run "$py" bench/decoder_ppl.py tp "Torch-Pruning Taylor (heads + MLP, GQA guard fixed)" "$ckpt" "$out" taylor-heads

echo
echo "training: $(grep -c . "$out/run/log.jsonl") steps logged; final validation loss (ecospac train's own split):"
grep '"val_loss":[0-9]' "$out/run/log.jsonl" | tail -n 1
echo
"$py" bench/decoder_ppl.py table "$out" | tee "$out/table.md"
