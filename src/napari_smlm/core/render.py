"""Super-resolution images from localizations."""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

__all__ = ["render"]


def render(
    table: dict[str, np.ndarray],
    pixel_size_nm: float = 10.0,
    shape_nm: Optional[tuple[float, float]] = None,
    blur: str = "gaussian",
    sigma_nm: Optional[float] = None,
    n_sigma_levels: int = 8,
) -> np.ndarray:
    """Render a (rows, cols) float32 image of localization density.

    ``histogram``: counts per render pixel. ``gaussian``: each localization is a
    Gaussian of its own lateral uncertainty (``sigma_x``/``sigma_y``) or of
    ``sigma_nm``; localizations are grouped into ``n_sigma_levels`` quantiles of σ,
    each group histogrammed and blurred with its σ (scipy.ndimage), which is fast
    for millions of localizations. The image's pixel (i, j) covers
    y in [i·p, (i+1)·p), x in [j·p, (j+1)·p) nm (DESIGN.md's convention).
    """
    if pixel_size_nm <= 0:
        raise ValueError(f"--pixel-size-nm: expected a positive number, got {pixel_size_nm}")
    if blur not in ("gaussian", "histogram"):
        raise ValueError(f"--blur: expected gaussian or histogram, got {blur!r}")
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    if shape_nm is None:
        shape_nm = (float(y.max()) + pixel_size_nm if len(y) else pixel_size_nm,
                    float(x.max()) + pixel_size_nm if len(x) else pixel_size_nm)
    rows, cols = int(np.ceil(shape_nm[0] / pixel_size_nm)), int(np.ceil(shape_nm[1] / pixel_size_nm))
    if rows * cols > 40000 * 40000:
        raise ValueError(f"render of {rows}x{cols} pixels is too large; use a larger --pixel-size-nm")
    edges = (np.arange(rows + 1) * pixel_size_nm, np.arange(cols + 1) * pixel_size_nm)

    def hist(sel):
        h, _, _ = np.histogram2d(y[sel], x[sel], bins=edges)
        return h.astype(np.float32)

    everything = np.ones(len(x), bool)
    if blur == "histogram" or len(x) == 0:
        return hist(everything)
    if sigma_nm is not None:
        sig = np.full(len(x), float(sigma_nm))
    elif "sigma_x" in table:
        sig = np.sqrt(0.5 * (np.asarray(table["sigma_x"], float) ** 2 + np.asarray(table["sigma_y"], float) ** 2))
    else:
        sig = np.full(len(x), 2.0 * pixel_size_nm)
    sig = np.where(np.isfinite(sig) & (sig > 0), sig, np.nanmedian(sig) if np.isfinite(sig).any() else pixel_size_nm)
    levels = np.unique(np.quantile(sig, np.linspace(0, 1, n_sigma_levels + 1)))
    which = np.clip(np.searchsorted(levels, sig, side="right") - 1, 0, max(len(levels) - 2, 0))
    image = np.zeros((rows, cols), np.float32)
    for i in np.unique(which):
        sel = which == i
        s = float(np.median(sig[sel])) / pixel_size_nm
        image += ndimage.gaussian_filter(hist(sel), s, mode="constant") if s > 0.05 else hist(sel)
    return image
