"""Cramér-Rao lower bound of 2D localization (Mortensen et al., Nat. Methods 2010)."""

from __future__ import annotations

import numpy as np

__all__ = ["crlb_lateral_nm"]


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
