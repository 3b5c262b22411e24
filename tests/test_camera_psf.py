import math

import pytest
import torch

from napari_smlm.core.camera import Camera
from napari_smlm.core.psf import GaussianPSF


def _photon_stats(cam, lam, n=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    est = cam.to_photons(cam.forward(torch.full((n,), float(lam)), g))
    return est.mean().item(), est.var().item()


def test_emccd_mean_and_excess_noise():
    cam = Camera(baseline=100, e_per_adu=45, em_gain=100, qe=0.9, read_noise_e=74.4, kind="emccd")
    mean, var = _photon_stats(cam, 200.0)
    assert mean == pytest.approx(200.0, rel=0.01)
    # Var of the photon estimate: F² · λ / qe with F² = 2 (read noise and ADU rounding are tiny after gain).
    expected = 2 * 200.0 / 0.9
    assert var == pytest.approx(expected, rel=0.05)


def test_scmos_and_ideal_noise():
    scmos = Camera(baseline=100, e_per_adu=0.5, em_gain=1, qe=0.8, read_noise_e=1.5, kind="scmos")
    mean, var = _photon_stats(scmos, 50.0)
    assert mean == pytest.approx(50.0, rel=0.02)
    # Poisson(qe λ) + read noise + rounding (0.5 e/ADU), in photons: (qe λ + σ² + e²/12) / qe²
    expected = (0.8 * 50 + 1.5**2 + 0.5**2 / 12) / 0.8**2
    assert var == pytest.approx(expected, rel=0.05)
    mean, var = _photon_stats(Camera.ideal(), 30.0)
    assert mean == pytest.approx(30.0, rel=0.02) and var == pytest.approx(30.0, rel=0.05)


def test_adu_is_integer_and_clipped():
    cam = Camera(max_adu=1000)
    adu = cam.forward(torch.tensor([0.0, 1e6]), torch.Generator().manual_seed(1))
    assert torch.equal(adu, adu.round()) and adu.max() == 1000 and adu.min() >= 0


def test_gaussian_psf_sums_to_photons_and_follows_pixel_convention():
    psf = GaussianPSF(sigma_nm=130.0, pixel_size_nm=100.0)
    # Emitter at the centre of pixel (row 9, column 6): x = 6.5 px, y = 9.5 px.
    x, y = torch.tensor([[6.5]]), torch.tensor([[9.5]])
    img = psf.render(x, y, torch.zeros(1, 1), torch.tensor([[1000.0]]), (16, 16), sigma_px=torch.tensor([[1.3]]))[0]
    assert img.sum().item() == pytest.approx(1000.0, rel=1e-3)
    assert divmod(int(img.argmax()), 16) == (9, 6)
    rows, cols = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    assert (img * cols).sum().item() / img.sum().item() == pytest.approx(6.5, abs=0.02)
    assert (img * rows).sum().item() / img.sum().item() == pytest.approx(9.5, abs=0.02)
    # Integrated (erf) form: the centre pixel holds erf(0.5/(√2σ))² of the photons.
    frac = math.erf(0.5 / (math.sqrt(2) * 1.3)) ** 2
    assert img[9, 6].item() == pytest.approx(1000 * frac, rel=1e-4)
