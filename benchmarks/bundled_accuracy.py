"""Accuracy of a model on the issue-3 benchmark movies, against the Cramér-Rao bound.

    python benchmarks/bundled_accuracy.py [--model default|CKPT] [--frames 1000] [--json OUT]

Movies (fixed seeds, simulated here, not stored): 64x64 pixels of 100 nm, EMCCD
(baseline 100 ADU, 45 e-/ADU, EM gain 100, QE 0.9, read noise 74.4 e-), Gaussian
PSF sigma = 130 nm, 1,000-5,000 photons, background 50 photons/pixel, blinking
across frames (mean on-time 1.5 frames), scored over the whole field with 250 nm
tolerance (border molecules and partial-frame blinks count).
RMSE/CRLB: lateral RMSE of the matched molecules with >= 1,000 photons in their
frame divided by the RMS of their lateral bounds (Mortensen 2010 with the EMCCD
excess-noise factor, per-frame photons).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from napari_smlm.core.evaluation import evaluate
from napari_smlm.core.evaluation.crlb import crlb_lateral_nm
from napari_smlm.core.inference import LocalizationModel
from napari_smlm.core.localize import localize
from benchmarks_common import test_movie  # same folder

TARGETS = {0.1: 0.85, 0.5: 0.80, 2.0: 0.60}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--frames", type=int, default=1000, help="frames per movie at 0.1/um^2 (fewer at higher density)")
    ap.add_argument("--densities", default="0.1,0.5,1,2,4")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    lm = LocalizationModel.load(args.model)
    print(f"# accuracy of {lm.source} (epoch {lm.info.get('epoch')}, step {lm.info.get('step')}) — {time.strftime('%Y-%m-%d')}\n")
    print("| density /µm² | frames | GT | precision | recall | Jaccard (target) | RMSE lat nm | RMSE ≥1000 ph | RMS CRLB ≥1000 ph | RMSE/CRLB | efficiency lat % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for i, d in enumerate(float(v) for v in args.densities.split(",")):
        frames = max(100, int(args.frames * min(1.0, 0.1 / d * 4)))
        movie, gt, cam = test_movie(d, frames, seed=100 + i)
        res = localize(movie, model=lm, camera=cam, pixel_size_nm=100.0)
        pred = res.table()
        m, match = evaluate(pred, gt, 250.0, np.inf)
        # The bound is per frame; partial-frame blinks with few photons have huge bounds
        # (a 3-frame network beats them with context), so the ratio is taken over the
        # matched molecules with >= 1,000 photons in the frame (fully-on frames).
        ph = gt["photons"][match.gt_index]
        full = ph >= 1000.0
        bound = crlb_lateral_nm(ph[full], 50.0, 130.0, 100.0, excess_noise=2.0)
        rms_bound = float(np.sqrt(np.mean(2 * bound**2))) if full.any() else float("nan")  # lateral: x and y
        dx = pred["x"][match.pred_index][full] - gt["x"][match.gt_index][full]
        dy = pred["y"][match.pred_index][full] - gt["y"][match.gt_index][full]
        rmse_full = float(np.sqrt(np.mean(dx**2 + dy**2))) if full.any() else float("nan")
        m.update(density=d, frames=frames, rms_crlb_lat=rms_bound, rmse_lat_full=rmse_full, rmse_over_crlb=rmse_full / rms_bound)
        rows.append(m)
        target = f" ({TARGETS[d]:.2f})" if d in TARGETS else ""
        print(f"| {d:g} | {frames} | {int(m['n_gt'])} | {m['precision']:.3f} | {m['recall']:.3f} | {m['jaccard']:.3f}{target} | "
              f"{m['rmse_lat']:.1f} | {rmse_full:.1f} | {rms_bound:.1f} | {m['rmse_over_crlb']:.2f} | {m['efficiency_lat']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": lm.source, "info": lm.info, "rows": rows}, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
