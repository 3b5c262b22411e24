"""Cramér-Rao lower bounds: 2D (Mortensen et al., Nat. Methods 2010) and 3D for any PSF model."""

from __future__ import annotations

import numpy as np

__all__ = ["crlb_lateral_nm", "crlb_3d_nm"]


def crlb_lateral_nm(photons, background, sigma_nm: float, pixel_size_nm: float, excess_noise: float = 2.0) -> np.ndarray:
    """Per-axis localization precision bound (nm) for an integrated Gaussian PSF.

    Mortensen et al. 2010, eq. 6 with the EMCCD excess-noise factor F² (2 for an
    EMCCD at high gain, 1 for an sCMOS / ideal camera):
    var = F² · σa²/N · (16/9 + 8π σa² b / (N a²)),  σa² = σ² + a²/12,
    with N photons, b background photons per pixel and a the pixel size.
    """
    n = np.asarray(photons, float)
    b = np.asarray(background, float)
    a = float(pixel_size_nm)
    sa2 = sigma_nm**2 + a * a / 12.0
    var = excess_noise * sa2 / n * (16.0 / 9.0 + 8.0 * np.pi * sa2 * b / (n * a * a))
    return np.sqrt(var)


def crlb_3d_nm(psf, photons, background, z_nm, excess_noise: float = 2.0, roi_px: int | None = None) -> np.ndarray:
    """Cramér–Rao bound of (x, y, z) for a 3D PSF, (n, 3) in nm, one row per molecule.

    ``psf``: a :class:`napari_smlm.core.psf.PSF` with ``pixel_size_nm`` (astigmatic
    Gaussian or calibrated spline); ``photons``, ``background`` (photons per pixel) and
    ``z_nm`` broadcast to n molecules. The molecule sits at the centre of a pixel of a
    ``roi_px`` square (default: the spline's ROI, else 21 px); the Fisher information of
    (x, y, z, photons, background) under Poisson noise, I = Σ ∂μ∂μᵀ/μ over the ROI's
    pixels, is divided by the camera's excess-noise factor F² (2 for an EMCCD at high
    gain, 1 for an sCMOS) as in :func:`crlb_lateral_nm`; the bound is sqrt(diag(I⁻¹)).
    The derivatives come from autograd through the PSF's own rendering, so the bound
    is that of exactly the model we simulate with.
    """
    import torch

    photons, background, z_nm = np.broadcast_arrays(np.asarray(photons, float), np.asarray(background, float),
                                                    np.asarray(z_nm, float))
    roi = int(roi_px or getattr(psf, "roi", 21))
    px = float(psf.pixel_size_nm)
    centre = roi // 2 + 0.5

    def mean_image(theta: torch.Tensor) -> torch.Tensor:
        x, y, z, n, b = theta
        img = psf.render(x.view(1, 1), y.view(1, 1), z.view(1, 1), n.view(1, 1), (roi, roi))[0]
        return (img + b).reshape(-1)

    out = np.empty((photons.size, 3))
    for i, (n, b, z) in enumerate(zip(photons.ravel(), background.ravel(), z_nm.ravel())):
        theta = torch.tensor([centre, centre, z, n, b], dtype=torch.float64)
        mu = mean_image(theta).detach().clamp_min(1e-9)
        jac = torch.autograd.functional.jacobian(mean_image, theta)  # (pixels, 5)
        fisher = (jac.T @ (jac / mu.unsqueeze(1))) / excess_noise
        var = torch.diagonal(torch.linalg.inv(fisher))
        out[i] = (var[:3].clamp_min(0).sqrt() * torch.tensor([px, px, 1.0], dtype=torch.float64)).numpy()
    return out.reshape(*photons.shape, 3)
