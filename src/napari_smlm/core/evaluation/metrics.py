"""Full evaluation of localizations against ground truth (SMLM challenge 2016 style)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..utils import atomic_write
from .matching import MatchResult, match, metrics_from_match

__all__ = ["evaluate", "efficiency", "precision_recall_curve", "save_plots", "EvaluationError", "check_comparable"]


class EvaluationError(ValueError):
    """Two tables that cannot be compared as they are (units, frame numbering, NaN)."""


def _span(table: dict) -> float:
    """Lateral extent of a table in its own units (robust to a few outliers)."""
    xy = np.concatenate([np.asarray(table["x"], float), np.asarray(table["y"], float)])
    if len(xy) < 2:
        return 0.0
    lo, hi = np.percentile(xy, [1, 99])
    return float(hi - lo)


def _magnitude(table: dict) -> float:
    """Typical size of the coordinates (99th percentile of |x|, |y|)."""
    xy = np.abs(np.concatenate([np.asarray(table["x"], float), np.asarray(table["y"], float)]))
    return float(np.percentile(xy, 99)) if len(xy) else 0.0


def check_comparable(pred: dict, gt: dict, tolerance_nm: float = 250.0, tolerance_z_nm: float = np.inf,
                     names: tuple[str, str] = ("localizations", "ground truth"), frame_check: bool = True,
                     unit_check: bool = True) -> None:
    """Refuse comparisons whose score would be silently wrong: NaN or infinite
    coordinates, tables in different units (extents a factor > 5 apart: µm or pixels
    under an nm header), and frames numbered one apart (a ±1 shift of the ground
    truth matches clearly better: one table counts from 0, the other from 1)."""
    for table, name in zip((pred, gt), names):
        for key in ("frame", "x", "y", "z"):
            if key in table and len(table[key]) and not np.isfinite(np.asarray(table[key], float)).all():
                bad = ~np.isfinite(np.asarray(table[key], float))
                raise EvaluationError(f"{name}: {int(bad.sum())} row(s) have a NaN or infinite {key} "
                                      f"(first: row {int(np.argmax(bad)) + 1}); they cannot be matched")
    sp, sg = _span(pred), _span(gt)
    mp, mg = _magnitude(pred), _magnitude(gt)
    # Both the extents and the magnitudes must disagree (a few localizations in one
    # corner of the field have a small extent but not small coordinates).
    enough = min(len(pred["x"]), len(gt["x"])) >= 10
    if (unit_check and enough and min(sp, sg, mp, mg) > 0 and max(sp / sg, sg / sp) > 5
            and max(mp / mg, mg / mp) > 5):
        raise EvaluationError(
            f"{names[0]} span {sp:.4g} and {names[1]} span {sg:.4g} in x/y: a factor {max(sp / sg, sg / sp):.0f} apart, "
            f"so one table is in other units than its header says (µm or camera pixels under an nm header?); "
            f"both must be in nm (--no-unit-check to compare them anyway)"
        )
    if not frame_check or not len(pred["frame"]) or not len(gt["frame"]):
        return
    # On the first 200 frames with ground truth (a long movie would triple the matching time).
    frames = np.unique(np.asarray(gt["frame"]))[:200]
    lo, hi = frames.min(), frames.max()
    keep = lambda t: {k: np.asarray(t[k])[(np.asarray(t["frame"]) >= lo) & (np.asarray(t["frame"]) <= hi)]  # noqa: E731
                      for k in ("frame", "x", "y", "z") if k in t}
    pred_part, gt_part = keep(pred), keep(gt)
    pred_part.setdefault("z", np.zeros(len(pred_part["frame"])))
    gt_part.setdefault("z", np.zeros(len(gt_part["frame"])))
    scores = {}
    for shift in (0, 1, -1):
        shifted = {**gt_part, "frame": gt_part["frame"] + shift}
        m = match(pred_part, shifted, tolerance_nm, tolerance_z_nm)
        scores[shift] = metrics_from_match(pred_part, shifted, m)["jaccard"]
    best = max((1, -1), key=lambda k: scores[k])
    if scores[best] > scores[0] + 0.1 and scores[best] > 1.5 * scores[0]:
        raise EvaluationError(
            f"{names[0]} and {names[1]} look one frame apart: with the ground truth's frames shifted by {best:+d} "
            f"the Jaccard index is {scores[best]:.3f}, as numbered only {scores[0]:.3f}. One table counts frames from 0, "
            f"the other from 1; say how the ground truth counts (evaluate --gt-first-frame 0 or 1), "
            f"or --no-frame-check to score the tables as numbered"
        )


def efficiency(jaccard: float, rmse: float, alpha: float) -> float:
    """SMLM challenge 2016 efficiency in %: 100 - sqrt((100 - 100·Jaccard)² + α²·RMSE²)."""
    if not np.isfinite(rmse):
        return float("nan")
    return float(100.0 - np.sqrt((100.0 * (1.0 - jaccard)) ** 2 + (alpha * rmse) ** 2))


def precision_recall_curve(pred: dict, m: MatchResult) -> dict[str, np.ndarray]:
    """Precision and recall as the probability threshold sweeps down through the
    predictions (each counted TP or FP as in the full matching), and the average
    precision (area under the step-wise curve)."""
    prob = np.asarray(pred.get("prob", np.ones(m.n_pred)), float)
    order = np.argsort(-prob, kind="stable")
    tp_flag = np.zeros(m.n_pred, bool)
    tp_flag[m.pred_index] = True
    tp = np.cumsum(tp_flag[order])
    n = np.arange(1, m.n_pred + 1)
    precision = tp / n if m.n_pred else np.zeros(0)
    recall = tp / m.n_gt if m.n_gt else np.zeros_like(precision)
    # AP = Σ (R_i - R_{i-1}) · P_i over the thresholds
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision)) if m.n_pred else 0.0
    return {"threshold": prob[order], "precision": precision, "recall": recall, "average_precision": ap}


def evaluate(pred: dict, gt: dict, tolerance_nm: float = 250.0, tolerance_z_nm: float = 500.0,
             check: bool = True, frame_check: bool = True, unit_check: bool = True) -> tuple[dict, MatchResult]:
    """Match per frame (Hungarian, within the tolerances) and compute: precision,
    recall, F1, Jaccard, RMSE lateral/axial/volumetric (nm), efficiency lateral
    (α = 1 nm⁻¹), axial (α = 0.5 nm⁻¹) and their mean, photon error (relative
    median and RMSE, where ground truth has photons), bias in x/y (nm, mean of
    prediction - truth) and average precision over the probability threshold.

    ``check``: refuse tables that cannot be compared (see :func:`check_comparable`).
    """
    if check:
        check_comparable(pred, gt, tolerance_nm, tolerance_z_nm, frame_check=frame_check, unit_check=unit_check)
    m = match(pred, gt, tolerance_nm, tolerance_z_nm)
    out = metrics_from_match(pred, gt, m)
    out["efficiency_lat"] = efficiency(out["jaccard"], out["rmse_lat"], 1.0)
    out["efficiency_ax"] = efficiency(out["jaccard"], out["rmse_ax"], 0.5)
    out["efficiency"] = 0.5 * (out["efficiency_lat"] + out["efficiency_ax"])
    pi, gi = m.pred_index, m.gt_index
    if len(pi):
        out["bias_x"] = float(np.mean(np.asarray(pred["x"])[pi] - np.asarray(gt["x"])[gi]))
        out["bias_y"] = float(np.mean(np.asarray(pred["y"])[pi] - np.asarray(gt["y"])[gi]))
        gp, pp = np.asarray(gt.get("photons", np.full(m.n_gt, np.nan)), float)[gi], np.asarray(pred.get("photons", np.full(m.n_pred, np.nan)), float)[pi]
        ok = np.isfinite(gp) & np.isfinite(pp) & (gp > 0)
        out["photon_rel_error_median"] = float(np.median((pp[ok] - gp[ok]) / gp[ok])) if ok.any() else float("nan")
        out["photon_rmse"] = float(np.sqrt(np.mean((pp[ok] - gp[ok]) ** 2))) if ok.any() else float("nan")
    else:
        out.update(bias_x=float("nan"), bias_y=float("nan"), photon_rel_error_median=float("nan"), photon_rmse=float("nan"))
    out["average_precision"] = precision_recall_curve(pred, m)["average_precision"]
    out["n_pred"], out["n_gt"] = float(m.n_pred), float(m.n_gt)
    return out, m


def save_plots(pred: dict, gt: dict, m: MatchResult, directory: Union[str, Path], title: Optional[str] = None) -> list[Path]:
    """PR curve and error histograms (dx, dy, dz, photons) as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    curve = precision_recall_curve(pred, m)
    files = []
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(curve["recall"], curve["precision"])
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title + ': ' if title else ''}AP = {curve['average_precision']:.3f}")
    fig.tight_layout()
    files.append(directory / "pr_curve.png")
    atomic_write(files[-1], lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)

    pi, gi = m.pred_index, m.gt_index
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, key, unit in zip(axes, ("x", "y", "z", "photons"), ("nm", "nm", "nm", "photons")):
        if key in pred and key in gt and len(pi):
            d = np.asarray(pred[key], float)[pi] - np.asarray(gt[key], float)[gi]
            d = d[np.isfinite(d)]
            if len(d):
                ax.hist(d, bins=50)
                ax.set_title(f"{key}: mean {d.mean():.1f}, sd {d.std():.1f} {unit}")
        ax.set_xlabel(f"predicted - true {key} [{unit}]")
    fig.tight_layout()
    files.append(directory / "error_histograms.png")
    atomic_write(files[-1], lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return files
