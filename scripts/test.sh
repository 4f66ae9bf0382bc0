#!/usr/bin/env bash
# Sets up (ONNX Runtime and the real MiniLM in .venv; torch + transformers in
# .venv-torch, for the checks that stock transformers loads what ecospac writes)
# and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/setup-torch.sh
cargo test --workspace --locked "$@"
