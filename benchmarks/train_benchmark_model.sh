#!/usr/bin/env bash
# The "train for your microscope" path, for the benchmark's own simulation settings
# (benchmarks/benchmarks_common.py): fine-tune the bundled model's weights on data
# simulated with the benchmark's camera, PSF (sigma 130 nm), photons (1,000-5,000),
# background (50 photons/px) and densities up to 4 /um^2. Writes runs/bench_emccd/.
#   benchmarks/train_benchmark_model.sh [--set KEY=VALUE ...]
# Then: python benchmarks/run.py --models default,runs/bench_emccd/best.pt
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/napari-smlm train --config configs/default_2d.yaml --init-weights default --out runs/bench_emccd \
    --set "simulation.psf.sigma_nm=[130,130]" --set "simulation.emitters.photons=[1000,5000]" \
    --set "simulation.emitters.photon_distribution=uniform" --set "simulation.emitters.background=[50,50]" \
    --set simulation.emitters.background_gradient=0.0 --set "simulation.emitters.density_per_um2=[0.0,4.5]" \
    --set "loss.terms=[{name: gaussian_mm}]" --set optimizer.lr=0.0003 --set "scheduler={name: cosine, warmup_epochs: 0, min_lr: 0.00003}" \
    --set training.epochs=6 --set training.validation_size=256 --set "training.validation_density_per_um2=[0.1,4.0]" "$@"
