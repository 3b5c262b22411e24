#!/usr/bin/env bash
# Set up napari-smlm in ./.venv on a fresh Linux machine with Python >= 3.10.
#   scripts/setup.sh            the package and its command `napari-smlm`
#   scripts/setup.sh testing    ... plus the test tools
#   scripts/setup.sh all        ... plus napari with a Qt binding (the GUI)
# Torch is installed first and pinned (TORCH_SPEC, default torch==2.13.0): where
# the package index serves the CPU build (as on our CI machines) no multi-GB CUDA
# download happens; on a GPU machine point pip at a CUDA build, e.g.
#   TORCH_SPEC="torch==2.13.0" PIP_INDEX_URL=<your CUDA wheel index> scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "installing ${TORCH_SPEC:-torch==2.13.0} ..."
    "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
fi
if [ -n "$extra" ]; then
    "${pip[@]}" -e ".[$extra]"
else
    "${pip[@]}" -e .
fi
.venv/bin/python -c "import torch, napari_smlm; print(f'napari-smlm {napari_smlm.__version__} with torch {torch.__version__} (CUDA available: {torch.cuda.is_available()})')"
