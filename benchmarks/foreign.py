"""Our models on the movies of an independent simulator, as a user without a camera option runs them.

    python benchmarks/foreign.py [--models default,fast] [--data ../shared/data/foreign] [--true-camera]
                                 [--device auto] [--precision auto]

Each folder of ``--data`` holds ``movie.tif``, ``emitters.csv`` (frame from 1, x, y, z in
nm, photons) and ``camera.json`` (the truth, with ``pixel_size_nm``). The movie is
localized with the camera estimated from the movie (what `napari-smlm localize` does
without a camera option; ``--true-camera`` gives it the truth instead) at each model's
own threshold, and scored with 250 nm lateral and 500 nm axial tolerance. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from napari_smlm.core.camera import Camera
from napari_smlm.core.evaluation import evaluate
from napari_smlm.core.inference import LocalizationModel
from napari_smlm.core.io import read_table
from napari_smlm.core.localize import localize

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "foreign"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="default,fast", help="comma-separated bundled names or checkpoints")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--true-camera", action="store_true", help="the camera.json's camera instead of the estimate")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (as localize --device)")
    ap.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16 (as localize --precision)")
    args = ap.parse_args()
    folders = sorted(p for p in Path(args.data).iterdir() if (p / "movie.tif").exists())
    if not folders:
        sys.exit(f"{args.data}: no folder with a movie.tif")
    models = {name: LocalizationModel.load(name) for name in args.models.split(",")}
    print(f"# Movies of an independent simulator ({args.data}), {time.strftime('%Y-%m-%d')}, camera "
          f"{'from camera.json' if args.true_camera else 'estimated from each movie'}, "
          f"device {args.device}, precision {args.precision}\n")
    print("| movie | model | threshold | precision | recall | Jaccard | RMSE lat nm |")
    print("|---|---|---|---|---|---|---|")
    for folder in folders:
        truth = json.loads((folder / "camera.json").read_text())
        c = truth["camera"]
        camera = Camera(baseline=c["baseline_adu"], e_per_adu=c["e_per_adu"], em_gain=c["em_gain"], qe=c["qe"],
                        read_noise_e=c["read_noise_e"], kind=c["kind"]) if args.true_camera else "estimate"
        gt = read_table(str(folder / "emitters.csv"))
        for name, lm in models.items():
            res = localize(str(folder / "movie.tif"), model=lm, camera=camera, pixel_size_nm=truth["pixel_size_nm"],
                           device=args.device, precision=args.precision)
            m = evaluate(res.table(), gt, 250.0, 500.0)[0]
            print(f"| {folder.name} | {name} | {res.threshold:g} | {m['precision']:.3f} | {m['recall']:.3f} | "
                  f"{m['jaccard']:.3f} | {m['rmse_lat']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
