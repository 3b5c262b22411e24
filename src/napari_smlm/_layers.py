"""Conversions between localization tables and napari layer data (no napari import).

napari draws a pixel's centre at integer coordinates; our tables put pixel (i, j)
over [j·px, (j+1)·px) nm, centre (j + 0.5)·px. This module is the one boundary
where that half-pixel shift is applied (DESIGN.md).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["table_to_points", "points_to_table", "layer_table", "render_layer_kwargs", "color_kwargs", "z_varies",
           "POINT_COLUMNS"]

POINT_COLUMNS = ("frame", "x", "y", "z", "photons", "bg", "prob", "sigma_x", "sigma_y", "sigma_z", "sigma_photons")


def table_to_points(table: dict[str, np.ndarray], pixel_size_nm: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(N, 3) points (frame, row, col) in the movie's pixel-index coordinates and the
    features (every table column, nm / photons, frame 0-based)."""
    n = len(table["frame"])
    data = np.zeros((n, 3), float)
    data[:, 0] = np.asarray(table["frame"], float)
    data[:, 1] = np.asarray(table["y"], float) / pixel_size_nm - 0.5
    data[:, 2] = np.asarray(table["x"], float) / pixel_size_nm - 0.5
    features = {k: np.asarray(v) for k, v in table.items()}
    return data, features


def points_to_table(data: np.ndarray, features: Optional[dict], pixel_size_nm: float) -> dict[str, np.ndarray]:
    """Inverse of :func:`table_to_points`; positions come from the layer data (so
    points the user moved are written where they now are), everything else from
    the features where present."""
    data = np.asarray(data, float).reshape(-1, data.shape[-1] if len(data) else 3)
    n = len(data)
    if data.shape[1] == 2:  # a 2D points layer: one frame
        data = np.concatenate([np.zeros((n, 1)), data], 1)
    table = {k: np.asarray(features[k]) for k in (features or {}) if k in POINT_COLUMNS}
    table["frame"] = np.round(data[:, 0]).astype(np.int64)
    table["y"] = (data[:, 1] + 0.5) * pixel_size_nm
    table["x"] = (data[:, 2] + 0.5) * pixel_size_nm
    for k, default in (("z", 0.0), ("photons", np.nan), ("bg", np.nan), ("prob", 1.0)):
        table.setdefault(k, np.full(n, default))
    return table


def layer_table(layer, pixel_size_nm: float, shown_only: bool = True) -> dict[str, np.ndarray]:
    """The points of a Points layer — those it shows, unless ``shown_only`` is False — as a
    localization table (nm), where they now are; a 2D layer's frame comes from its
    ``frame`` feature where it has one (a single-frame movie's localizations)."""
    data = np.asarray(layer.data, float)
    features = {k: np.asarray(v) for k, v in layer.features.items()}
    if shown_only:
        keep = np.asarray(layer.shown, bool)
        data, features = data[keep], {k: v[keep] for k, v in features.items()}
    if data.ndim == 2 and data.shape[1] == 2 and "frame" in features:
        data = np.concatenate([np.asarray(features["frame"], float)[:, None], data], 1)
    return points_to_table(data, features, pixel_size_nm)


def z_varies(features: Optional[dict], min_span_nm: float = 1.0) -> bool:
    """True when the localizations' finite z spans more than ``min_span_nm`` (3D data)."""
    z = np.asarray((features or {}).get("z", []), float)
    z = z[np.isfinite(z)]
    return bool(len(z) and np.ptp(z) > min_span_nm)


def color_kwargs(features: dict, by: str) -> dict:
    """Face-colour settings of a Points layer coloured by the feature ``by``: z with a
    rainbow-like colour map (``turbo``), anything else with ``viridis``; the colour
    range is the feature's finite range. Set them in this order (napari keeps the
    old range when only the feature changes)."""
    values = np.asarray(features[by], float)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return {"face_colormap": "turbo" if by == "z" else "viridis", "face_color": by, "face_contrast_limits": (lo, hi)}


def render_layer_kwargs(render_pixel_nm: float, camera_pixel_nm: float, image_scale=(1.0, 1.0), image_translate=(0.0, 0.0)) -> dict:
    """scale/translate for a rendered image so it overlays the movie's pixel grid:
    render pixel (i, j) covers [i·r, (i+1)·r) nm, centre at camera pixel index
    (i + 0.5)·r/px - 0.5."""
    f = render_pixel_nm / camera_pixel_nm
    sy, sx = image_scale[-2:]
    ty, tx = image_translate[-2:]
    return {"scale": (f * sy, f * sx), "translate": (ty + (0.5 * f - 0.5) * sy, tx + (0.5 * f - 0.5) * sx)}
