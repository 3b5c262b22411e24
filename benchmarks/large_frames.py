"""Large camera frames (sCMOS-sized): whole-process time, peak memory and accuracy of
``napari-smlm localize`` beside Picasso LQ on the same movie.

    python benchmarks/large_frames.py [--size 1024] [--frames 100] [--models default,fast]

One movie of ``--size``² px of 100 nm (benchmarks_common.test_movie: EMCCD, 0.5
molecules/µm², 1,000-5,000 photons, background 50), written as a TIFF; each method runs
in a fresh process as in benchmarks/run.py's speed rows (ours with the camera given;
Picasso LQ at box 5, minimum net gradient 750: the setting run.py's accuracy rows choose
at 0.5 /µm²). Prints a Markdown table: wall time, its ratio to Picasso's, time per
256×256 of area, peak RSS, and precision / recall / Jaccard / RMSE (250 nm).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import test_movie  # noqa: E402
from run import OURS_SCRIPT, PICASSO_CAMERA, PICASSO_SCRIPT, PX, have_picasso  # noqa: E402

from napari_smlm.core.evaluation import evaluate  # noqa: E402
from napari_smlm.core.io import read_table  # noqa: E402


def picasso_locs(path: Path) -> dict:
    import h5py

    locs = h5py.File(path, "r")["locs"][...]
    # Picasso's pixel centres are at integers; our nm are from the frame's edge
    return {"frame": locs["frame"].astype(np.int64), "x": (locs["x"] + 0.5) * PX, "y": (locs["y"] + 0.5) * PX,
            "z": np.zeros(len(locs)), "photons": locs["photons"].astype(float), "prob": np.ones(len(locs))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--models", default="default,fast")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        movie, gt, _ = test_movie(0.5, args.frames, seed=9, size=args.size)
        path = Path(tmp) / "movie.tif"
        tifffile.imwrite(path, movie)
        del movie
        methods = [(f"napari-smlm {m}", m) for m in args.models.split(",")]
        if have_picasso():
            methods.append(("Picasso LQ", None))
        rows = []
        for label, model in methods:
            out = Path(tmp) / ("o.csv" if model else "p.h5")
            if model:
                cmd = [sys.executable, "-c", OURS_SCRIPT, "localize", str(path), "--model", model, "--out", str(out),
                       "--baseline", "100", "--e-per-adu", "45", "--em-gain", "100", "--qe", "0.9"]
            else:
                cmd = [sys.executable, "-c", PICASSO_SCRIPT.format(camera=PICASSO_CAMERA, box=5, ng=750.0), str(path), str(out)]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            wall = time.time() - t0
            peak = int(proc.stdout.split("PEAK_RSS_KIB")[1].split()[0]) / 1024
            pred = read_table(out) if model else picasso_locs(out)
            m, _ = evaluate(pred, gt, 250.0)
            rows.append((label, wall, peak, m))
            print(f"{label}: {wall:.1f} s, {peak:.0f} MB, Jaccard {m['jaccard']:.3f}", flush=True)
    picasso = next((wall for label, wall, _, _ in rows if label.startswith("Picasso")), None)
    areas = args.frames * (args.size / 256) ** 2
    print(f"\n# {args.frames} frames of {args.size}x{args.size}, 0.5 molecules/µm², {time.strftime('%Y-%m-%d')}\n")
    print("| method | wall s | / Picasso | ms per 256×256 of area | peak RSS MB | precision | recall | Jaccard | RMSE nm |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, wall, peak, m in rows:
        ratio = f"{wall / picasso:.2f}" if picasso else "–"
        print(f"| {label} | {wall:.1f} | {ratio} | {1000 * wall / areas:.1f} | {peak:.0f} | {m['precision']:.3f} | "
              f"{m['recall']:.3f} | {m['jaccard']:.3f} | {m['rmse_lat']:.1f} |")


if __name__ == "__main__":
    main()
