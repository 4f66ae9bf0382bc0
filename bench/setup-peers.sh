#!/usr/bin/env bash
# The two peer pruning tools that bench/peers_minilm.py runs, installed into
# .venv-torch (made by scripts/setup-torch.sh) with --no-deps, so that the
# pinned torch/transformers/onnx/onnxruntime/numpy there stay as they are:
#   onnxsim==0.8.1        ONNX simplifier; onnxsim/pruning.py has structured
#                         (L2, Wanda) channel + attention-head pruning and a
#                         closed-form refit (apply_pruning_finetune)
#   torch-pruning==1.6.1  Torch-Pruning / DepGraph, on PyTorch models
# Set PEER_WHEELS=DIR to install from local wheels in DIR (pip --find-links)
# instead of, or before, PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-torch.sh
if ! .venv-torch/bin/python - <<'EOF' 2>/dev/null
import importlib.metadata as md
assert md.version("onnxsim") == "0.8.1"
assert md.version("torch-pruning") == "1.6.1"
import onnxsim.pruning, torch_pruning  # noqa: F401
EOF
then
  .venv-torch/bin/pip install --quiet --disable-pip-version-check --no-deps \
    ${PEER_WHEELS:+--find-links "$PEER_WHEELS"} onnxsim==0.8.1 torch-pruning==1.6.1
fi
