"""What skipping empty regions buys: a cell that does not fill the field.

    python benchmarks/empty_regions.py [--frames 300] [--repeats 1] [--out FILE.md]

Issue 13 ("a cell rarely fills the field"). Movies of 256x256 px of 100 nm with the
molecules (1 per um^2, 1,000-5,000 photons, sigma 130 nm, blinking) inside a disc of
radius R px in the middle of the field -- a cell -- on a uniform background of 50
photons/px (EMCCD as benchmarks/run.py), and a movie with the molecules over the whole
field (0.5 per um^2, nothing to skip). Each is localized by the CLI with both bundled
models, once as it runs by default (the network only on the box of the bright molecules
when enough of them map one, see core.inference.runner.active_region) and once with
``--whole-frames``, and by Picasso LQ at
run.py's speed setting (box 5, min. net gradient 750) in the same run. Whole-process
wall time (median of ``--repeats``), the share of pixels the network ran on, and
Jaccard / lateral RMSE against the truth (250 nm tolerance). Prints a Markdown table.
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
from run import OURS_SCRIPT, PICASSO_CAMERA, PICASSO_SCRIPT, have_picasso  # noqa: E402

from napari_smlm.core.config import load_config  # noqa: E402
from napari_smlm.core.evaluation import evaluate  # noqa: E402
from napari_smlm.core.io import read_table  # noqa: E402
from napari_smlm.core.simulation import Simulator  # noqa: E402

SIZE, PX = 256, 100.0
CAMERA_FLAGS = ["--baseline", "100", "--e-per-adu", "45", "--em-gain", "100", "--qe", "0.9"]


def disc_movie(radius: float | None, frames: int, seed: int = 11):
    """(uint16 ADU movie, truth in nm): molecules inside a centred disc of ``radius`` px
    (None: the whole field at 0.5 per um^2)."""
    density = 1.0 if radius is not None else 0.5
    cfg = load_config(None, [
        f"simulation.frame_size=[{SIZE},{SIZE}]", f"simulation.pixel_size_nm={PX}", "simulation.psf.sigma_nm=[130,130]",
        f"simulation.emitters.density_per_um2=[{density},{density}]", "simulation.emitters.photons=[1000,5000]",
        "simulation.emitters.background=[50,50]", "simulation.emitters.mean_on_frames=1.5",
    ])
    sim = Simulator(cfg.simulation, "cpu", seed=seed)
    table = sim.sample_emitters(1, frames)
    if radius is not None:
        table = table.select((table.x_px - SIZE / 2) ** 2 + (table.y_px - SIZE / 2) ** 2 < radius ** 2)
    bg = sim.sample_background(1)[0]
    chunks = []
    for start in range(0, frames, 100):  # rendered 100 frames at a time (bounded memory)
        stop = min(start + 100, frames)
        part = table.select((table.frame >= start) & (table.frame < stop))
        part.frame = part.frame - start
        chunks.append(sim.camera.forward(sim.render(part, 1, stop - start)[0] + bg, sim.generator).numpy())
    truth = {"frame": table.frame.numpy(), "x": table.x_px.numpy() * PX, "y": table.y_px.numpy() * PX}
    return np.concatenate(chunks).astype(np.uint16), truth


def timed(cmd: list[str], repeats: int) -> tuple[float, str]:
    walls, out = [], ""
    for _ in range(repeats):
        t0 = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        walls.append(time.time() - t0)
    return float(np.median(walls)), out


def score(pred: dict, truth: dict) -> tuple[float, float]:
    m, _ = evaluate(pred, truth, tolerance_nm=250.0, check=False, frame_check=False, unit_check=False)
    return m["jaccard"], m["rmse_lat"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--radii", default="60,90,whole", help="cell radii in px, 'whole' for the whole field")
    ap.add_argument("--models", default="default,fast")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    picasso = have_picasso()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in args.radii.split(","):
            radius = None if r == "whole" else float(r)
            movie, truth = disc_movie(radius, args.frames)
            path = Path(tmp) / "movie.tif"
            tifffile.imwrite(path, movie)
            label = "whole field, 0.5 /µm²" if radius is None else f"cell r = {radius:g} px ({radius * PX * 2 / 1000:g} µm across)"
            runs = [(m, flags) for m in args.models.split(",") for flags in ([], ["--whole-frames"])]
            if picasso:
                picasso_s, _ = timed([sys.executable, "-c", PICASSO_SCRIPT.format(camera=PICASSO_CAMERA, box=5, ng=750.0),
                                      str(path), str(Path(tmp) / "p.h5")], args.repeats)
                import h5py

                with h5py.File(Path(tmp) / "p.h5") as f:
                    locs = f["locs"][...]
                pj, prmse = score({"frame": locs["frame"].astype(np.int64), "x": (locs["x"] + 0.5) * PX,
                                   "y": (locs["y"] + 0.5) * PX}, truth)
                rows.append((label, "Picasso LQ (box 5, 750)", picasso_s, None, pj, prmse))
                print(rows[-1], flush=True)
            for model, flags in runs:
                out = Path(tmp) / "o.csv"
                wall, stdout = timed([sys.executable, "-c", OURS_SCRIPT, "localize", str(path), "--model", model, "--out",
                                      str(out), *CAMERA_FLAGS, *flags], args.repeats)
                share = 1.0
                for line in stdout.splitlines():
                    if line.startswith("the network ran on "):
                        share = float(line.split()[4].rstrip("%")) / 100
                table = read_table(out)
                j, rmse = score({"frame": table["frame"], "x": table["x"], "y": table["y"]}, truth)
                method = f"napari-smlm {model}" + (" --whole-frames" if flags else "")
                rows.append((label, method, wall, share, j, rmse))
                print(rows[-1], flush=True)
    lines = [f"{args.frames} frames of {SIZE}x{SIZE}; wall time of the whole process (median of {args.repeats}); "
             "ratio = time / Picasso's on the same movie", "",
             "| movie | method | wall time | / Picasso | network on | Jaccard | RMSE lateral |", "|---|---|---|---|---|---|---|"]
    picasso_time = {label: wall for label, method, wall, *_ in rows if method.startswith("Picasso")}
    for label, method, wall, share, j, rmse in rows:
        ratio = f"{wall / picasso_time[label]:.2f}" if label in picasso_time else "–"
        on = "–" if share is None else f"{share:.0%}"
        lines.append(f"| {label} | {method} | {wall:.1f} s | {ratio} | {on} | {j:.3f} | {rmse:.1f} nm |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
