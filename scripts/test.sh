#!/usr/bin/env bash
# Sets up (ONNX Runtime in .venv) and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --workspace --locked "$@"
