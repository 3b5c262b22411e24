"""Astigmatic 3D benchmark (issue 12): napari-smlm against Picasso's astigmatic 3D
and the Cramér-Rao bound, on movies from a PSF that is not ours.

    python benchmarks/astig_3d.py --work /tmp/astig3d [--skip-ours | --model CKPT | --train-minutes 60]
                                  [--frames 2000,1000] [--out docs/benchmarks/astig_3d_results.md]

1. Data (benchmarks/pupil_psf.py, cached in ``--work``; made again only when the
   settings change): a bead z-stack (151 planes, beads at z = -750 + 10·k nm in plane k,
   12 beads of 20,000 photons on 20 photons/px, 128x128 px) and two 64x64 px movies of
   blinking molecules (on for whole frames, 1.5 on average, as in an acquisition),
   1,000-6,000 photons per frame, background 50 photons/px, z uniform in
   ±600 nm, 100 nm pixels, EMCCD (baseline 100 ADU, 45 e-/ADU, EM gain 100, QE 0.9,
   read noise 74.4 e-): 0.2 molecules/µm² (``--frames`` first number, 2,000 frames)
   and 1 molecule/µm² (second number, 1,000 frames).
2. Picasso (``pip install picassosr``, 0.11.3 here; a benchmark-only dependency) as
   its users run it: the bead stack localized with the least-squares Gaussian
   (``gausslq``, which reports sx and sy; box 15), its z calibration by
   ``picasso.zfit.calibrate_z`` (6th-order polynomials of the mean sx, sy per plane,
   z = 0 where they cross, magnification factor 1 because beads and molecules lie in
   the same medium), then
   each movie localized with ``gausslq`` and z fitted by ``picasso.zfit.zfit`` (no
   residual filter, as ``picasso.localize.localize(calibration_3d=...)`` does).
   Picasso's calibrate_z gives the *first* plane of a stack z = +(n-1)·step/2, so the
   stack is handed to it in reverse order (its z is then ours: positive away from the
   coverslip). Box size and minimum net gradient are chosen per movie by the best
   Jaccard over a grid (an oracle choice, as in benchmarks/run.py); 2D localization runs
   once per box at the grid's lowest gradient and the higher gradients are subsets
   (identification keeps a spot when its net gradient exceeds the threshold, and each
   spot's fit and z fit are independent of the others, so this is exactly what
   separate runs give). Pixel centres sit at integers in Picasso: x_nm = (x + 0.5)·px.
3. Ours (``--skip-ours`` to leave out): ``napari-smlm calibrate`` on the same bead
   stack (``--z-step 10``: plane k at z = (k - focus)·10 nm), ``napari-smlm train
   --config astig_3d --psf PSF.h5 --max-minutes M`` (or ``--model CKPT`` to reuse a
   trained model), ``napari-smlm localize`` with the true camera, scored the same way.
4. Scoring: our ``evaluate`` (lateral tolerance 250 nm, axial 500 nm) over the whole
   field, and over the inner field (``--margin-px`` from the edges; gt and
   localizations both cut) where Picasso's identification, which ignores maxima
   within box/2 of the edge, is not at a disadvantage. The 3D Cramér-Rao bound is that
   of the *true* pupil PSF (Fisher information of x, y, z, photons and background over
   a 31x31 px ROI, EMCCD excess-noise factor F² = 2, the molecule at a pixel centre,
   its z rounded to 10 nm), RMS over the molecules each method matched.

Writes ``results.json`` and ``results.md`` in ``--work`` (and the markdown to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pupil_psf as pp  # noqa: E402

from napari_smlm.core.evaluation import evaluate  # noqa: E402

PX = pp.PIXEL_NM
PICASSO_CAMERA = {"Baseline": pp.CAMERA["baseline"], "Sensitivity": pp.CAMERA["e_per_adu"], "Gain": pp.CAMERA["em_gain"],
                  "Qe": pp.CAMERA["qe"], "Pixelsize": PX}
CAMERA_FLAGS = ["--baseline", str(pp.CAMERA["baseline"]), "--e-per-adu", str(pp.CAMERA["e_per_adu"]),
                "--em-gain", str(pp.CAMERA["em_gain"]), "--qe", str(pp.CAMERA["qe"]), "--camera-kind", "emccd"]
TOL_NM, TOL_Z_NM = 250.0, 500.0
# name, density /µm², seed; frames from --frames
MOVIES = [("0.2", 0.2, 11), ("1", 1.0, 12)]


# -- data ----------------------------------------------------------------------------------
def generate(work: Path, frames: list[int], size: int) -> dict:
    """Bead stack and movies into ``work`` unless already there with these settings;
    returns seconds spent per item (0 where cached)."""
    timings = {}
    settings = {"beads": {"n_beads": 12, "size": 128, "seed": 1, "spacing_px": 22.0}, "psf": pp.PupilPSF().__repr__()}
    jobs = [("beads", lambda d: pp.bead_stack(d, **settings["beads"]), settings)]
    for (name, density, seed), n in zip(MOVIES, frames):
        kw = {"frames": n, "size": size, "density_per_um2": density, "seed": seed, "mean_on_frames": 1.5}
        jobs.append((f"movie_{name}", lambda d, kw=kw: pp.movie(d, **kw), {"movie": kw, "psf": settings["psf"]}))
    for name, make, stamp in jobs:
        folder = work / name
        stamp_file = folder / "settings.json"
        if stamp_file.is_file() and json.loads(stamp_file.read_text()) == json.loads(json.dumps(stamp)):
            timings[name] = 0.0
            continue
        t0 = time.time()
        make(folder)
        timings[name] = time.time() - t0
        stamp_file.write_text(json.dumps(stamp))
        print(f"generated {name} in {timings[name]:.1f} s", flush=True)
    return timings


# -- scoring -------------------------------------------------------------------------------
class TrueCRLB:
    """3D Cramér-Rao bound of the true pupil PSF (see the module docstring)."""

    def __init__(self, background: float, roi: int = 31, z_lim: float = 700.0, step: float = 10.0, excess: float = 2.0):
        psf = pp.default_psf()
        self.z = np.arange(-z_lim, z_lim + step / 2, step)
        self.step, self.background, self.excess = step, background, excess
        c = roi / 2.0  # the centre of the ROI's middle pixel
        n = len(self.z)
        ones = np.ones(n)
        h = 0.01  # px
        img = lambda dx, dy, dz: pp.psf_images(c + dx * ones, c + dy * ones, self.z + dz, roi, psf).reshape(n, -1)  # noqa: E731
        self.mu = img(0, 0, 0)
        self.d = np.stack([(img(h, 0, 0) - img(-h, 0, 0)) / (2 * h * PX), (img(0, h, 0) - img(0, -h, 0)) / (2 * h * PX),
                           (img(0, 0, step) - img(0, 0, -step)) / (2 * step)], 1)  # per nm

    def __call__(self, photons, z_nm) -> np.ndarray:
        """(n, 3) bound of x, y, z in nm."""
        photons = np.asarray(photons, float)
        iz = np.clip(np.round((np.asarray(z_nm, float) - self.z[0]) / self.step).astype(int), 0, len(self.z) - 1)
        out = np.empty((len(photons), 3))
        for s in range(0, len(photons), 2000):
            sl = slice(s, s + 2000)
            N, mu, d = photons[sl, None], self.mu[iz[sl]], self.d[iz[sl]]
            g = np.concatenate([N[:, None] * d, mu[:, None], np.ones_like(mu)[:, None]], 1)  # (n, 5, px)
            w = 1.0 / (self.excess * (N * mu + self.background))
            fisher = np.einsum("nip,njp,np->nij", g, g, w)
            out[sl] = np.sqrt(np.diagonal(np.linalg.inv(fisher), axis1=1, axis2=2)[:, :3])
        return out


def bound_check(psf_file: Path, background: float = 50.0) -> list[dict]:
    """The bound of the true PSF beside that of our calibrated spline (both over the
    spline's ROI, the molecule at a pixel centre): how much of the PSF the calibration
    captured. Empty where our 3D CRLB or calibration code is missing."""
    try:
        from napari_smlm.core.calibration import load_calibration
        from napari_smlm.core.evaluation.crlb import crlb_3d_nm
        from napari_smlm.core.psf import SplinePSF
    except ImportError as exc:
        print(f"no 3D CRLB of our calibration ({exc})", flush=True)
        return []
    spline = SplinePSF.from_calibration(load_calibration(psf_file))
    true = TrueCRLB(background, roi=spline.roi)
    z = np.arange(-600.0, 601.0, 200.0)
    rows = []
    for n in (1000.0, 3000.0, 6000.0):
        ours = crlb_3d_nm(spline, np.full(len(z), n), background, z)
        ref = true(np.full(len(z), n), z)
        rows += [{"photons": n, "z": float(zz), "true": [float(v) for v in r], "calibrated": [float(v) for v in o]}
                 for zz, r, o in zip(z, ref, ours)]
    return rows


def inner(table: dict, size: int, margin_px: float) -> dict:
    lo, hi = margin_px * PX, (size - margin_px) * PX
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    keep = (x >= lo) & (x < hi) & (y >= lo) & (y < hi)
    return {k: np.asarray(v)[keep] for k, v in table.items()}


def score(pred: dict, gt: dict, crlb: TrueCRLB, size: int, margin_px: float) -> dict:
    """Whole-field and inner-field metrics, and the bound over the matched molecules."""
    out = {}
    for region, (p, g) in {"whole": (pred, gt), "inner": (inner(pred, size, margin_px), inner(gt, size, margin_px))}.items():
        m, match = evaluate(p, g, TOL_NM, TOL_Z_NM, frame_check=False)
        gi, pi = match.gt_index, match.pred_index
        dz = np.asarray(p["z"], float)[pi] - np.asarray(g["z"], float)[gi]
        row = {k: float(m[k]) for k in ("precision", "recall", "jaccard", "rmse_lat", "rmse_ax", "rmse_vol")}
        row["bias_z"] = float(m.get("bias_z", np.mean(dz) if len(dz) else np.nan))
        row["efficiency_lat"] = float(m["efficiency_lat"])
        row["efficiency_ax"] = float(m["efficiency_ax"])
        row["efficiency"] = float(m.get("efficiency_3d", m["efficiency"]))
        row["n_gt"], row["n_pred"], row["tp"] = int(m["n_gt"]), int(m["n_pred"]), int(len(gi))
        if len(gi):
            b = crlb(np.asarray(g["photons"], float)[gi], np.asarray(g["z"], float)[gi])
            row["crlb_lat"] = float(np.sqrt(np.mean(b[:, 0] ** 2 + b[:, 1] ** 2)))
            row["crlb_ax"] = float(np.sqrt(np.mean(b[:, 2] ** 2)))
        else:
            row["crlb_lat"] = row["crlb_ax"] = float("nan")
        if region == "whole":
            row["by_z"] = m.get("by_z", [])
        out[region] = row
    return out


# -- Picasso -------------------------------------------------------------------------------
def have_picasso() -> bool:
    try:
        import picasso.zfit  # noqa: F401

        return True
    except Exception:  # noqa: BLE001 - any import failure means: no peer
        return False


def _quiet_matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.show = lambda *a, **k: None  # calibrate_z draws its diagnostics and shows them
    return plt


def picasso_calibration(work: Path, box: int = 15, min_ng: float = 5000.0) -> dict:
    """Picasso's z calibration from the bead stack (reversed: see the module docstring)."""
    import tifffile
    from picasso import io as pio, localize as plocalize, zfit

    plt = _quiet_matplotlib()
    stack = tifffile.imread(work / "beads" / "beads.tif")
    rev = work / "picasso" / "beads_reversed.tif"
    rev.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(rev, np.ascontiguousarray(stack[::-1]), photometric="minisblack")
    movie, info = pio.load_movie(str(rev))
    t0 = time.time()
    locs, _ = plocalize.localize(movie, camera_info=PICASSO_CAMERA,
                                 identification_parameters={"Box Size": box, "Min. Net Gradient": float(min_ng)},
                                 fitting_method="gausslq", threaded=False)
    cal = zfit.calibrate_z(locs, info, 10.0, 1.0, path=str(work / "picasso" / "zcalibration.yaml"))
    plt.close("all")
    per_plane = np.bincount(np.asarray(locs["frame"], int), minlength=len(stack))
    report = {"box": box, "min_net_gradient": min_ng, "bead_locs": int(len(locs)),
              "planes_without_beads": int(np.sum(per_plane == 0)), "seconds": time.time() - t0}
    print(f"Picasso z calibration: {len(locs)} bead localizations, {report['planes_without_beads']} planes without any, "
          f"{report['seconds']:.0f} s", flush=True)
    del movie
    return {"calibration": cal, "report": report}


def picasso_row(movie_dir: Path, cal: dict, boxes, ngs, size: int, margin_px: float, crlb: TrueCRLB) -> dict:
    """Picasso on one movie with the box and minimum net gradient of best Jaccard."""
    from picasso import io as pio, localize as plocalize, zfit

    gt = pp.read_truth(movie_dir)
    movie, info = pio.load_movie(str(movie_dir / "movie.tif"))
    best, grid, seconds = None, [], {}
    for box in boxes:
        t0 = time.time()
        locs, linfo = plocalize.localize(movie, camera_info=PICASSO_CAMERA,
                                         identification_parameters={"Box Size": box, "Min. Net Gradient": float(min(ngs))},
                                         fitting_method="gausslq", threaded=False)
        locs3d, _ = zfit.zfit(locs, list(info) + list(linfo), calibration=dict(cal), magnification_factor=1.0,
                              pixelsize=PX, fitting_method="gausslq", filter=0, multiprocess=False)
        seconds[box] = time.time() - t0
        for ng in ngs:
            sub = locs3d[locs3d["net_gradient"] > ng]
            pred = {"frame": np.asarray(sub["frame"], int), "x": (np.asarray(sub["x"], float) + 0.5) * PX,
                    "y": (np.asarray(sub["y"], float) + 0.5) * PX, "z": np.asarray(sub["z"], float),
                    "photons": np.asarray(sub["photons"], float), "prob": np.ones(len(sub))}
            m, _ = evaluate(pred, gt, TOL_NM, TOL_Z_NM, frame_check=False)
            grid.append({"box": box, "min_net_gradient": ng, "jaccard": m["jaccard"], "rmse_lat": m["rmse_lat"],
                         "rmse_ax": m["rmse_ax"]})
            print(f"  Picasso box {box} ng {ng:g}: J={m['jaccard']:.3f} lat {m['rmse_lat']:.1f} ax {m['rmse_ax']:.1f} nm",
                  flush=True)
            if best is None or m["jaccard"] > best[0]:
                best = (m["jaccard"], box, ng, pred)
    del movie
    _, box, ng, pred = best
    return {"method": "Picasso LQ + zfit", "params": f"box {box}, min. net gradient {ng:g}",
            "seconds": seconds[box], "grid": grid, **score(pred, gt, crlb, size, margin_px)}


# -- ours ----------------------------------------------------------------------------------
def cli(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "napari_smlm.cli", *map(str, args)]
    print("$ napari-smlm " + " ".join(map(str, args)), flush=True)
    return subprocess.run(cmd, text=True)


def have_commands() -> bool:
    for command in ("calibrate", "train"):
        proc = subprocess.run([sys.executable, "-m", "napari_smlm.cli", command, "--help"], capture_output=True, text=True)
        if proc.returncode != 0 or (command == "train" and "--psf" not in proc.stdout):
            return False
    return True


def our_model(args, work: Path) -> tuple[str, dict]:
    """The checkpoint to use (given, or calibrated and trained here) and how it came about."""
    if args.model:
        return args.model, {"model": args.model, "trained_here": False}
    psf_file = work / "ours" / "psf.h5"
    psf_file.parent.mkdir(parents=True, exist_ok=True)
    if not psf_file.is_file():
        rc = cli("calibrate", work / "beads" / "beads.tif", "--z-step", 10, "--out", psf_file, "--pixel-size", PX,
                 "--plot", work / "ours" / "calibration.png", *CAMERA_FLAGS).returncode
        if rc:
            sys.exit(f"napari-smlm calibrate failed (exit {rc})")
    run = work / "ours" / f"train_{args.train_minutes:g}min"
    if not (run / "best.pt").is_file():
        t0 = time.time()
        rc = cli("train", "--config", "astig_3d", "--psf", psf_file, "--out", run, "--max-minutes", args.train_minutes,
                 *sum((["--set", s] for s in args.train_set), [])).returncode
        if rc:
            sys.exit(f"napari-smlm train failed (exit {rc})")
        (run / "benchmark_train_seconds.txt").write_text(f"{time.time() - t0:.0f}\n")
    secs = (run / "benchmark_train_seconds.txt").read_text().strip() if (run / "benchmark_train_seconds.txt").is_file() else "?"
    return str(run / "best.pt"), {"model": str(run / "best.pt"), "trained_here": True, "train_minutes": args.train_minutes,
                                  "train_wall_s": secs, "psf": str(psf_file)}


def our_row(ckpt: str, movie_dir: Path, size: int, margin_px: float, crlb: TrueCRLB) -> dict:
    from napari_smlm.core.io.tables import read_table

    out = movie_dir / "ours.csv"
    t0 = time.time()
    rc = cli("localize", movie_dir / "movie.tif", "--model", ckpt, "--out", out, "--pixel-size", PX, *CAMERA_FLAGS).returncode
    if rc:
        sys.exit(f"napari-smlm localize failed (exit {rc})")
    secs = time.time() - t0
    pred = read_table(out)
    return {"method": "napari-smlm", "params": Path(ckpt).parent.name + "/" + Path(ckpt).name, "seconds": secs,
            **score(pred, pp.read_truth(movie_dir), crlb, size, margin_px)}


# -- report --------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    lines = [f"# Astigmatic 3D benchmark ({result['date']}, {result['machine']})", "",
             f"Command: `{result['command']}`", ""]
    for region, title in (("whole", "whole field"), ("inner", f"inner field ({result['margin_px']:g} px from the edges)")):
        lines += [f"## {title.capitalize()} (tolerance 250 nm lateral, 500 nm axial)", "",
                  "| movie | method | parameters | precision | recall | Jaccard | RMSE lat nm | RMSE ax nm | bias z nm | "
                  "efficiency 3D % | CRLB lat nm | CRLB ax nm |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            s = r[region]
            lines.append(f"| {r['movie']} /µm² | {r['method']} | {r['params']} | {s['precision']:.3f} | {s['recall']:.3f} | "
                         f"{s['jaccard']:.3f} | {s['rmse_lat']:.1f} | {s['rmse_ax']:.1f} | {s['bias_z']:+.1f} | "
                         f"{s['efficiency']:.1f} | {s['crlb_lat']:.1f} | {s['crlb_ax']:.1f} |")
        lines.append("")
    if result.get("bound_check"):
        lines += ["## The bound of the true PSF and of our calibrated spline", "",
                  "x / y / z in nm; the spline's ROI, the molecule at a pixel centre, background 50 photons/px, EMCCD.", "",
                  "| photons | z nm | true PSF | calibrated spline |", "|---|---|---|---|"]
        for b in result["bound_check"]:
            lines.append(f"| {b['photons']:.0f} | {b['z']:+.0f} | {' / '.join(f'{v:.1f}' for v in b['true'])} | "
                         f"{' / '.join(f'{v:.1f}' for v in b['calibrated'])} |")
        lines.append("")
    lines += ["CRLB: the true pupil PSF's bound, RMS over the molecules the method matched (lateral: sqrt(CRLBx² + CRLBy²)).",
              f"Data generation: {', '.join(f'{k} {v:.0f} s' for k, v in result['generation_s'].items())} (0: cached)."]
    if result.get("ours"):
        lines.append(f"Our model: {json.dumps(result['ours'])}.")
    if result.get("picasso_calibration"):
        lines.append(f"Picasso z calibration: {json.dumps(result['picasso_calibration'])}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="folder for the generated data and every method's output (cache)")
    ap.add_argument("--frames", default="2000,1000", help="frames of the 0.2 and the 1 /µm² movie (default 2000,1000)")
    ap.add_argument("--size", type=int, default=64, help="movie side [px] (default 64)")
    ap.add_argument("--margin-px", type=float, default=6.0, help="edge band left out of the inner-field scores (default 6)")
    ap.add_argument("--skip-picasso", action="store_true")
    ap.add_argument("--picasso-boxes", default="9,11,13")
    ap.add_argument("--picasso-ng", default="300,500,750,1000,1500,2000,3000,5000")
    ap.add_argument("--skip-ours", action="store_true", help="leave out napari-smlm (calibrate, train, localize)")
    ap.add_argument("--model", help="our checkpoint to use instead of calibrating and training here")
    ap.add_argument("--train-minutes", type=float, default=60.0, help="time box of our training (default 60)")
    ap.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE", help="extra train --set (repeatable)")
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    frames = [int(f) for f in args.frames.split(",")]
    if len(frames) != len(MOVIES):
        sys.exit(f"--frames: give {len(MOVIES)} numbers")
    gen = generate(work, frames, args.size)
    crlb = TrueCRLB(background=50.0)
    rows, result = [], {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, CPU",
                        "command": "python benchmarks/astig_3d.py " + " ".join(sys.argv[1:]), "margin_px": args.margin_px,
                        "generation_s": gen, "frames": frames, "size": args.size}
    if not args.skip_picasso:
        if not have_picasso():
            print("Picasso is not installed (pip install picassosr): its rows are skipped", flush=True)
        else:
            from importlib.metadata import version

            result["picasso"] = version("picassosr")
            pc = picasso_calibration(work)
            result["picasso_calibration"] = pc["report"]
            boxes = [int(b) for b in args.picasso_boxes.split(",")]
            ngs = [float(g) for g in args.picasso_ng.split(",")]
            for name, _, _ in MOVIES:
                print(f"movie {name} /µm²: Picasso", flush=True)
                rows.append({"movie": name, **picasso_row(work / f"movie_{name}", pc["calibration"], boxes, ngs, args.size,
                                                          args.margin_px, crlb)})
    if not args.skip_ours:
        if not args.model and not have_commands():
            print("napari-smlm calibrate / train --psf are not available yet: our rows are skipped", flush=True)
        else:
            ckpt, result["ours"] = our_model(args, work)
            if result["ours"].get("psf"):
                try:
                    result["bound_check"] = bound_check(Path(result["ours"]["psf"]))
                except Exception as exc:  # noqa: BLE001 - a side table: report, do not stop the benchmark
                    print(f"bound check failed: {exc}", flush=True)
            for name, _, _ in MOVIES:
                rows.append({"movie": name, **our_row(ckpt, work / f"movie_{name}", args.size, args.margin_px, crlb)})
    result["rows"] = rows
    (work / "results.json").write_text(json.dumps(result, indent=1, default=float))
    md = markdown(result)
    (work / "results.md").write_text(md)
    if args.out:
        Path(args.out).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
