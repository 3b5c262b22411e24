"""Matching localizations to ground truth and the SMLM detection/precision metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["match_frame", "match", "MatchResult", "metrics_from_match"]


@dataclass
class MatchResult:
    """Indices into the prediction and ground-truth tables of matched pairs."""

    pred_index: np.ndarray
    gt_index: np.ndarray
    n_pred: int
    n_gt: int


DENSE_PAIRS = 250_000  # up to this many (prediction, truth) pairs a frame is matched as one problem


def match_frame(pred_xyz: np.ndarray, gt_xyz: np.ndarray, tolerance_nm: float, tolerance_z_nm: float = np.inf):
    """Optimal one-to-one matching within the tolerances (Hungarian algorithm): the most
    pairs, and of those the smallest total distance.

    ``pred_xyz`` (N, 3) and ``gt_xyz`` (M, 3) in nm. Returns index arrays (pred, gt).
    A large frame (more than ``DENSE_PAIRS`` pairs: thousands of molecules, as in a
    2048×2048 field) is split into the groups that pairs within the tolerance connect
    and each group matched on its own — the same optimum, since no allowed pair joins two
    groups; one N×M problem there held gigabytes and ran for minutes.
    """
    if len(pred_xyz) == 0 or len(gt_xyz) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    if len(pred_xyz) * len(gt_xyz) <= DENSE_PAIRS:
        return _match_dense(pred_xyz, gt_xyz, tolerance_nm, tolerance_z_nm)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(pred_xyz)
    # candidates by lateral distance (a hair wider: the exact test is _match_dense's own)
    near = cKDTree(pred_xyz[:, :2]).sparse_distance_matrix(cKDTree(gt_xyz[:, :2]), tolerance_nm * (1 + 1e-9) + 1e-9,
                                                            output_type="ndarray")
    i, j = near["i"].astype(np.int64), near["j"].astype(np.int64)
    if not len(i):
        return np.zeros(0, int), np.zeros(0, int)
    graph = coo_matrix((np.ones(len(i)), (i, n + j)), shape=(n + len(gt_xyz),) * 2)
    _, label = connected_components(graph, directed=False)
    group = label[i]
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    rows, cols = [], []
    for edges in np.split(order, bounds):
        p, g = np.unique(i[edges]), np.unique(j[edges])
        r, c = _match_dense(pred_xyz[p], gt_xyz[g], tolerance_nm, tolerance_z_nm)
        rows.append(p[r])
        cols.append(g[c])
    return np.concatenate(rows), np.concatenate(cols)


def _match_dense(pred_xyz: np.ndarray, gt_xyz: np.ndarray, tolerance_nm: float, tolerance_z_nm: float):
    lateral = np.hypot(pred_xyz[:, None, 0] - gt_xyz[None, :, 0], pred_xyz[:, None, 1] - gt_xyz[None, :, 1])
    axial = np.abs(pred_xyz[:, None, 2] - gt_xyz[None, :, 2])
    allowed = (lateral <= tolerance_nm) & (axial <= tolerance_z_nm)
    if not allowed.any():
        return np.zeros(0, int), np.zeros(0, int)
    # Pairs outside the tolerance get a cost no allowed assignment can beat.
    big = 1e9
    cost = np.where(allowed, np.sqrt(lateral**2 + axial**2), big)
    # imported here: scipy.optimize costs ~0.5 s to import, and localize (which imports the
    # trainer's module for checkpoints) never matches
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


def match(pred: dict, gt: dict, tolerance_nm: float = 250.0, tolerance_z_nm: float = np.inf) -> MatchResult:
    """Per-frame optimal matching of two localization tables (dicts of arrays with
    ``frame, x, y, z`` in nm)."""
    pf, gf = np.asarray(pred["frame"]), np.asarray(gt["frame"])
    p_order, g_order = np.argsort(pf, kind="stable"), np.argsort(gf, kind="stable")
    frames = np.union1d(np.unique(pf), np.unique(gf))
    p_lo, p_hi = np.searchsorted(pf[p_order], frames, "left"), np.searchsorted(pf[p_order], frames, "right")
    g_lo, g_hi = np.searchsorted(gf[g_order], frames, "left"), np.searchsorted(gf[g_order], frames, "right")
    pxyz = np.stack([np.asarray(pred[k], float) for k in ("x", "y", "z")], 1) if len(pf) else np.zeros((0, 3))
    gxyz = np.stack([np.asarray(gt[k], float) for k in ("x", "y", "z")], 1) if len(gf) else np.zeros((0, 3))
    pi, gi = [], []
    for a, b, c, d in zip(p_lo, p_hi, g_lo, g_hi):
        if a == b or c == d:
            continue
        p_idx, g_idx = p_order[a:b], g_order[c:d]
        r, k = match_frame(pxyz[p_idx], gxyz[g_idx], tolerance_nm, tolerance_z_nm)
        pi.append(p_idx[r])
        gi.append(g_idx[k])
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, int)  # noqa: E731
    return MatchResult(cat(pi), cat(gi), len(pf), len(gf))


def metrics_from_match(pred: dict, gt: dict, m: MatchResult) -> dict[str, float]:
    """Precision, recall, F1, Jaccard and RMSE (lateral, axial, volumetric) in nm."""
    tp = len(m.pred_index)
    fp, fn = m.n_pred - tp, m.n_gt - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out = {
        "tp": float(tp), "fp": float(fp), "fn": float(fn),
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "jaccard": tp / (tp + fp + fn) if tp + fp + fn else 0.0,
    }
    if tp:
        d = {k: np.asarray(pred[k], float)[m.pred_index] - np.asarray(gt[k], float)[m.gt_index] for k in ("x", "y", "z")}
        lat2 = d["x"] ** 2 + d["y"] ** 2
        out.update(
            rmse_lat=float(np.sqrt(lat2.mean())), rmse_ax=float(np.sqrt((d["z"] ** 2).mean())),
            rmse_vol=float(np.sqrt((lat2 + d["z"] ** 2).mean())),
        )
    else:
        out.update(rmse_lat=float("nan"), rmse_ax=float("nan"), rmse_vol=float("nan"))
    return out
