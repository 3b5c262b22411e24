"""Full evaluation of localizations against ground truth (SMLM challenge 2016 style)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..utils import atomic_write
from .matching import MatchResult, match, metrics_from_match

__all__ = ["evaluate", "efficiency", "precision_recall_curve", "save_plots", "EvaluationError", "check_comparable",
           "errors_by_z", "plot_errors_by_z", "z_varies", "scale_hint", "scale_hint_message", "DEFAULT_TOLERANCE_Z_NM"]

#: Axial matching tolerance where the ground truth is 3D (SMLM Challenge 2016).
DEFAULT_TOLERANCE_Z_NM = 500.0


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


def _frames_part(table: dict, frames: np.ndarray) -> dict:
    keep = np.isin(np.asarray(table["frame"]), frames)
    return {k: np.asarray(table[k])[keep] for k in ("frame", "x", "y", "z") if k in table}


def scale_hint(pred: dict, gt: dict, tolerance_nm: float = 250.0, tolerance_z_nm: float = np.inf,
               frames: int = 50) -> Optional[dict]:
    """Where the localizations cover a field of another size than the ground truth's
    (their x and y a common factor 1.02–5 apart, measured by the upper extents, both
    tables counting from the field's corner) and scaling them by that factor matches
    clearly better, the factor: ``{"factor", "jaccard", "jaccard_as_is", "frames"}``
    (Jaccard indices on the first ``frames`` frames with ground truth); else None.

    That is what a movie localized with the wrong pixel size looks like (a TIFF that
    does not state its pixel size, the default 100 nm used for a 160 nm camera): every
    position in nm is off by the ratio of the two, and few match. The factor is refined
    over ±6 % around the extents' ratio (an error of 2 % is 200 nm at 10 µm from the
    corner), so a suggestion is only made where the rescaled tables really agree."""
    if min(len(pred["x"]), len(gt["x"])) < 50:
        return None
    ratio = []
    for k in ("x", "y"):
        hp, hg = np.percentile(np.asarray(pred[k], float), 99), np.percentile(np.asarray(gt[k], float), 99)
        if hp <= 0 or hg <= 0:
            return None
        ratio.append(hg / hp)
    r = float(np.sqrt(ratio[0] * ratio[1]))
    if abs(ratio[0] / ratio[1] - 1) > 0.1 or not 1.02 < max(r, 1 / r) <= 5:
        return None
    chosen = np.unique(np.asarray(gt["frame"]))[:frames]
    p, g = _with_z(_frames_part(pred, chosen)), _with_z(_frames_part(gt, chosen))
    jaccard = lambda t: metrics_from_match(t, g, match(t, g, tolerance_nm, tolerance_z_nm))["jaccard"]  # noqa: E731
    as_is = jaccard(p)
    best_j, best_f = max((jaccard({**p, "x": p["x"] * f, "y": p["y"] * f}), f)
                         for f in r * np.exp(np.linspace(-0.06, 0.06, 25)))
    if best_j < max(2 * as_is, as_is + 0.2):
        return None
    # the grid's step is 0.5 %; the pairs it matched give the factor itself (least
    # squares through the corner)
    scaled = {**p, "x": p["x"] * best_f, "y": p["y"] * best_f}
    m = match(scaled, g, tolerance_nm, tolerance_z_nm)
    a = np.concatenate([p["x"][m.pred_index], p["y"][m.pred_index]])
    b = np.concatenate([g["x"][m.gt_index], g["y"][m.gt_index]])
    fitted = float(np.dot(a, b) / np.dot(a, a))
    fitted_j = jaccard({**p, "x": p["x"] * fitted, "y": p["y"] * fitted})
    if fitted_j >= best_j:
        best_j, best_f = fitted_j, fitted
    return {"factor": float(best_f), "jaccard": float(best_j), "jaccard_as_is": float(as_is),
            "frames": int(len(chosen))}


def scale_hint_message(hint: dict, pixel_size_nm: Optional[float] = None, option: str = "the pixel size") -> str:
    """What :func:`scale_hint` found, in words; ``pixel_size_nm``: the pixel size the
    localizations were made with, where known; ``option``: how the user sets it."""
    f = hint["factor"]
    field = f"{f:.2f}× smaller than" if f > 1 else f"{1 / f:.2f}× larger than"
    fix = (f"{pixel_size_nm * f:.0f} nm ({f:.2f} × the {pixel_size_nm:g} nm used)" if pixel_size_nm
           else f"{f:.2f} × the pixel size they were made with")
    return (f"few localizations match, and they cover a field {field} the ground truth's: with their x and y "
            f"scaled by {f:.2f}, the Jaccard index on the first {hint['frames']} frames would be "
            f"{hint['jaccard']:.3f} ({hint['jaccard_as_is']:.3f} as they are). Were they made with the wrong pixel "
            f"size (a movie that does not state its own)? Then localize again with {option} {fix}")


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


def z_varies(table: dict, spread_nm: float = 1.0) -> bool:
    """True where the table's z spans more than ``spread_nm`` (3D data); a table
    without z, or with every z equal (2D data), is False."""
    z = np.asarray(table.get("z", ()), float)
    z = z[np.isfinite(z)]
    return bool(len(z) and np.ptp(z) > spread_nm)


def errors_by_z(pred: dict, gt: dict, m: MatchResult, bin_nm: float = 100.0) -> list[dict]:
    """Errors against the true z, in bins of ``bin_nm`` over the ground truth's z range
    (edges on multiples of ``bin_nm``). One dict per bin: ``z_lo``, ``z_hi``,
    ``z_center`` (nm), ``n_gt``, ``tp``, ``recall``, ``rmse_lat``, ``rmse_ax``,
    ``bias_z`` (nm, mean predicted − true z; NaN where nothing matched)."""
    if bin_nm <= 0:
        raise ValueError(f"bin_nm: expected a positive number, got {bin_nm}")
    gz = np.asarray(gt.get("z", np.zeros(m.n_gt)), float)
    if not len(gz) or not np.isfinite(gz).any():
        return []
    lo = np.floor(np.nanmin(gz) / bin_nm) * bin_nm
    hi = max(np.ceil(np.nanmax(gz) / bin_nm) * bin_nm, lo + bin_nm)
    edges = np.arange(lo, hi + 0.5 * bin_nm, bin_nm)
    gt_bin = np.clip(np.searchsorted(edges, gz, side="right") - 1, 0, len(edges) - 2)
    pi, gi = m.pred_index, m.gt_index
    d = {k: np.asarray(pred[k], float)[pi] - np.asarray(gt[k], float)[gi] for k in ("x", "y", "z")}
    tp_bin = gt_bin[gi]
    rows = []
    for b in range(len(edges) - 1):
        n_gt = int(np.sum(gt_bin == b))
        sel = tp_bin == b
        tp = int(sel.sum())
        rows.append({
            "z_lo": float(edges[b]), "z_hi": float(edges[b + 1]), "z_center": float(0.5 * (edges[b] + edges[b + 1])),
            "n_gt": n_gt, "tp": tp, "recall": tp / n_gt if n_gt else float("nan"),
            "rmse_lat": float(np.sqrt(np.mean(d["x"][sel] ** 2 + d["y"][sel] ** 2))) if tp else float("nan"),
            "rmse_ax": float(np.sqrt(np.mean(d["z"][sel] ** 2))) if tp else float("nan"),
            "bias_z": float(np.mean(d["z"][sel])) if tp else float("nan"),
        })
    return rows


def evaluate(pred: dict, gt: dict, tolerance_nm: float = 250.0, tolerance_z_nm: Optional[float] = None,
             check: bool = True, frame_check: bool = True, unit_check: bool = True,
             z_bin_nm: float = 100.0) -> tuple[dict, MatchResult]:
    """Match per frame (Hungarian, within the tolerances) and compute: precision,
    recall, F1, Jaccard, RMSE lateral/axial/volumetric (nm), efficiency lateral
    (α = 1 nm⁻¹), axial (α = 0.5 nm⁻¹) and 3D (their mean), photon error (relative
    median and RMSE, where ground truth has photons), bias in x/y/z (nm, mean of
    prediction − truth) and average precision over the probability threshold.

    3D or 2D is the ground truth's: where its z varies (``is_3d``), the axial
    tolerance defaults to 500 nm, ``efficiency`` is the 3D efficiency (mean of
    lateral and axial, SMLM Challenge 2016) and ``by_z`` holds the errors against the
    true z in ``z_bin_nm`` bins (:func:`errors_by_z`). For 2D ground truth (every z
    equal) the matching is lateral only unless ``tolerance_z_nm`` is given,
    ``efficiency`` is the lateral efficiency and ``by_z`` is empty.

    ``check``: refuse tables that cannot be compared (see :func:`check_comparable`), and
    where the Jaccard index is below 0.5, look for a pixel-size mistake (``scale_hint``:
    see :func:`scale_hint`; None otherwise).
    """
    is_3d = z_varies(gt)
    if tolerance_z_nm is None:
        tolerance_z_nm = DEFAULT_TOLERANCE_Z_NM if is_3d else np.inf
    if check:
        check_comparable(pred, gt, tolerance_nm, tolerance_z_nm, frame_check=frame_check, unit_check=unit_check)
    pred, gt = _with_z(pred), _with_z(gt)
    m = match(pred, gt, tolerance_nm, tolerance_z_nm)
    out = metrics_from_match(pred, gt, m)
    out["efficiency_lat"] = efficiency(out["jaccard"], out["rmse_lat"], 1.0)
    out["efficiency_ax"] = efficiency(out["jaccard"], out["rmse_ax"], 0.5)
    out["efficiency_3d"] = 0.5 * (out["efficiency_lat"] + out["efficiency_ax"])
    out["efficiency"] = out["efficiency_3d"] if is_3d else out["efficiency_lat"]
    pi, gi = m.pred_index, m.gt_index
    if len(pi):
        for k in ("x", "y", "z"):
            out[f"bias_{k}"] = float(np.mean(np.asarray(pred[k], float)[pi] - np.asarray(gt[k], float)[gi]))
        gp = np.asarray(gt.get("photons", np.full(m.n_gt, np.nan)), float)[gi]
        pp = np.asarray(pred.get("photons", np.full(m.n_pred, np.nan)), float)[pi]
        ok = np.isfinite(gp) & np.isfinite(pp) & (gp > 0)
        out["photon_rel_error_median"] = float(np.median((pp[ok] - gp[ok]) / gp[ok])) if ok.any() else float("nan")
        out["photon_rmse"] = float(np.sqrt(np.mean((pp[ok] - gp[ok]) ** 2))) if ok.any() else float("nan")
    else:
        out.update(bias_x=float("nan"), bias_y=float("nan"), bias_z=float("nan"), photon_rel_error_median=float("nan"),
                   photon_rmse=float("nan"))
    out["average_precision"] = precision_recall_curve(pred, m)["average_precision"]
    out["n_pred"], out["n_gt"] = float(m.n_pred), float(m.n_gt)
    out["is_3d"] = is_3d
    out["tolerance_nm"], out["tolerance_z_nm"] = float(tolerance_nm), float(tolerance_z_nm)
    out["by_z"] = errors_by_z(pred, gt, m, z_bin_nm) if is_3d else []
    # where few match, a localization table made with the wrong pixel size is the usual
    # cause: say by how much (see scale_hint); None where that is not what happened
    out["scale_hint"] = scale_hint(pred, gt, tolerance_nm, tolerance_z_nm) if check and out["jaccard"] < 0.5 else None
    return out, m


def _with_z(table: dict) -> dict:
    """The table with a z column (zeros where it has none: 2D)."""
    if "z" in table:
        return table
    return {**table, "z": np.zeros(len(table["x"]))}


def save_plots(pred: dict, gt: dict, m: MatchResult, directory: Union[str, Path], title: Optional[str] = None,
               z_bin_nm: float = 100.0) -> list[Path]:
    """PR curve and error histograms (dx, dy, dz, photons) as PNG files, and where the
    ground truth's z varies, errors against the true z (``errors_vs_z.png``: lateral and
    axial RMSE, axial bias and recall in ``z_bin_nm`` bins)."""
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
    if z_varies(gt):
        fig = plot_errors_by_z(errors_by_z(_with_z(pred), gt, m, z_bin_nm), title=title)
        files.append(directory / "errors_vs_z.png")
        atomic_write(files[-1], lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
        plt.close(fig)
    return files


def plot_errors_by_z(rows: list[dict], figure=None, title: Optional[str] = None):
    """Draw :func:`errors_by_z`'s rows: RMSE lateral and axial, axial bias (nm) and
    recall against the true z (nm). Into ``figure`` (a matplotlib Figure, cleared) or a
    new pyplot figure; returns the figure."""
    if figure is None:
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(12, 3.4))
    figure.clear()
    axes = figure.subplots(1, 3)
    z = np.array([r["z_center"] for r in rows])
    get = lambda key: np.array([r[key] for r in rows], float)  # noqa: E731
    axes[0].plot(z, get("rmse_lat"), "o-", label="lateral")
    axes[0].plot(z, get("rmse_ax"), "s-", label="axial")
    axes[0].set_ylabel("RMSE [nm]")
    axes[0].set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    axes[1].axhline(0.0, color="0.5", lw=0.8)
    axes[1].plot(z, get("bias_z"), "o-", color="C2")
    axes[1].set_ylabel("axial bias (pred − true) [nm]")
    axes[2].plot(z, get("recall"), "o-", color="C3")
    axes[2].set_ylim(0, 1.02)
    axes[2].set_ylabel("recall")
    for ax in axes:
        ax.set_xlabel("true z [nm]")
    if title:
        figure.suptitle(title)
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    return figure
