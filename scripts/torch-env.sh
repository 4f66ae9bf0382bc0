# Sourced by the scripts that build or run the training runtime: libtorch from
# the torch wheel in .venv-torch (scripts/setup-torch.sh), found by torch-sys at
# build time (LIBTORCH_USE_PYTORCH) and by the loader at run time.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$root/.venv-torch"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
torch_lib=$(ls -d "$VIRTUAL_ENV"/lib/python3*/site-packages/torch/lib | head -n 1)
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
