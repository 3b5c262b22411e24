"""Super-resolution images from localizations: density, coloured by z, z-stack volume."""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

__all__ = ["render", "render_z_color", "render_volume", "select_z", "z_limits", "z_colors", "DEFAULT_Z_COLORMAP"]

#: Colour map of renders coloured by z (matplotlib's name): low z violet, high z red; unlike turbo or
#: jet its ends stay bright, so molecules at the ends of the z range stay visible on black.
DEFAULT_Z_COLORMAP = "rainbow"


def select_z(table: dict[str, np.ndarray], z_range_nm: Optional[tuple[float, float]]) -> dict[str, np.ndarray]:
    """The rows with ``lo <= z <= hi`` (nm), every column kept; the whole table for
    ``None``. A table without ``z`` counts as z = 0 everywhere (2D)."""
    if z_range_nm is None:
        return table
    lo, hi = (float(v) for v in z_range_nm)
    if not lo <= hi:
        raise ValueError(f"--z-range: expected LO <= HI in nm, got {lo:g} {hi:g}")
    z = np.asarray(table.get("z", np.zeros(len(table["x"]))), float)
    return _rows(table, (z >= lo) & (z <= hi))


def _rows(table: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The rows where ``keep`` is True of every per-row column; other entries as they are."""
    n = len(keep)
    return {k: (np.asarray(v)[keep] if np.ndim(v) and len(v) == n else v) for k, v in table.items()}


def z_limits(table: dict[str, np.ndarray], z_range_nm: Optional[tuple[float, float]] = None) -> tuple[float, float]:
    """The z range (nm) a colour scale spans: ``z_range_nm`` where given, else the
    data's (finite) range; a range of zero width (2D data) is widened to ±0.5 nm, so
    every localization gets the colour map's middle colour."""
    if z_range_nm is not None:
        lo, hi = float(z_range_nm[0]), float(z_range_nm[1])
    else:
        z = np.asarray(table.get("z", np.zeros(len(table["x"]))), float)
        z = z[np.isfinite(z)]
        lo, hi = (float(z.min()), float(z.max())) if len(z) else (0.0, 0.0)
    if hi - lo < 1e-6:
        lo, hi = 0.5 * (lo + hi) - 0.5, 0.5 * (lo + hi) + 0.5
    return lo, hi


def z_colors(z_nm: np.ndarray, limits_nm: tuple[float, float], colormap: str = DEFAULT_Z_COLORMAP) -> np.ndarray:
    """(N, 3) RGB in [0, 1] of each z (nm) from the matplotlib colour map over
    ``limits_nm``; z outside the limits gets the end colours."""
    import matplotlib

    cmap = matplotlib.colormaps[colormap]
    lo, hi = limits_nm
    t = np.clip((np.asarray(z_nm, float) - lo) / (hi - lo), 0.0, 1.0)
    return np.asarray(cmap(np.nan_to_num(t, nan=0.5)), np.float32)[:, :3]


def _grid(x: np.ndarray, y: np.ndarray, pixel_size_nm: float, shape_nm):
    if pixel_size_nm <= 0:
        raise ValueError(f"--pixel-size-nm: expected a positive number, got {pixel_size_nm}")
    if shape_nm is None:
        shape_nm = (float(y.max()) + pixel_size_nm if len(y) else pixel_size_nm,
                    float(x.max()) + pixel_size_nm if len(x) else pixel_size_nm)
    rows, cols = int(np.ceil(shape_nm[0] / pixel_size_nm)), int(np.ceil(shape_nm[1] / pixel_size_nm))
    if rows * cols > 40000 * 40000:
        raise ValueError(f"render of {rows}x{cols} pixels is too large; use a larger --pixel-size-nm")
    return rows, cols


def _blur_sigmas(table, pixel_size_nm: float, sigma_nm: Optional[float]) -> np.ndarray:
    """Each localization's lateral blur σ in nm."""
    n = len(table["x"])
    if sigma_nm is not None:
        sig = np.full(n, float(sigma_nm))
    elif "sigma_x" in table:
        sig = np.sqrt(0.5 * (np.asarray(table["sigma_x"], float) ** 2 + np.asarray(table["sigma_y"], float) ** 2))
    else:
        sig = np.full(n, 2.0 * pixel_size_nm)
    return np.where(np.isfinite(sig) & (sig > 0), sig, np.nanmedian(sig) if np.isfinite(sig).any() else pixel_size_nm)


def _splat(table, pixel_size_nm: float, rows: int, cols: int, blur: str, sigma_nm: Optional[float],
           n_sigma_levels: int, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """(C, rows, cols) float32: the density of the localizations, once per column of
    ``weights`` (N, C) (one plain density without), histogrammed and blurred."""
    if blur not in ("gaussian", "histogram"):
        raise ValueError(f"--blur: expected gaussian or histogram, got {blur!r}")
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    w = np.ones((len(x), 1)) if weights is None else np.asarray(weights, float).reshape(len(x), -1)
    edges = (np.arange(rows + 1) * pixel_size_nm, np.arange(cols + 1) * pixel_size_nm)

    def hist(sel):
        return np.stack([np.histogram2d(y[sel], x[sel], bins=edges, weights=w[sel, c])[0]
                         for c in range(w.shape[1])]).astype(np.float32)

    if blur == "histogram" or len(x) == 0:
        return hist(np.ones(len(x), bool))
    sig = _blur_sigmas(table, pixel_size_nm, sigma_nm)
    levels = np.unique(np.quantile(sig, np.linspace(0, 1, n_sigma_levels + 1)))
    which = np.clip(np.searchsorted(levels, sig, side="right") - 1, 0, max(len(levels) - 2, 0))
    image = np.zeros((w.shape[1], rows, cols), np.float32)
    for i in np.unique(which):
        sel = which == i
        s = float(np.median(sig[sel])) / pixel_size_nm
        h = hist(sel)
        image += ndimage.gaussian_filter(h, (0, s, s), mode="constant") if s > 0.05 else h
    return image


def render(
    table: dict[str, np.ndarray],
    pixel_size_nm: float = 10.0,
    shape_nm: Optional[tuple[float, float]] = None,
    blur: str = "gaussian",
    sigma_nm: Optional[float] = None,
    n_sigma_levels: int = 8,
    z_range_nm: Optional[tuple[float, float]] = None,
) -> np.ndarray:
    """Render a (rows, cols) float32 image of localization density.

    ``histogram``: counts per render pixel. ``gaussian``: each localization is a
    Gaussian of its own lateral uncertainty (``sigma_x``/``sigma_y``) or of
    ``sigma_nm``; localizations are grouped into ``n_sigma_levels`` quantiles of σ,
    each group histogrammed and blurred with its σ (scipy.ndimage), which is fast
    for millions of localizations. The image's pixel (i, j) covers
    y in [i·p, (i+1)·p), x in [j·p, (j+1)·p) nm (DESIGN.md's convention).
    ``z_range_nm=(lo, hi)``: only the localizations with lo <= z <= hi (a z slab);
    the image keeps the size of the whole table's.
    """
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    rows, cols = _grid(x, y, pixel_size_nm, shape_nm)
    return _splat(select_z(table, z_range_nm), pixel_size_nm, rows, cols, blur, sigma_nm, n_sigma_levels)[0]


def render_z_color(
    table: dict[str, np.ndarray],
    pixel_size_nm: float = 10.0,
    shape_nm: Optional[tuple[float, float]] = None,
    blur: str = "gaussian",
    sigma_nm: Optional[float] = None,
    n_sigma_levels: int = 8,
    z_range_nm: Optional[tuple[float, float]] = None,
    z_limits_nm: Optional[tuple[float, float]] = None,
    colormap: str = DEFAULT_Z_COLORMAP,
    saturation_percentile: float = 99.5,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Render coloured by z: a (rows, cols, 3) float32 RGB image in [0, 1] and the z
    limits (nm) of its colour scale.

    Each localization's colour is ``colormap`` at its z over ``z_limits_nm`` (default:
    ``z_range_nm``, else the data's z range); a pixel's hue is the density-weighted
    mean colour of the localizations that cover it, its brightness the density of
    :func:`render` (same blur), scaled so that the ``saturation_percentile`` of the
    non-empty pixels is full brightness. ``z_range_nm`` keeps a z slab as in
    :func:`render`.
    """
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    rows, cols = _grid(x, y, pixel_size_nm, shape_nm)
    limits = z_limits(table, z_range_nm if z_limits_nm is None else z_limits_nm)
    part = select_z(table, z_range_nm)
    n = len(part["x"])
    colors = z_colors(np.asarray(part.get("z", np.zeros(n)), float), limits, colormap)
    channels = _splat(part, pixel_size_nm, rows, cols, blur, sigma_nm, n_sigma_levels,
                      np.concatenate([np.ones((n, 1)), colors], 1))
    density, weighted = channels[0], channels[1:]
    filled = density > 1e-6 * max(float(density.max()), 1e-30)
    rgb = np.zeros((rows, cols, 3), np.float32)
    if filled.any():
        hue = np.clip(weighted[:, filled] / density[filled], 0.0, 1.0)  # (3, K) mean colour
        full = float(np.percentile(density[filled], saturation_percentile))
        brightness = np.clip(density[filled] / max(full, 1e-12), 0.0, 1.0)
        rgb[filled] = (hue * brightness).T
    return rgb, limits


def render_volume(
    table: dict[str, np.ndarray],
    pixel_size_nm: float = 10.0,
    z_bin_nm: float = 50.0,
    shape_nm: Optional[tuple[float, float]] = None,
    blur: str = "gaussian",
    sigma_nm: Optional[float] = None,
    n_sigma_levels: int = 8,
    z_range_nm: Optional[tuple[float, float]] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A z stack: (Z, rows, cols) float32, slice k the :func:`render` of the
    localizations with z in [edges[k], edges[k+1]) nm, and the z edges (Z + 1,) in nm.

    The edges are multiples of ``z_bin_nm`` covering ``z_range_nm`` (default: the
    data's z range); slices are blurred laterally only.
    """
    if z_bin_nm <= 0:
        raise ValueError(f"--volume-z-bin: expected a positive number of nm, got {z_bin_nm}")
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    rows, cols = _grid(x, y, pixel_size_nm, shape_nm)
    part = select_z(table, z_range_nm)
    z = np.asarray(part.get("z", np.zeros(len(part["x"]))), float)
    if z_range_nm is not None:
        lo, hi = float(z_range_nm[0]), float(z_range_nm[1])
    else:
        lo, hi = (float(np.nanmin(z)), float(np.nanmax(z))) if np.isfinite(z).any() else (0.0, 0.0)
    lo, hi = np.floor(lo / z_bin_nm) * z_bin_nm, np.floor(hi / z_bin_nm) * z_bin_nm + z_bin_nm
    edges = np.arange(lo, hi + 0.5 * z_bin_nm, z_bin_nm)
    if (len(edges) - 1) * rows * cols > 2e9:
        raise ValueError(f"a volume of {len(edges) - 1}x{rows}x{cols} voxels is too large; "
                         "use a larger --volume-z-bin or --pixel-size-nm, or a --z-range")
    which = np.searchsorted(edges, z, side="right") - 1
    volume = np.zeros((len(edges) - 1, rows, cols), np.float32)
    for k in np.unique(which[(which >= 0) & (which < len(edges) - 1)]):
        volume[k] = _splat(_rows(part, which == k), pixel_size_nm, rows, cols, blur, sigma_nm, n_sigma_levels)[0]
    return volume, edges
