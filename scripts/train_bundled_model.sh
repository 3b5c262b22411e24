#!/usr/bin/env bash
# Train (or continue training) a bundled 2D model and copy its weights into the
# package. Rerunnable: with runs/<run>/last.pt present it resumes.
#   scripts/train_bundled_model.sh [default|fast|fast_v2] [--set KEY=VALUE ...]
# default: configs/default_2d.yaml (SigmaMUNet; model v2, the bundled default),
# fast: configs/fast_2d.yaml (FastNet), fast_v2: configs/fast_2d_v2.yaml (the fast
# preset's successor; it trains and stops: it replaces the bundled fast model only by
# hand, after benchmarks/run.py says it should).
# The package gets last.pt, the model after the whole schedule: best.pt is the epoch with
# the best validation Jaccard at a fixed threshold 0.5, which moves by about ±0.01 from
# epoch to epoch with where the model's probabilities sit, not with how good it is (model
# v2: its best.pt, epoch 106, scored lower than last.pt on every benchmark movie, see
# docs/bundled_model.md). The threshold is then tuned (bundle --tune-threshold).
set -euo pipefail
cd "$(dirname "$0")/.."
name=default
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
    name=$1
    shift
fi
case "$name" in
    default) config=configs/default_2d.yaml run=runs/default_2d bundled=src/napari_smlm/models/default_2d.pt ;;
    fast) config=configs/fast_2d.yaml run=runs/fast_2d bundled=src/napari_smlm/models/fast_2d.pt ;;
    fast_v2) config=configs/fast_2d_v2.yaml run=runs/fast_2d_v2 bundled= ;;
    *) echo "train_bundled_model.sh: expected 'default', 'fast' or 'fast_v2', got '$name'" >&2; exit 2 ;;
esac
resume=()
if [ -f "$run/last.pt" ]; then
    resume=(--resume "$run/last.pt")
elif [ -n "$bundled" ] && [ -f "$bundled" ]; then
    # a fresh machine: continue from the bundled weights (fresh optimizer state)
    resume=(--resume "$bundled")
fi
.venv/bin/napari-smlm train --config "$config" --out "$run" "${resume[@]}" "$@"
if [ -z "$bundled" ]; then
    echo "to bundle it: .venv/bin/python -m napari_smlm.core.inference.bundle $run/last.pt src/napari_smlm/models/fast_2d.pt --tune-threshold"
    exit 0
fi
.venv/bin/python -m napari_smlm.core.inference.bundle "$run/last.pt" "$bundled" --tune-threshold
