#!/usr/bin/env bash
# Train (or continue training) the bundled 2D model and copy its best weights into
# the package. Rerunnable: with runs/default_2d/last.pt present it resumes.
#   scripts/train_bundled_model.sh [--set KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
run=runs/default_2d
resume=()
if [ -f "$run/last.pt" ]; then
    resume=(--resume "$run/last.pt")
elif [ -f src/napari_smlm/models/default_2d.pt ]; then
    # a fresh machine: continue from the bundled weights (fresh optimizer state)
    resume=(--resume src/napari_smlm/models/default_2d.pt)
fi
.venv/bin/napari-smlm train --config configs/default_2d.yaml --out "$run" "${resume[@]}" "$@"
.venv/bin/python -m napari_smlm.core.inference.bundle "$run/best.pt" src/napari_smlm/models/default_2d.pt --tune-threshold
