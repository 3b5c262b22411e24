"""Score every scale of a multi-scale checkpoint on its own (where does it go wrong?).

    python benchmarks/multiscale_scales.py RUN/last.pt [--density 0.5] [--frames 60]

Runs the model coarse to fine (as inference does) on a standard test movie and
post-processes each scale's map as if it were the output (fine-grid integration,
see napari_smlm.core.inference.postprocess), at thresholds 0.2 and 0.5: count,
Jaccard, precision, recall, lateral RMSE and mean x/y bias (nm). Prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import test_movie  # noqa: E402

from napari_smlm.core.evaluation import evaluate  # noqa: E402
from napari_smlm.core.inference import LocalizationModel  # noqa: E402
from napari_smlm.core.inference.postprocess import filter_table, maps_to_candidates  # noqa: E402
from napari_smlm.core.training.trainer import scale_input  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--density", type=float, default=0.5)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    lm = LocalizationModel.load(args.checkpoint)
    if not hasattr(lm.model, "forward_scales"):
        sys.exit(f"{args.checkpoint}: {lm.model.architecture} is not a multi-scale model")
    movie, gt, cam = test_movie(args.density, args.frames, seed=201)
    x = cam.to_photons(torch.from_numpy(movie.astype("float32")))
    c = lm.frame_window // 2
    idx = (torch.arange(len(x)).unsqueeze(1) + torch.arange(-c, c + 1)).clamp(0, len(x) - 1)
    with torch.no_grad():
        maps = lm.model.eval().forward_scales(scale_input(x[idx], lm.scaling))["scales"]
    print(f"{args.checkpoint}: {args.frames} frames at {args.density:g} /um^2, {len(gt['x'])} true molecules\n")
    print("| scale | threshold | found | Jaccard | precision | recall | RMSE lat nm | bias x nm | bias y nm |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s, m in maps.items():
        cand = maps_to_candidates(m, lm.model.output_channels, lm.scaling, lm.pixel_size_nm, min_prob=0.1, scale=s)
        for th in (0.2, 0.5):
            r, _ = evaluate(filter_table(cand, th), gt, 250.0)
            print(f"| {s} | {th:g} | {int(r['n_pred'])} | {r['jaccard']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                  f"{r['rmse_lat']:.1f} | {r['bias_x']:.1f} | {r['bias_y']:.1f} |")


if __name__ == "__main__":
    main()
