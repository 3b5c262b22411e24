"""Drift correction, merging and resolution on simulated drifting acquisitions, beside Picasso.

    python benchmarks/drift.py [--quick] [--no-picasso] [--json OUT] [--plot PNG]

The acquisitions are simulated here, independently of napari-smlm's simulator and of
the test suite's generator: localizations (not movies) of molecules on filaments
(microtubule-like lines) or on rings (pore-like, 50-60 nm radius, 8 sites), blinking with
exponential on-times (mean 2 frames), photons log-normal around 2,000, localization
precision σ_PSF/√N (σ_PSF 130 nm) per axis; plus, in one case, fiducial beads on in 97 % of
frames with 2 nm precision. Stage drift: linear up to 200 nm plus sines of 20-60 nm
amplitude and periods of 1,500-4,000 frames, up to 300 nm overall. Each case is corrected
with our RCC, AIM (and fiducials where there are some), and with Picasso's RCC
(``picasso.postprocess.undrift``, with the segment length our RCC chose: Picasso's default
of 1,000 frames cannot follow these drifts) and AIM (``picasso.aim.aim``, its default
segments of 100 frames) when picassosr is installed.
Columns: residual drift RMS against the true trajectory (after removing a constant
offset), the FRC resolution of the corrected image against the drift-free one, the time.
A last table checks merging: the RMSE of merged molecules against their true positions,
and how it falls with the number of frames merged (√N expected).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from napari_smlm.core.analysis import apply_drift, estimate_drift
from napari_smlm.core.analysis.merge import merge_localizations
from napari_smlm.core.analysis.resolution import frc

PX = 100.0  # nm per camera pixel (for Picasso's pixel units)


def structure(kind: str, rng, field: float):
    """Sampler of true molecule positions (nm)."""
    if kind == "filaments":
        lines = []
        for _ in range(14):
            a = rng.uniform(0, np.pi)
            c = rng.uniform(0.1 * field, 0.9 * field, 2)
            lines.append((c, np.array([np.cos(a), np.sin(a)]), rng.uniform(0.3, 0.8) * field))

        def sample():
            c, d, length = lines[rng.integers(len(lines))]
            return c + d * length * (rng.uniform() - 0.5) + rng.normal(0, 12.5, 2)  # antibody-sized width
        return sample
    centres = rng.uniform(0.05 * field, 0.95 * field, (300, 2))
    radius = rng.uniform(50, 60, len(centres))

    def sample():
        k = rng.integers(len(centres))
        phi = 2 * np.pi * rng.integers(8) / 8
        return centres[k] + radius[k] * np.array([np.cos(phi), np.sin(phi)]) + rng.normal(0, 3, 2)
    return sample


def drift_trajectory(frames: int, rng) -> np.ndarray:
    t = np.arange(frames)
    out = []
    for _ in range(2):
        lin = rng.uniform(-200, 200)
        amp, per, ph = rng.uniform(20, 60), rng.uniform(1500, 4000), rng.uniform(0, 2 * np.pi)
        out.append(lin * t / frames + amp * np.sin(2 * np.pi * t / per + ph))
    d = np.stack(out, 1)
    return d - d[0]


def acquisition(kind: str, frames: int, seed: int, fiducials: int = 0, field: float = 12800.0, per_frame: float = 6.0):
    rng = np.random.default_rng(seed)
    sample = structure(kind, rng, field)
    rows = []
    mol = 0
    starts = rng.poisson(per_frame / 2.0, frames)  # mean on-time 2 frames: per_frame localizations per frame
    for f0 in range(frames):
        for _ in range(starts[f0]):
            p = sample()
            n = max(1, int(np.ceil(rng.exponential(2.0))))
            for f in range(f0, min(frames, f0 + n)):
                photons = rng.lognormal(np.log(2000), 0.4)
                s = 130.0 / np.sqrt(photons)
                rows.append((f, p[0] + rng.normal(0, s), p[1] + rng.normal(0, s), photons, s, mol, p[0], p[1]))
            mol += 1
    for k in range(fiducials):
        p = rng.uniform(0.1 * field, 0.9 * field, 2)
        for f in np.nonzero(rng.uniform(size=frames) < 0.97)[0]:
            rows.append((f, p[0] + rng.normal(0, 2), p[1] + rng.normal(0, 2), 50000.0, 2.0, -1 - k, p[0], p[1]))
    a = np.array(rows)
    a = a[np.argsort(a[:, 0], kind="stable")]
    true = drift_trajectory(frames, rng)
    f = a[:, 0].astype(int)
    table = {"frame": f, "x": a[:, 1] + true[f, 0], "y": a[:, 2] + true[f, 1], "photons": a[:, 3],
             "sigma_x": a[:, 4], "sigma_y": a[:, 4], "prob": np.ones(len(a))}
    truth = {"molecule": a[:, 5].astype(int), "x": a[:, 6], "y": a[:, 7]}
    return table, true, truth, field


def residual(drift_xy: np.ndarray, true: np.ndarray) -> float:
    r = drift_xy - true
    r -= r.mean(0)
    return float(np.sqrt((r ** 2).sum(1).mean()))


def picasso_drift(table: dict, frames: int, field: float, method: str, segment: int):
    import pandas as pd

    locs = pd.DataFrame({"frame": table["frame"].astype(np.uint32), "x": (table["x"] / PX - 0.5).astype(np.float32),
                         "y": (table["y"] / PX - 0.5).astype(np.float32), "photons": table["photons"].astype(np.float32),
                         "sx": np.full(len(table["x"]), 1.3, np.float32), "sy": np.full(len(table["x"]), 1.3, np.float32),
                         "bg": np.full(len(table["x"]), 50, np.float32),
                         "lpx": (table["sigma_x"] / PX).astype(np.float32), "lpy": (table["sigma_y"] / PX).astype(np.float32),
                         "ellipticity": np.zeros(len(table["x"]), np.float32), "net_gradient": np.full(len(table["x"]), 1e4, np.float32)})
    size = int(np.ceil(field / PX)) + 8
    info = [{"Frames": frames, "Width": size, "Height": size, "Pixelsize": PX}]
    if method == "rcc":
        from picasso.postprocess import undrift

        drift, _ = undrift(locs, info, segment, display=False)
    else:
        from picasso.aim import aim

        _, _, drift = aim(locs, info, segmentation=segment, intersect_d=20 / PX, roi_r=60 / PX)
    d = np.stack([np.asarray(drift["x"], float), np.asarray(drift["y"], float)], 1) * PX
    return d[:frames]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one short case (the test suite's smoke run)")
    ap.add_argument("--no-picasso", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--plot", help="PNG of the drift trajectories of the first case")
    args = ap.parse_args()
    cases = [("filaments", 2000, 0)] if args.quick else [
        ("filaments", 5000, 0), ("rings", 5000, 0), ("filaments", 10000, 0), ("rings", 20000, 0), ("filaments", 10000, 4)]
    use_picasso = not args.no_picasso
    if use_picasso:
        try:
            import picasso.aim  # noqa: F401
            import picasso.postprocess  # noqa: F401
        except ImportError:
            print("(picassosr not installed: no Picasso columns; pip install picassosr)")
            use_picasso = False
    print(f"# drift correction — {time.strftime('%Y-%m-%d')}; residual drift RMS [nm] against the truth, time [s]\n")
    print("| structure | frames | localizations | true drift RMS | method | residual RMS nm | FRC nm (drift-free / corrected) | s |")
    print("|---|---|---|---|---|---|---|---|")
    results = []
    for i, (kind, frames, fid) in enumerate(cases):
        table, true, truth, field = acquisition(kind, frames, seed=10 + i, fiducials=fid)
        f = table["frame"]
        clean = dict(table, x=table["x"] - true[f, 0], y=table["y"] - true[f, 1])
        frc_clean = frc(clean, pixel_nm=4.0)["resolution_nm"]
        t_rms = float(np.sqrt(((true - true.mean(0)) ** 2).sum(1).mean()))
        rcc_segment = 1000
        methods = [("ours rcc", "rcc"), ("ours aim", "aim")] + ([("ours fiducials", "fiducials")] if fid else [])
        if use_picasso:
            methods += [("Picasso rcc", "p-rcc"), ("Picasso aim", "p-aim")]
        for label, m in methods:
            t0 = time.perf_counter()
            try:
                if m.startswith("p-"):
                    # RCC with the segments ours chose (Picasso's default of 1,000 frames cannot follow
                    # these drifts), AIM with Picasso's default segments of 100 frames
                    d = picasso_drift(table, frames, field, m[2:], rcc_segment if m == "p-rcc" else 100)
                    drift = {"frame": np.arange(frames), "x": d[:, 0], "y": d[:, 1]}
                else:
                    drift = estimate_drift(table, m)
                    if m == "rcc":
                        rcc_segment = drift["info"]["segment_frames"]
                secs = time.perf_counter() - t0
                d = np.stack([drift["x"], drift["y"]], 1)
                res = residual(d, true[drift["frame"]])
                frc_corr = frc(apply_drift(table, drift), pixel_nm=4.0)["resolution_nm"]
            except Exception as exc:  # noqa: BLE001 - a method that fails is a row, not the end of the run
                secs, res, frc_corr = time.perf_counter() - t0, float("nan"), float("nan")
                label += f" (failed: {str(exc)[:50]})"
                drift = None
            results.append({"structure": kind, "frames": frames, "fiducials": fid, "method": label, "residual_nm": res,
                            "frc_clean_nm": frc_clean, "frc_corrected_nm": frc_corr, "seconds": secs})
            print(f"| {kind}{' + fiducials' if fid else ''} | {frames} | {len(table['x'])} | {t_rms:.0f} | {label} | {res:.1f} | "
                  f"{frc_clean:.1f} / {frc_corr:.1f} | {secs:.1f} |", flush=True)
            if args.plot and i == 0 and drift is not None:
                results[-1]["trajectory"] = {"x": np.asarray(drift["x"]).tolist(), "y": np.asarray(drift["y"]).tolist()}
        if args.plot and i == 0:
            _plot(args.plot, true, [r for r in results if "trajectory" in r])
    # Merging: RMSE of merged molecules against the truth, by the number of frames merged.
    table, true, truth, _ = acquisition("filaments", 3000 if args.quick else 5000, seed=99)
    f = table["frame"]
    table = dict(table, x=table["x"] - true[f, 0], y=table["y"] - true[f, 1])  # merging is about precision, not drift
    print("\n| merged frames N | molecules | RMSE single localizations nm | RMSE merged nm | ratio | √N |")
    print("|---|---|---|---|---|---|")
    table["molecule"] = truth["molecule"]
    merged = merge_localizations(table, max_gap=0)
    tx, ty = truth["x"], truth["y"]
    single = np.sqrt(np.mean((table["x"] - tx) ** 2 + (table["y"] - ty) ** 2) / 2)
    first_row = {m: i for i, m in reversed(list(enumerate(truth["molecule"])))}
    mx = np.array([tx[first_row[m]] for m in merged["molecule"]])
    my = np.array([ty[first_row[m]] for m in merged["molecule"]])
    for n in (1, 2, 3, 4, 6):
        sel = merged["n_frames"] == n if n < 6 else merged["n_frames"] >= n
        if sel.sum() < 20:
            continue
        rmse = np.sqrt(np.mean((merged["x"][sel] - mx[sel]) ** 2 + (merged["y"][sel] - my[sel]) ** 2) / 2)
        results.append({"merged_frames": n, "molecules": int(sel.sum()), "rmse_single": single, "rmse_merged": rmse})
        print(f"| {n}{'+' if n == 6 else ''} | {sel.sum()} | {single:.1f} | {rmse:.1f} | {single / rmse:.2f} | {np.sqrt(n):.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)


def _plot(path: str, true: np.ndarray, rows: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for k, ax in enumerate(axes):
        ax.plot(true[:, k] - true[:, k].mean(), "k", lw=2, label="true")
        for r in rows:
            v = np.asarray(r["trajectory"]["xy"[k]])
            ax.plot(v - v.mean(), lw=1, label=r["method"])
        ax.set_ylabel(f"drift {'xy'[k]} [nm]")
    axes[0].legend(fontsize=8, ncol=3)
    axes[1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
