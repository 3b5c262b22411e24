"""Merging: one molecule that stays on over several frames becomes one localization.

Localizations in frames at most ``max_gap + 1`` apart are linked when they lie within
``radius_sigma`` times their combined lateral uncertainty (bounded by ``max_radius_nm``),
or within ``radius_nm`` when the table has no uncertainties (ThunderSTORM's merging,
Picasso's link). Linked groups are joined (union-find over the links): photons summed,
position the inverse-variance weighted mean, its uncertainty 1/sqrt(Σ 1/σ²),
``frame`` the first frame, ``n_frames`` how many localizations were merged.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["merge_localizations"]


def merge_localizations(table: dict, max_gap: int = 1, radius_sigma: float = 3.0, radius_nm: Optional[float] = None,
                        max_radius_nm: float = 200.0) -> dict:
    """The merged table (every column kept: summed for photons, weighted means for
    positions, the first row's value otherwise) with ``n_frames`` added."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if max_gap < 0:
        raise ValueError(f"merge: max_gap must be 0 or more frames, got {max_gap}")
    frame = np.asarray(table["frame"]).astype(int)
    n = len(frame)
    if n == 0:
        return {**{k: np.asarray(v) for k, v in table.items()}, "n_frames": np.zeros(0, int)}
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    has_sigma = "sigma_x" in table and "sigma_y" in table and radius_nm is None
    if has_sigma:
        sig = np.sqrt(0.5 * (np.asarray(table["sigma_x"], float) ** 2 + np.asarray(table["sigma_y"], float) ** 2))
        sig = np.where(np.isfinite(sig) & (sig > 0), sig, np.nanmedian(sig) if np.isfinite(sig).any() else 20.0)
        search = min(max_radius_nm, radius_sigma * float(np.sqrt(2) * sig.max()))
    else:
        radius = 50.0 if radius_nm is None else float(radius_nm)
        search = radius
    order = np.argsort(frame, kind="stable")
    rows, cols = [], []
    uniq = np.unique(frame)
    starts = np.searchsorted(frame[order], uniq)
    ends = np.searchsorted(frame[order], uniq, side="right")
    trees = {f: (order[a:b], cKDTree(np.stack([x[order[a:b]], y[order[a:b]]], 1))) for f, a, b in zip(uniq, starts, ends)}
    for f in uniq:
        idx_a, tree_a = trees[f]
        for g in range(f + 1, f + max_gap + 2):
            if g not in trees:
                continue
            idx_b, tree_b = trees[g]
            for i, js in enumerate(tree_a.query_ball_tree(tree_b, search)):
                if not js:
                    continue
                a = idx_a[i]
                b = idx_b[np.asarray(js)]
                d = np.hypot(x[b] - x[a], y[b] - y[a])
                if has_sigma:
                    ok = d <= np.minimum(radius_sigma * np.sqrt(sig[a] ** 2 + sig[b] ** 2), max_radius_nm)
                else:
                    ok = d <= search
                rows.extend([a] * int(ok.sum()))
                cols.extend(b[ok].tolist())
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    n_groups, label = connected_components(graph, directed=False)
    # Inverse-variance weights (equal weights without uncertainties).
    w = 1.0 / sig ** 2 if has_sigma else np.ones(n)
    wsum = np.bincount(label, w, n_groups)

    def wmean(v):
        return np.bincount(label, w * np.asarray(v, float), n_groups) / wsum

    # the row of each group with the smallest frame (ties: the first in the table)
    rank = _rank(frame)
    best = np.full(n_groups, np.iinfo(np.int64).max)
    np.minimum.at(best, label, rank)
    first_row = np.argsort(rank)[best]
    out = {}
    for key, v in table.items():
        v = np.asarray(v)
        if key in ("x", "y", "z") and np.issubdtype(v.dtype, np.number):
            out[key] = wmean(v)
        elif key == "photons":
            out[key] = np.bincount(label, v.astype(float), n_groups)
        elif key == "sigma_photons":
            out[key] = np.sqrt(np.bincount(label, v.astype(float) ** 2, n_groups))
        elif key in ("sigma_x", "sigma_y", "sigma_z") and np.issubdtype(v.dtype, np.number):
            out[key] = 1.0 / np.sqrt(np.bincount(label, 1.0 / np.maximum(v.astype(float), 1e-9) ** 2, n_groups))
        elif key == "prob" and np.issubdtype(v.dtype, np.number):
            mx = np.zeros(n_groups)
            np.maximum.at(mx, label, v.astype(float))
            out[key] = mx
        else:
            out[key] = v[first_row]
    out["n_frames"] = np.bincount(label, minlength=n_groups)
    keep = np.argsort(out["frame"], kind="stable")
    return {k: np.asarray(v)[keep] for k, v in out.items()}


def _rank(frame: np.ndarray) -> np.ndarray:
    """Each row's position when the table is sorted by frame (stable)."""
    order = np.argsort(frame, kind="stable")
    rank = np.empty(len(frame), int)
    rank[order] = np.arange(len(frame))
    return rank
