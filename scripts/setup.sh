#!/usr/bin/env bash
# Set up napari-smlm in ./.venv on a fresh Linux machine with Python >= 3.10.
#   scripts/setup.sh            the package and its command `napari-smlm`
#   scripts/setup.sh testing    ... plus the test tools, napari, and Xvfb for GUI tests
#   scripts/setup.sh all        ... plus napari with a Qt binding (the GUI)
# Torch is installed first and pinned: without an NVIDIA GPU the CPU build
# (torch==2.13.0+cpu, from local wheels or a CPU wheel index in PIP_EXTRA_INDEX_URL),
# so no multi-GB CUDA download happens; with a GPU torch==2.13.0. TORCH_SPEC overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
# GUI tests run a real napari viewer on a virtual screen (Xvfb); install it and the
# OpenGL/X libraries Qt needs, where we may (root, Debian/Ubuntu).
if [ "$extra" = "testing" ] && ! command -v xvfb-run >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing xvfb and Qt's system libraries (apt-get) ..."
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 \
            libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
            libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null
    else
        echo "note: GUI tests need xvfb-run: sudo apt-get install -y xvfb libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0" >&2
    fi
fi
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    if [ -n "${TORCH_SPEC:-}" ]; then
        spec=("$TORCH_SPEC")
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        spec=("torch==2.13.0")                  # a GPU: the CUDA build
    else
        spec=("torch==2.13.0+cpu")              # no GPU: the CPU build (from a CPU wheel index or local wheels)
    fi
    echo "installing ${spec[*]} ..."
    if ! "${pip[@]}" "${spec[@]}"; then
        echo "no CPU wheel of torch 2.13.0 found; falling back to torch==2.13.0 (set PIP_EXTRA_INDEX_URL to a CPU wheel index to avoid the CUDA build)" >&2
        "${pip[@]}" "torch==2.13.0"
    fi
fi
if [ -n "$extra" ]; then
    "${pip[@]}" -e ".[$extra]"
else
    "${pip[@]}" -e .
fi
.venv/bin/python -c "import torch, napari_smlm; print(f'napari-smlm {napari_smlm.__version__} with torch {torch.__version__} (CUDA available: {torch.cuda.is_available()})')"
