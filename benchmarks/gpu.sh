#!/usr/bin/env bash
# One short GPU run (the device tool or any CUDA machine): measure, write JSON.
#   benchmarks/gpu.sh [out.json]        (TRAIN_MINUTES=3 by default: the time-boxed training curve)
# Uses a python3 that already has torch with CUDA and the core's dependencies (as on
# the device machines, which reach no package index); otherwise sets up .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if python3 -c "import torch, tifffile, scipy, h5py, yaml; assert torch.cuda.is_available()" 2>/dev/null; then
    PY=python3
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
    TORCH_SPEC="torch==2.13.0" scripts/setup.sh
    PY=.venv/bin/python
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout 480 "$PY" benchmarks/gpu.py --train-minutes "${TRAIN_MINUTES:-3}" --out "${1:-gpu_results.json}"
