"""napari-smlm against Picasso and the Cramér-Rao bound: accuracy, speed, memory.

    python benchmarks/run.py [--models default,runs/bench_emccd/best.pt] [--quick] [--out docs/benchmarks]

Needs Picasso for the peer columns (``pip install picassosr``, an optional
benchmark dependency, never a runtime one); without it, only our rows are made.
Movies are simulated here with fixed seeds (see benchmarks_common.test_movie):
64x64 px of 100 nm, EMCCD (baseline 100, 45 e-/ADU, gain 100, QE 0.9, read noise
74.4 e-), sigma 130 nm, 1,000-5,000 photons, background 50 photons/px, blinking;
densities 0.1, 0.5, 1, 2, 4 /um^2 and a low-SNR set (300-1,000 photons,
background 100) at 0.1 /um^2. Picasso runs with least squares (LQ) and MLE; its
box and minimum net gradient are chosen per movie by the best Jaccard over a
grid (the chosen values are reported). Picasso puts pixel centres at integer
coordinates: x_nm = (x_px + 0.5) * pixel size. Everything is scored by our own
evaluate (250 nm tolerance). ``--models`` takes several models (the bundled one and
one trained for these simulation settings, see docs/benchmarks/README.md). Jaccard
and RMSE against photons come from the 0.1 /um^2 sets, binned by photons in the
frame (true positives and misses by their true photons, false positives by their
estimated photons). Speed: whole-process wall time and peak RSS for
1,000-frame 64x64 and 256x256 movies, median of ``--repeats`` runs, reported as
the ratio ours / Picasso; our time split from the localize command's report.
Writes results.md, results.json and PNG plots to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import test_movie  # noqa: E402

from napari_smlm.core.evaluation import evaluate  # noqa: E402
from napari_smlm.core.evaluation.crlb import crlb_lateral_nm  # noqa: E402
from napari_smlm.core.inference import LocalizationModel  # noqa: E402
from napari_smlm.core.localize import localize  # noqa: E402

PX = 100.0
SETS = [  # name, density, frames, photons, background
    ("0.1", 0.1, 1000, (1000, 5000), 50.0),
    ("0.5", 0.5, 400, (1000, 5000), 50.0),
    ("1", 1.0, 300, (1000, 5000), 50.0),
    ("2", 2.0, 200, (1000, 5000), 50.0),
    ("4", 4.0, 100, (1000, 5000), 50.0),
    ("0.1 low SNR", 0.1, 1000, (300, 1000), 100.0),
]
PICASSO_CAMERA = {"Baseline": 100.0, "Sensitivity": 45.0, "Gain": 100.0, "Qe": 0.9, "Pixelsize": PX}


def have_picasso() -> bool:
    try:
        import picasso.localize  # noqa: F401

        return True
    except Exception:  # noqa: BLE001 - any import failure means: no peer
        return False


def picasso_movie(movie: np.ndarray, folder: str):
    """Picasso localizes only movies opened by picasso.io.load_movie: write, open."""
    from picasso import io as pio

    path = Path(folder) / "movie.tif"
    tifffile.imwrite(path, movie)
    loaded = pio.load_movie(str(path))
    return loaded[0] if isinstance(loaded, tuple) else loaded


def picasso_table(movie, method: str, box: int, min_ng: float) -> dict:
    from picasso import localize as plocalize

    out = plocalize.localize(movie, camera_info=PICASSO_CAMERA,
                             identification_parameters={"Box Size": box, "Min. Net Gradient": float(min_ng)},
                             fitting_method=method, return_info=True)
    locs = out[0] if isinstance(out, tuple) else out
    if locs is None or len(locs) == 0:
        return {"frame": np.zeros(0, int), "x": np.zeros(0), "y": np.zeros(0), "z": np.zeros(0), "prob": np.zeros(0)}
    return {"frame": np.asarray(locs["frame"], int), "x": (np.asarray(locs["x"], float) + 0.5) * PX,
            "y": (np.asarray(locs["y"], float) + 0.5) * PX, "z": np.zeros(len(locs)),
            "photons": np.asarray(locs["photons"], float), "prob": np.ones(len(locs))}


def crlb_ratio(pred, gt, m, background: float) -> tuple[float, float]:
    """Lateral RMSE over matched molecules with >= 1,000 photons in the frame, and its
    ratio to the RMS of their Mortensen bounds (EMCCD)."""
    ph = gt["photons"][m.gt_index]
    full = ph >= 1000.0 if background <= 50 else ph >= 300.0
    if not full.any():
        return float("nan"), float("nan")
    bound = crlb_lateral_nm(ph[full], background, 130.0, PX, excess_noise=2.0)
    dx = pred["x"][m.pred_index][full] - gt["x"][m.gt_index][full]
    dy = pred["y"][m.pred_index][full] - gt["y"][m.gt_index][full]
    rmse = float(np.sqrt(np.mean(dx**2 + dy**2)))
    return rmse, rmse / float(np.sqrt(np.mean(2 * bound**2)))


PHOTON_BINS = [100, 300, 600, 1000, 2000, 3500, 5000]


def by_photons(pred, gt, m) -> dict:
    """Jaccard and lateral RMSE per photon bin (see the module docstring)."""
    gph = np.asarray(gt["photons"], float)
    pph = np.asarray(pred.get("photons", np.full(len(pred["x"]), np.nan)), float)
    fp = np.ones(len(pph), bool)
    fp[m.pred_index] = False
    tp_bin = np.digitize(gph[m.gt_index], PHOTON_BINS)
    fn = np.ones(len(gph), bool)
    fn[m.gt_index] = False
    out = {"jaccard": [], "rmse_lat": [], "n": []}
    dx = np.asarray(pred["x"], float)[m.pred_index] - np.asarray(gt["x"], float)[m.gt_index]
    dy = np.asarray(pred["y"], float)[m.pred_index] - np.asarray(gt["y"], float)[m.gt_index]
    for b in range(1, len(PHOTON_BINS)):
        tp = tp_bin == b
        n_fn = int(np.sum(np.digitize(gph[fn], PHOTON_BINS) == b))
        n_fp = int(np.sum(np.digitize(pph[fp], PHOTON_BINS) == b))
        n_tp = int(tp.sum())
        # a bin without true molecules has no Jaccard (its false positives alone say little)
        out["jaccard"].append(n_tp / (n_tp + n_fn + n_fp) if n_tp + n_fn else float("nan"))
        out["rmse_lat"].append(float(np.sqrt(np.mean(dx[tp] ** 2 + dy[tp] ** 2))) if n_tp else float("nan"))
        out["n"].append(n_tp + n_fn)
    return out


def accuracy(args, models) -> list[dict]:
    rows = []
    # The first run's best was always the grid's lowest value (1,000): the grid now reaches 250.
    grid_ng = [250, 500, 750, 1000, 1500, 2500, 5000] if not args.quick else [500, 3000]
    boxes = [5, 7] if not args.quick else [7]
    for i, (name, density, frames, photons, bg) in enumerate(SETS):
        frames = frames if not args.quick else max(50, frames // 10)
        movie, gt, cam = test_movie(density, frames, seed=300 + i, photons=photons, background=bg)
        for label, lm in models.items():
            t0 = time.time()
            res = localize(movie, model=lm, camera=cam, pixel_size_nm=PX)
            ours_s = time.time() - t0
            pred = res.table()
            m, match = evaluate(pred, gt, 250.0)
            rmse_full, ratio = crlb_ratio(pred, gt, match, bg)
            rows.append({"set": name, "method": label, "params": f"threshold {res.threshold:g}", "seconds": ours_s,
                         **{k: m[k] for k in ("precision", "recall", "jaccard", "rmse_lat", "efficiency_lat")},
                         "rmse_full": rmse_full, "rmse_over_crlb": ratio, "n_gt": len(gt["x"]), "background": bg,
                         "by_photons": by_photons(pred, gt, match)})
            print(f"{name}: {label} J={m['jaccard']:.3f} RMSE={m['rmse_lat']:.1f} ratio={ratio:.2f}", flush=True)
        if not args.picasso:
            continue
        tmp = tempfile.mkdtemp(prefix="napari-smlm-bench-")
        pmovie = picasso_movie(movie, tmp)  # memory-mapped: the folder lives until this set is done
        for method in ("gausslq", "gaussmle"):
            best = None
            for box in boxes:
                for ng in grid_ng:
                    t0 = time.time()
                    try:
                        p = picasso_table(pmovie, method, box, ng)
                    except Exception as exc:  # noqa: BLE001 - a failing setting is just not chosen
                        print(f"  picasso {method} box {box} ng {ng}: {exc}", flush=True)
                        continue
                    secs = time.time() - t0
                    pm, pmatch = evaluate(p, gt, 250.0)
                    if best is None or pm["jaccard"] > best[0]["jaccard"]:
                        best = (pm, pmatch, p, box, ng, secs)
            if best is None:
                continue
            pm, pmatch, p, box, ng, secs = best
            rmse_full, ratio = crlb_ratio(p, gt, pmatch, bg)
            rows.append({"set": name, "method": f"Picasso {'LQ' if method == 'gausslq' else 'MLE'}",
                         "params": f"box {box}, min. net gradient {ng}", "seconds": secs,
                         **{k: pm[k] for k in ("precision", "recall", "jaccard", "rmse_lat", "efficiency_lat")},
                         "rmse_full": rmse_full, "rmse_over_crlb": ratio, "n_gt": len(gt["x"]), "background": bg,
                         "by_photons": by_photons(p, gt, pmatch)})
            print(f"{name}: Picasso {method} (box {box}, ng {ng}) J={pm['jaccard']:.3f} RMSE={pm['rmse_lat']:.1f} ratio={ratio:.2f}", flush=True)
        del pmovie
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


PICASSO_SCRIPT = """
import sys, time
from picasso import localize, io
t0 = time.time()
movie = io.load_movie(sys.argv[1])[0]
t1 = time.time()
locs = localize.localize(movie, camera_info={camera!r}, identification_parameters={{"Box Size": {box}, "Min. Net Gradient": {ng}}},
                         fitting_method="gausslq", return_info=True)[0]
t2 = time.time()
import h5py
with h5py.File(sys.argv[2], "w") as f:
    f.create_dataset("locs", data=locs.to_records(index=False))
t3 = time.time()
print("TIMES", t1 - t0, t2 - t1, t3 - t2, "PEAK_RSS_KIB", [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
"""
OURS_SCRIPT = ("import sys; from napari_smlm.cli import main; rc = main(sys.argv[1:]); "
               "print('PEAK_RSS_KIB', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(rc)")


def speed(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (64, 256):
            movie, _, _ = test_movie(0.5, 1000 if not args.quick else 100, seed=7, size=size)
            path = Path(tmp) / f"movie{size}.tif"
            tifffile.imwrite(path, movie)
            # Picasso at the setting its accuracy rows chose at 0.5/um^2 (box 5, min. net
            # gradient 750), and at a stricter one (box 7, 5,000: fewer spots, less fitting).
            methods = [(label, name) for label, name in args.our_models.items()]
            if args.picasso:
                methods += [("Picasso LQ", (5, 750.0)), ("Picasso LQ strict", (7, 5000.0))]
            for method, what in methods:
                walls, peaks, splits = [], [], []
                for _ in range(args.repeats if size == 64 else args.repeats_large):
                    if method.startswith("napari-smlm"):
                        cmd = [sys.executable, "-c", OURS_SCRIPT, "localize", str(path), "--model", what, "--out",
                               str(Path(tmp) / "o.csv"), "--baseline", "100", "--e-per-adu", "45", "--em-gain", "100", "--qe", "0.9"]
                    else:
                        box, ng = what
                        cmd = [sys.executable, "-c", PICASSO_SCRIPT.format(camera=PICASSO_CAMERA, box=box, ng=ng), str(path),
                               str(Path(tmp) / "p.h5")]
                    t0 = time.time()
                    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    walls.append(time.time() - t0)
                    peaks.append(int(proc.stdout.split("PEAK_RSS_KIB")[1].split()[0]) / 1024)
                    splits.append(proc.stdout)
                row = {"size": size, "method": method, "wall_s": float(np.median(walls)), "peak_rss_mb": float(np.median(peaks)),
                       "frames": len(movie), "runs": len(walls)}
                if not method.startswith("napari-smlm"):
                    row["params"] = f"box {what[0]}, min. net gradient {what[1]:g}"
                if method.startswith("napari-smlm"):
                    last = [ln for ln in splits[-1].splitlines() if ln.startswith("localized")]
                    row["split"] = last[0].split("frames/s (")[1].rsplit(")", 1)[0] if last else ""
                else:
                    last = [ln for ln in splits[-1].splitlines() if ln.startswith("TIMES")]
                    if last:
                        read, fit, write = (float(v) for v in last[0].split()[1:4])
                        row["split"] = f"read {read:.1f} s, identify + fit {fit:.1f} s, write {write:.1f} s"
                rows.append(row)
                print(f"speed {size}x{size} {method}: {row['wall_s']:.1f} s, {row['peak_rss_mb']:.0f} MB", flush=True)
    return rows


def write(out: Path, acc: list[dict], spd: list[dict], args, models: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stamp = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
             "torch": torch.__version__, "quick": args.quick,
             "models": {label: {"source": lm.source, **lm.info} for label, lm in models.items()}}
    if args.picasso:
        from importlib.metadata import version

        stamp["picasso"] = version("picassosr")
    (out / "results.json").write_text(json.dumps({**stamp, "accuracy": acc, "speed": spd}, indent=2, default=float))
    model_lines = [f"- {label}: `{Path(lm.source).name}` (epoch {lm.info.get('epoch')}, step {lm.info.get('step')})"
                   for label, lm in models.items()]
    lines = [f"# Benchmarks ({stamp['date']}, {stamp['machine']}, torch {stamp['torch']}, CPU"
             + (f", Picasso {stamp['picasso']}" if args.picasso else "") + ")", "",
             f"Command: `python benchmarks/run.py --models {args.models}{' --quick' if args.quick else ''}` "
             "(accuracy and speed may come from separate runs: `--skip-speed`, then `--skip-accuracy`). Models:", "",
             *model_lines, "",
             "## Accuracy (250 nm tolerance, whole field, partial-frame blinks count)", "",
             "| set /µm² | method | chosen parameters | precision | recall | Jaccard | RMSE lat nm | RMSE ≥1000 ph | RMSE / CRLB | efficiency lat % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in acc:
        lines.append(f"| {r['set']} | {r['method']} | {r['params']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['jaccard']:.3f} | "
                     f"{r['rmse_lat']:.1f} | {r['rmse_full']:.1f} | {r['rmse_over_crlb']:.2f} | {r['efficiency_lat']:.1f} |")
    lines += ["", "## Speed and memory (whole process: start-up, reading, localizing, writing; median of runs; peak RSS = VmHWM)", "",
              "| movie | method | runs | wall s | frames/s | peak RSS MB | time split (last run) |", "|---|---|---|---|---|---|---|"]
    for r in spd:
        lines.append(f"| {r['frames']} x {r['size']}x{r['size']} | {r['method']}"
                     + (f" ({r['params']})" if r.get("params") else "") + f" | {r['runs']} | {r['wall_s']:.1f} | "
                     f"{r['frames'] / r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} | {r.get('split', '')} |")
    for size in (64, 256):
        p = [r for r in spd if r["size"] == size and r["method"] == "Picasso LQ"]
        for o in (r for r in spd if r["size"] == size and r["method"].startswith("napari-smlm")):
            if p:
                lines.append(f"\nRatio {o['method']} / Picasso LQ ({p[0]['params']}) at {size}x{size}: wall time "
                             f"{o['wall_s'] / p[0]['wall_s']:.2f}, peak RSS {o['peak_rss_mb'] / p[0]['peak_rss_mb']:.2f}.")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plots(out, acc)
    print(f"wrote {out / 'results.md'}")


def plots(out: Path, acc: list[dict]) -> None:
    """Jaccard and RMSE against density, and against photons (0.1 /um^2 sets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in acc))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    dens = [s for s in SETS if "low" not in s[0]]
    for method in methods:
        rs = [next((r for r in acc if r["set"] == s[0] and r["method"] == method), None) for s in dens]
        xs = [s[1] for s, r in zip(dens, rs) if r]
        axes[0].plot(xs, [r["jaccard"] for r in rs if r], "o-", label=method)
        axes[1].plot(xs, [r["rmse_lat"] for r in rs if r], "o-", label=method)
    for ax, label in zip(axes, ("Jaccard", "lateral RMSE [nm]")):
        ax.set_xscale("log")
        ax.set_xlabel("density [/µm²]")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_density.png", dpi=110)
    plt.close(fig)

    centres = np.sqrt(np.array(PHOTON_BINS[:-1], float) * np.array(PHOTON_BINS[1:], float))
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), sharex=True)
    for col, (set_name, bg) in enumerate((("0.1", 50.0), ("0.1 low SNR", 100.0))):
        for method in methods:
            r = next((r for r in acc if r["set"] == set_name and r["method"] == method), None)
            if r is None:
                continue
            axes[0, col].plot(centres, r["by_photons"]["jaccard"], "o-", label=method)
            axes[1, col].plot(centres, r["by_photons"]["rmse_lat"], "o-", label=method)
        fine = np.geomspace(PHOTON_BINS[0], PHOTON_BINS[-1], 50)
        axes[1, col].plot(fine, np.sqrt(2) * crlb_lateral_nm(fine, bg, 130.0, PX, excess_noise=2.0), "k--", label="CRLB (lateral)")
        axes[0, col].set_title(f"0.1 /µm², background {bg:g} photons/px", fontsize=9)
        axes[0, col].set_ylabel("Jaccard")
        axes[1, col].set_ylabel("lateral RMSE [nm]")
        axes[1, col].set_yscale("log")
        for ax in axes[:, col]:
            ax.set_xscale("log")
        axes[1, col].set_xlabel("photons in the frame")
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_photons.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="default", help="comma-separated bundled names or checkpoints (default: default)")
    ap.add_argument("--quick", action="store_true", help="a tenth of the frames, a small Picasso grid (a check, not a result)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method for the 64x64 speed movie (median)")
    ap.add_argument("--repeats-large", type=int, default=2, help="runs per method for the 256x256 speed movie (median)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true", help="keep the accuracy rows of --out/results.json, measure speed")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks"))
    args = ap.parse_args()
    args.picasso = have_picasso()
    if not args.picasso:
        print("Picasso is not installed (pip install picassosr): peer rows are skipped", flush=True)
    models = {}
    args.our_models = {}
    for i, name in enumerate(args.models.split(",")):
        label = {"default": "napari-smlm (bundled)", "fast": "napari-smlm (fast)"}.get(
            name, f"napari-smlm ({Path(name).parent.name or name})")
        models[label] = LocalizationModel.load(name)
        args.our_models[label] = name
    previous = Path(args.out) / "results.json"
    if args.skip_accuracy:  # e.g. accuracy while the machine was shared, speed alone later
        if not previous.is_file():
            sys.exit(f"--skip-accuracy: {previous} holds no earlier accuracy rows")
        acc = json.loads(previous.read_text())["accuracy"]
    else:
        acc = accuracy(args, models)
    spd = [] if args.skip_speed else speed(args)
    write(Path(args.out), acc, spd, args, models)


if __name__ == "__main__":
    main()
