"""Simulation parameters from a movie: PSF width, photons, background ("fill from movie")."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["estimate_movie_parameters"]


def estimate_movie_parameters(frames_photons: np.ndarray, pixel_size_nm: float, box: int = 7, max_spots: int = 2000) -> dict:
    """Estimate PSF σ, photon range and background range from frames in photons.

    Background per frame is the median; spots are local maxima well above it
    (5 robust σ); each spot's photons are its background-subtracted sum over a
    ``box``x``box`` window and its σ the square root of the mean second moment.
    Returns ``sigma_nm`` [p25, p75], ``photons`` [p10, p90], ``background`` [p5, p95]
    and the number of spots used.
    """
    frames = np.asarray(frames_photons, float)
    if frames.ndim == 2:
        frames = frames[None]
    bgs, sigmas, photons = [], [], []
    r = box // 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    for f in frames:
        bg = float(np.median(f))
        noise = 1.4826 * float(np.median(np.abs(f - bg))) + 1e-6
        bgs.append(bg)
        smooth = ndimage.gaussian_filter(f, 1.0)
        peaks = (smooth == ndimage.maximum_filter(smooth, size=box)) & (smooth > bg + 5 * noise / 2)
        for i, j in zip(*np.nonzero(peaks)):
            if i < r or j < r or i >= f.shape[0] - r or j >= f.shape[1] - r:
                continue
            patch = f[i - r:i + r + 1, j - r:j + r + 1] - bg
            total = patch.sum()
            if total <= 0:
                continue
            w = np.clip(patch, 0, None)
            cy, cx = (w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()
            # pixel integration adds a²/12 (a = 1 px) to the PSF's variance
            var = (w * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum() / (2 * w.sum()) - 1.0 / 12.0
            sigmas.append(np.sqrt(max(var, 1e-6)))
            photons.append(total)
        if len(photons) >= max_spots:
            break
    out = {"background": [float(np.percentile(bgs, 5)), float(np.percentile(bgs, 95))], "spots": len(photons)}
    if photons:
        out["photons"] = [float(np.percentile(photons, 10)), float(np.percentile(photons, 90))]
        # The window truncates the PSF; second moments of a 7x7 box underestimate σ
        # slightly for wide PSFs, which is acceptable for choosing a training range.
        s = np.asarray(sigmas) * pixel_size_nm
        out["sigma_nm"] = [float(np.percentile(s, 25)), float(np.percentile(s, 75))]
    return out
