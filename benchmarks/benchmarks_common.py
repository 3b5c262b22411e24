"""Shared pieces of the benchmark scripts: the standard simulated test movie."""

from __future__ import annotations

import time

import numpy as np
import torch

from napari_smlm.core.config import load_config
from napari_smlm.core.simulation import Simulator

# The seed of benchmarks/run.py's movie at each density (its sets are seeded 300 + index),
# for the scripts that score the same movies.
RUN_SEEDS = {0.1: 300, 0.5: 301, 1.0: 302, 2.0: 303, 4.0: 304}


def test_movie(density: float, frames: int, seed: int, photons=(1000, 5000), background=50.0, size=64, overrides=()):
    """64x64 px of 100 nm, EMCCD (baseline 100, 45 e-/ADU, gain 100, QE 0.9, read noise
    74.4 e-), Gaussian PSF sigma 130 nm, blinking (mean on-time 1.5 frames); ``overrides``
    (config ``key=value`` strings, e.g. another camera) come last.
    Returns (uint16 ADU movie, ground-truth table in nm, camera)."""
    cfg = load_config(None, [
        f"simulation.frame_size=[{size},{size}]", "simulation.pixel_size_nm=100", "simulation.psf.sigma_nm=[130,130]",
        f"simulation.emitters.density_per_um2=[{density},{density}]", f"simulation.emitters.photons=[{photons[0]},{photons[1]}]",
        f"simulation.emitters.background=[{background},{background}]", "simulation.emitters.mean_on_frames=1.5",
        *overrides,
    ])
    sim = Simulator(cfg.simulation, "cpu", seed=seed)
    chunks, table, _ = sim.simulate_movie(frames)
    movie = np.concatenate([c.numpy() for c in chunks]).astype(np.uint16)
    gt = {"frame": table.frame.numpy(), "x": table.x_px.numpy() * 100.0, "y": table.y_px.numpy() * 100.0,
          "z": table.z_nm.numpy(), "photons": table.photons.numpy()}
    return movie, gt, sim.camera


def train_steps_per_second(trainer, steps: int, warmup: int = 3) -> float:
    """Optimizer steps/s of a built Trainer with every loss term active (the late-training
    loss), after ``warmup`` untimed steps; CUDA work is waited for before each clock read."""
    trainer.loss_fn.set_epoch(trainer.cfg.training.epochs)
    for _ in range(warmup):
        trainer.train_step()
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if cuda:
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)
