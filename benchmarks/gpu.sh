#!/usr/bin/env bash
# One short GPU run (device tool or any CUDA machine): set up, measure, write JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="torch==2.13.0" scripts/setup.sh
timeout 480 .venv/bin/python benchmarks/gpu.py --out "${1:-gpu_results.json}"
