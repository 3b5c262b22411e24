"""Commands after localization: ``drift``, ``merge``, ``resolution`` (registered by cli.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def add_parsers(sub) -> None:
    p = sub.add_parser("drift", help="estimate and correct stage drift",
                       description="Estimate stage drift from the localizations and write a corrected copy of the table "
                                   "(same format, every column kept) and the drift trajectory (OUT_drift.csv: frame, x, y in nm).")
    p.add_argument("locs", help="localization table (.csv or Picasso .h5)")
    p.add_argument("--out", required=True, help="corrected table, same format as the input")
    p.add_argument("--method", default="rcc", choices=("rcc", "fiducials", "aim"),
                   help="rcc: redundant cross-correlation (default); fiducials: markers on through the movie; "
                        "aim: adaptive intersection maximisation (sparse samples)")
    p.add_argument("--segment-frames", type=int, help="frames per segment (rcc, aim; default: chosen from the data)")
    p.add_argument("--markers", metavar="X,Y[;X,Y...]", help="fiducials: the markers' positions in nm (default: found "
                   "automatically)")
    p.add_argument("--pixel-size", type=float, help="camera pixel size [nm] for Picasso files without it in their .yaml")
    p.add_argument("--undo", metavar="DRIFT_CSV", help="add a drift table back instead of estimating one (undo a correction)")
    p.set_defaults(func=cmd_drift)

    p = sub.add_parser("merge", help="merge a molecule's localizations in consecutive frames",
                       description="Localizations within a radius scaled by their uncertainties in frames at most "
                                   "--max-gap apart become one: photons summed, position uncertainty-weighted.")
    p.add_argument("locs", help="localization table (.csv or Picasso .h5)")
    p.add_argument("--out", required=True, help="merged table (.csv or .h5)")
    p.add_argument("--max-gap", type=int, default=1, help="frames a molecule may be missed in between (default 1)")
    p.add_argument("--radius-sigma", type=float, default=3.0, help="link radius in combined uncertainties (default 3)")
    p.add_argument("--radius-nm", type=float, help="a fixed link radius [nm] instead (tables without uncertainties: 50)")
    p.add_argument("--pixel-size", type=float, help="camera pixel size [nm] for Picasso files without it in their .yaml")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("resolution", help="FRC and NeNA resolution of a localization table",
                       description="Fourier ring correlation (1/7 threshold) and NeNA localization precision.")
    p.add_argument("locs", help="localization table (.csv or Picasso .h5)")
    p.add_argument("--frc-pixel-nm", type=float, default=5.0, help="render pixel of the FRC [nm] (default 5)")
    p.add_argument("--pixel-size", type=float, help="camera pixel size [nm] for Picasso files without it in their .yaml")
    p.add_argument("--json", help="write the numbers (and curves) as JSON")
    p.add_argument("--plot", help="PNG with the FRC curve and the NeNA histogram")
    p.set_defaults(func=cmd_resolution)


def _read(args):
    from .core.io import read_table

    return read_table(args.locs, pixel_size_nm=args.pixel_size)


def _check_out(out: Path, locs: str) -> None:
    """--out before any work: writable (the CLI's check_writable), not the input itself."""
    from .cli import _same_file
    from .core.io.tables import TableError
    from .core.utils import check_writable

    check_writable(out, "--out")
    if _same_file(out, locs):
        raise TableError(f"--out {out}: is the input file; write to a new file")


def cmd_drift(args) -> int:
    from .core.analysis import estimate_drift
    from .core.analysis.files import drift_path, read_drift, write_corrected

    out = Path(args.out)
    _check_out(out, args.locs)
    table = _read(args)
    t0 = time.time()
    if args.undo:
        drift = read_drift(args.undo)
        print(f"undoing the drift in {args.undo} ({len(drift['frame'])} frames)")
    else:
        kwargs = {"segment_frames": args.segment_frames} if args.method != "fiducials" and args.segment_frames else {}
        if args.markers:
            if args.method != "fiducials":
                raise ValueError("--markers: marker positions are for --method fiducials")
            try:
                kwargs["markers"] = [[float(v) for v in pair.split(",")] for pair in args.markers.split(";") if pair.strip()]
                if not kwargs["markers"] or any(len(m) != 2 for m in kwargs["markers"]):
                    raise ValueError
            except ValueError:
                raise ValueError(f"--markers {args.markers!r}: expected x,y pairs in nm separated by ';', "
                                 "e.g. 1200,3400;5600,780") from None
        drift = estimate_drift(table, args.method, **kwargs)
        span = {k: float(drift[k].max() - drift[k].min()) for k in ("x", "y", "z") if k in drift}
        info = ", ".join(f"{k} {v}" for k, v in drift.get("info", {}).items())
        in_z = f" and {span['z']:.1f} nm in z" if "z" in span else ""
        print(f"drift ({args.method}; {info}): {span['x']:.1f} nm in x, {span['y']:.1f} nm in y{in_z} over "
              f"{len(drift['frame'])} frames ({time.time() - t0:.1f} s)")
    written = write_corrected(args.locs, out, drift, pixel_size_nm=args.pixel_size, undo=bool(args.undo),
                              info={"Drift method": "undo" if args.undo else args.method})
    print("wrote " + ", ".join(str(p) for p in written))
    if not args.undo:
        print(f"(undo with: napari-smlm drift {out} --undo {drift_path(out)} --out ORIGINAL{out.suffix})")
    return 0


def cmd_merge(args) -> int:
    from .core.analysis.merge import merge_localizations
    from .core.io import write_table
    from .core.io.tables import _picasso_pixel_size

    out = Path(args.out)
    _check_out(out, args.locs)
    table = _read(args)
    merged = merge_localizations(table, max_gap=args.max_gap, radius_sigma=args.radius_sigma, radius_nm=args.radius_nm)
    n_in, n_out = len(table["x"]), len(merged["x"])
    px = args.pixel_size or (_picasso_pixel_size(Path(args.locs)) if Path(args.locs).suffix.lower() != ".csv" else None)
    write_table(merged, out, pixel_size_nm=px or 100.0)
    print(f"merged {n_in} localizations into {n_out} ({n_in / max(n_out, 1):.2f} frames per molecule on average); wrote {out}")
    return 0


def cmd_resolution(args) -> int:
    import numpy as np

    from .core.analysis.resolution import frc, nena

    table = _read(args)
    f = frc(table, pixel_nm=args.frc_pixel_nm)
    if f["below_nyquist"]:
        print(f"FRC resolution: finer than {2 * args.frc_pixel_nm:g} nm (the curve stays above 1/7 up to the render's "
              f"Nyquist limit; use a smaller --frc-pixel-nm)")
    else:
        print(f"FRC resolution: {f['resolution_nm']:.1f} nm (1/7 threshold, {len(table['x'])} localizations, "
              f"halves by blocks of 50 frames)")
    result = {"frc_resolution_nm": f["resolution_nm"], "frc": {"frequency_per_nm": f["frequency"].tolist(),
                                                                 "frc": f["frc"].tolist()}}
    try:
        n = nena(table)
        print(f"NeNA localization precision: {n['sigma_nm']:.1f} ± {n['sigma_err_nm']:.1f} nm ({n['n_pairs']} pairs)")
        result.update(nena_nm=n["sigma_nm"], nena_err_nm=n["sigma_err_nm"])
    except ValueError as exc:
        n = None
        print(f"NeNA: {exc}")
    if args.json:
        from .core.utils import atomic_write

        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1, default=float)))
        print(f"wrote {args.json}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2 if n else 1, figsize=(9 if n else 5, 3.5))
        axes = np.atleast_1d(axes)
        axes[0].plot(f["frequency"], f["frc"])
        axes[0].axhline(f["threshold"], color="grey", ls="--")
        axes[0].set(xlabel="spatial frequency [1/nm]", ylabel="FRC", title=f"FRC: {f['resolution_nm']:.1f} nm")
        if n:
            axes[1].bar(n["distance"], n["density"], width=n["distance"][1] - n["distance"][0], alpha=0.5)
            axes[1].plot(n["distance"], n["fit"], "k")
            axes[1].set(xlabel="distance to next-frame neighbour [nm]", ylabel="density", title=f"NeNA: {n['sigma_nm']:.1f} nm")
        fig.tight_layout()
        from .core.utils import atomic_write

        atomic_write(args.plot, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        print(f"wrote {args.plot}")
    return 0
