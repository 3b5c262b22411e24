import numpy as np
import pytest

from napari_smlm.core.camera import estimate_camera
from napari_smlm.core.config import load_config
from napari_smlm.core.simulation import Simulator


def movie(*overrides, frames=200):
    cfg = load_config(None, ["simulation.emitters.density_per_um2=[0.1,0.1]", *overrides])
    sim = Simulator(cfg.simulation, seed=0)
    chunks, _, _ = sim.simulate_movie(frames)
    return np.concatenate([c.numpy() for c in chunks]), sim.camera


def test_mean_variance_fit_finds_baseline_and_gain():
    m, cam = movie("simulation.emitters.background_gradient=0.8", "simulation.emitters.background=[60,60]")
    est, report = estimate_camera(m, kind="emccd")
    assert report["method"] == "mean-variance fit"
    assert report["baseline"] == pytest.approx(cam.baseline, abs=5)
    assert report["adu_per_e"] == pytest.approx(cam.em_gain / cam.e_per_adu, rel=0.10)


def test_uniform_background_needs_a_baseline():
    m, cam = movie("simulation.emitters.background=[60,60]")
    with pytest.raises(ValueError, match="too uniform to find the baseline"):
        estimate_camera(m)
    est, report = estimate_camera(m, baseline=100.0)
    assert report["method"] == "dark level"
    assert report["adu_per_e"] == pytest.approx(cam.em_gain / cam.e_per_adu, rel=0.10)


def test_scmos_estimate():
    m, cam = movie("simulation.camera.kind=scmos", "simulation.camera.e_per_adu=0.5", "simulation.camera.read_noise_e=1.5",
                   "simulation.emitters.background_gradient=0.8")
    est, report = estimate_camera(m, kind="scmos")
    assert report["adu_per_e"] == pytest.approx(2.0, rel=0.10)
