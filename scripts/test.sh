#!/usr/bin/env bash
# Sets up (ONNX Runtime and the real MiniLM in .venv; torch + transformers in
# .venv-torch, for the checks that stock transformers loads what ecospac writes
# and for the training runtime's libtorch) and runs every test: the workspace
# without libtorch, then the training runtime and `ecospac train` with it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/setup-torch.sh
cargo test --workspace --locked "$@"
# The library driven by another program's own graph (examples/drive_passes.rs).
cargo run --locked --quiet --example drive_passes
source scripts/torch-env.sh
cargo test --locked -p ecospac-runtime-train --features torch "$@"
cargo test --locked --features train --test train_cli "$@"
