"""Where a model's false positives come from, on benchmarks/run.py's movies.

    python benchmarks/false_positives.py [--models default,fast] [--densities 0.1,0.5,2] [--frames 400] [--low-snr]

Every prediction left unmatched at 250 nm (the run.py scoring) is put in the first
class it fits:
- double: within 500 nm of a true molecule of its frame that another prediction matched
  (one molecule detected twice, e.g. across neighbouring pixels);
- neighbour frame: within 250 nm of a true molecule in the frame before or after but
  of none in its own (the 3-frame window carrying a molecule into a frame where it is off);
- near a true molecule: within 500 nm of an unmatched or matched true molecule of its
  frame otherwise (a poor position rather than an invented molecule);
- noise: none of these (nothing within 500 nm in its frame or its neighbours).
Also the probability of each class (median), and the true photons of the molecules
the doubles duplicate; then a second table: the recall by the true molecules' photons in
their frame (where the misses are). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import RUN_SEEDS, test_movie  # noqa: E402

from napari_smlm.core.evaluation import evaluate  # noqa: E402
from napari_smlm.core.inference import LocalizationModel  # noqa: E402
from napari_smlm.core.localize import localize  # noqa: E402


def classify(pred: dict, gt: dict, m) -> dict:
    fp = np.ones(len(pred["x"]), bool)
    fp[m.pred_index] = False
    matched_gt = np.zeros(len(gt["x"]), bool)
    matched_gt[m.gt_index] = True
    by_frame = {}
    for f in np.unique(gt["frame"]):
        sel = np.nonzero(gt["frame"] == f)[0]
        by_frame[int(f)] = (cKDTree(np.column_stack([gt["x"][sel], gt["y"][sel]])), sel)
    classes = {"double": [], "neighbour frame": [], "near a true molecule": [], "noise": []}
    dup_photons = []
    for i in np.nonzero(fp)[0]:
        f, xy = int(pred["frame"][i]), (pred["x"][i], pred["y"][i])
        own = by_frame.get(f)
        near = own[1][own[0].query_ball_point(xy, 500.0)] if own else np.zeros(0, int)
        if near.size and matched_gt[near].any():
            classes["double"].append(i)
            dup_photons.extend(gt["photons"][near[matched_gt[near]]])
            continue
        close = own[1][own[0].query_ball_point(xy, 250.0)] if own else np.zeros(0, int)
        if close.size == 0 and any(
            (g := by_frame.get(f + d)) is not None and g[0].query_ball_point(xy, 250.0) for d in (-1, 1)
        ):
            classes["neighbour frame"].append(i)
        elif near.size:
            classes["near a true molecule"].append(i)
        else:
            classes["noise"].append(i)
    return {"classes": classes, "dup_photons": np.asarray(dup_photons)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="default")
    ap.add_argument("--densities", default="0.1,0.5,2")
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--low-snr", action="store_true",
                    help="also run.py's low-SNR set (0.1 /µm², 300-1,000 photons, background 100)")
    args = ap.parse_args()
    sets = [(f"{d:g}", d, RUN_SEEDS.get(d, 300), (1000, 5000), 50.0) for d in (float(v) for v in args.densities.split(","))]
    if args.low_snr:
        sets.append(("0.1 low SNR", 0.1, 305, (300, 1000), 100.0))  # run.py's seed for it
    print(f"# false positives by cause, {time.strftime('%Y-%m-%d')}, {args.frames} frames per set "
          "(64x64, 1,000-5,000 photons, background 50; low SNR: 300-1,000 photons, background 100)\n")
    print("| model | density /µm² | threshold | precision | recall | false positives | double | neighbour frame | "
          "near a true molecule | noise | median prob (double / neighbour / near / noise) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    missed = []
    for name in args.models.split(","):
        lm = LocalizationModel.load(name)
        for label, d, seed, photons, bg in sets:
            movie, gt, cam = test_movie(d, args.frames, seed=seed, photons=photons, background=bg)
            res = localize(movie, model=lm, camera=cam, pixel_size_nm=100.0)
            pred = res.table()
            metrics, m = evaluate(pred, gt, 250.0)
            c = classify(pred, gt, m)
            n_fp = sum(len(v) for v in c["classes"].values())
            share = " | ".join(f"{len(v)} ({100 * len(v) / max(n_fp, 1):.0f} %)" for v in c["classes"].values())
            probs = " / ".join(f"{np.median(pred['prob'][v]):.2f}" if v else "–" for v in c["classes"].values())
            print(f"| {name} | {label} | {res.threshold:g} | {metrics['precision']:.3f} | {metrics['recall']:.3f} | "
                  f"{n_fp} | {share} | {probs} |", flush=True)
            missed.append((name, label, missed_by_photons(gt, m)))
    # The other side: which true molecules are missed, by their photons in that frame
    # (partial-frame blinks carry a fraction of a molecule's photons).
    print("\n| model | density /µm² | " + " | ".join((f"{lo:g}–{hi:g}" if hi < 1e6 else f"≥ {lo:g}") + " photons: share of truth / recall" for lo, hi in PHOTON_BINS)
          + " |\n|---|---|" + "---|" * len(PHOTON_BINS))
    for name, label, rows in missed:
        print(f"| {name} | {label} | " + " | ".join(f"{share:.3f} / {recall:.3f}" for share, recall in rows) + " |")


PHOTON_BINS = ((0, 100), (100, 300), (300, 500), (500, 1000), (1000, 2000), (2000, 1e6))


def missed_by_photons(gt: dict, m) -> list[tuple[float, float]]:
    """(share of the ground truth, recall) per bin of true photons."""
    found = np.zeros(len(gt["x"]), bool)
    found[m.gt_index] = True
    photons = np.asarray(gt["photons"])
    rows = []
    for lo, hi in PHOTON_BINS:
        sel = (photons >= lo) & (photons < hi)
        rows.append((float(sel.mean()), float(found[sel].mean()) if sel.any() else float("nan")))
    return rows


if __name__ == "__main__":
    main()
