#!/usr/bin/env bash
# Train (or continue training) a bundled 2D model and copy its best weights into
# the package. Rerunnable: with runs/<name>_2d/last.pt present it resumes.
#   scripts/train_bundled_model.sh [default|fast|v2] [--set KEY=VALUE ...]
# default: configs/default_2d.yaml (SigmaMUNet); fast: configs/fast_2d.yaml (FastNet);
# v2: configs/default_2d_v2.yaml (issue 16's successor of default; it trains and stops:
# it replaces the bundled default only by hand, after benchmarks/run.py says it should).
set -euo pipefail
cd "$(dirname "$0")/.."
name=default
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
    name=$1
    shift
fi
case "$name" in
    default|fast) ;;
    v2)
        run=runs/default_2d_v2
        resume=()
        [ -f "$run/last.pt" ] && resume=(--resume "$run/last.pt")
        .venv/bin/napari-smlm train --config configs/default_2d_v2.yaml --out "$run" "${resume[@]}" "$@"
        echo "to bundle it: .venv/bin/python -m napari_smlm.core.inference.bundle $run/best.pt src/napari_smlm/models/default_2d.pt --tune-threshold"
        exit 0 ;;
    *) echo "train_bundled_model.sh: expected 'default', 'fast' or 'v2', got '$name'" >&2; exit 2 ;;
esac
run=runs/${name}_2d
bundled=src/napari_smlm/models/${name}_2d.pt
resume=()
if [ -f "$run/last.pt" ]; then
    resume=(--resume "$run/last.pt")
elif [ -f "$bundled" ]; then
    # a fresh machine: continue from the bundled weights (fresh optimizer state)
    resume=(--resume "$bundled")
fi
.venv/bin/napari-smlm train --config "configs/${name}_2d.yaml" --out "$run" "${resume[@]}" "$@"
.venv/bin/python -m napari_smlm.core.inference.bundle "$run/best.pt" "$bundled" --tune-threshold
