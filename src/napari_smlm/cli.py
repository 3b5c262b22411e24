"""Command line: ``napari-smlm simulate|train|localize|evaluate|render|demo``.

Every command validates its inputs before long work, prints progress, and exits
non-zero with one clear message on bad input (``--debug`` for the traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

CONFIG_DIR = Path(__file__).parent / "configs"


def _config_path(name: str) -> Path:
    """A config file path, or the name of a shipped config (``smoke``, ``default_2d`` ...)."""
    p = Path(name)
    if p.is_file() or p.suffix in (".yaml", ".yml"):
        return p
    shipped = CONFIG_DIR / f"{name}.yaml"
    return shipped if shipped.is_file() else p


def cmd_simulate(args) -> int:
    from .core.config import load_config
    from .core.io import write_localizations_csv, write_movie
    from .core.simulation import Simulator
    from .core.utils import WriteError, atomic_write_group, check_writable

    cfg = load_config(_config_path(args.config) if args.config else None, args.set)
    if args.frames < 1:
        raise ValueError(f"--frames: expected a positive number of frames, got {args.frames}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise WriteError(f"--out {out}: is a file; expected a folder (movie.tif and emitters.csv go into it)")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("movie.tif", "emitters.csv"):
        check_writable(out / name, "--out")
    sim = Simulator(cfg.simulation, "cpu", seed=args.seed)
    t0 = time.time()
    chunks, table, bg = sim.simulate_movie(args.frames)
    done = [0]

    def progress():
        for chunk in chunks:
            done[0] += chunk.shape[0]
            print(f"\r  simulated {done[0]}/{args.frames} frames", end="", flush=True)
            yield chunk.numpy()

    px = cfg.simulation.pixel_size_nm
    rows = table.x_px.floor().long().clamp(0, sim.width - 1), table.y_px.floor().long().clamp(0, sim.height - 1)
    gt = {
        "frame": table.frame.numpy().astype(np.int64),
        "x": (table.x_px * px).numpy().astype(float),
        "y": (table.y_px * px).numpy().astype(float),
        "z": table.z_nm.numpy().astype(float),
        "photons": table.photons.numpy().astype(float),
        "bg": bg[rows[1], rows[0]].numpy().astype(float),
        "prob": np.ones(len(table)),
    }
    order = np.lexsort((gt["x"], gt["frame"]))
    # Movie and truth are one group: a failure between them never pairs a new movie with old truth.
    atomic_write_group({
        out / "movie.tif": lambda tmp: write_movie(progress(), tmp, (args.frames, sim.height, sim.width), pixel_size_nm=px),
        out / "emitters.csv": lambda tmp: write_localizations_csv({k: v[order] for k, v in gt.items()}, tmp),
    })
    print()
    print(
        f"wrote {out / 'movie.tif'} ({args.frames} frames of {sim.height}x{sim.width} px, uint16 ADU) and "
        f"{out / 'emitters.csv'} ({len(table)} emitter-frames, {len(table) / args.frames:.1f} per frame) "
        f"in {time.time() - t0:.1f} s"
    )
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop, say where the last good checkpoint is."""


def _raise_terminated(signum, frame):
    raise Terminated()


def cmd_train(args) -> int:
    import signal

    from .core.config import load_config
    from .core.training import PrintProgress, Trainer
    from .core.utils import WriteError

    overrides = list(args.set or [])
    if args.out:
        overrides.append(f"output.run_dir={args.out}")
    if args.init_weights:
        overrides.append(f"training.init_weights={args.init_weights}")
    if args.max_minutes is not None:
        overrides.append(f"training.max_minutes={_number(args.max_minutes, '--max-minutes')}")
    cfg = load_config(_config_path(args.config), overrides)
    if args.psf:
        from .core.calibration import use_calibration

        chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("simulation.psf.kind=")]
        print(use_calibration(cfg, args.psf, kind=chosen[-1] if chosen else None))
    if args.debug:
        import torch

        torch.autograd.set_detect_anomaly(True)
    if args.dry_run:
        trainer = Trainer(cfg, progress=None, write_files=False)
        info = trainer.dry_run()
        terms = ", ".join(f"{k}={v:.4g}" for k, v in info["loss_terms"].items())
        print(f"config OK: {cfg.model.architecture} with {info['parameters']:,} parameters on {trainer.device}")
        print(f"one batch {info['batch_shape']} forward and backward: loss={info['loss']:.4g} ({terms})")
        return 0
    trainer = Trainer(cfg, resume=args.resume, progress=PrintProgress(every=args.print_every), overwrite=args.overwrite)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        trainer.fit()
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\n{what}; {trainer.last_good_checkpoint()}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except WriteError as exc:
        raise WriteError(f"{exc}; {trainer.last_good_checkpoint()}") from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
        trainer.close()
    return 0


def _camera_from_args(args):
    """Camera from --camera YAML, from flags, --estimate-camera, or (none given) estimated.
    Flags and YAML go through the one camera validator of core.config."""
    from .core.camera import Camera
    from .core.config import camera_config, load_camera_config

    flags = {k: getattr(args, k) for k in ("baseline", "e_per_adu", "em_gain", "qe") if getattr(args, k) is not None}
    if args.camera and (flags or args.camera_kind):
        raise ValueError("give the camera either as --camera YAML or as flags (--baseline ...), not both")
    if args.camera and args.photons:
        raise ValueError("--photons says the movie needs no camera conversion; leave out --camera")
    if args.camera:
        return Camera.from_config(load_camera_config(args.camera))
    if args.photons:
        return None
    if args.camera_kind:
        flags["kind"] = args.camera_kind
    # Every flag is checked the same way in every mode (also with --estimate-camera).
    camera_config(flags, required=False, flags=True)
    if flags and not args.estimate_camera and set(flags) - {"kind"}:
        missing = [f"--{k.replace('_', '-')}" for k in ("baseline", "e_per_adu") if k not in flags]
        if missing:
            raise ValueError(f"camera flags: {', '.join(missing)} needed too (or use --estimate-camera)")
        flags.setdefault("kind", "emccd" if flags.get("em_gain", 1.0) > 1 else "scmos")
        if flags["kind"] == "emccd":
            flags.setdefault("em_gain", 1.0)
        return Camera.from_config(camera_config(flags, required=True, flags=True))
    return "estimate"


def describe_camera(camera) -> str:
    if camera is None:
        return "none (the movie is already in photons)"
    gain = f", EM gain {camera.em_gain:g}" if camera.kind == "emccd" else ""
    return (f"{camera.kind}, baseline {camera.baseline:g} ADU, {camera.e_per_adu:g} e-/ADU{gain}, QE {camera.qe:g}")


def _number(value, name: str, low: float = 0.0, high: float = float("inf"), low_ok: bool = False):
    """A finite number in (low, high] (or [low, high] with low_ok) from a flag, or None."""
    import math

    if value is None:
        return None
    ok = math.isfinite(value) and (value >= low if low_ok else value > low) and value <= high
    if not ok:
        rng = f"{'>=' if low_ok else '>'} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise ValueError(f"{name}: expected a finite number {rng}, got {value}")
    return value


def _frame_range(text: str, n_frames: int) -> tuple[int, int]:
    """--frames FIRST:LAST (1-based, inclusive; either side may be left out) -> 0-based [start, stop)."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        first = int(parts[0]) if parts[0].strip() else 1
        last = int(parts[1]) if parts[1].strip() else n_frames
    except ValueError:
        raise ValueError(f"--frames {text}: expected FIRST:LAST, 1-based and inclusive, e.g. --frames 1:100") from None
    if first < 1:
        raise ValueError(f"--frames {text}: frames are numbered from 1")
    if first > last:
        raise ValueError(f"--frames {text}: the first frame ({first}) is after the last ({last})")
    if last > n_frames:
        raise ValueError(f"--frames {text}: the movie has only {n_frames} frames")
    return first - 1, last


def _same_file(a, b) -> bool:
    import os

    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def cmd_localize(args) -> int:
    from .core.inference import LocalizationModel
    from .core.io import open_movie, write_table
    from .core.io.tables import TableError, TableWriter, check_picasso_sidecar
    from .core.localize import check_movie, localize
    from .core.utils import check_writable, duration

    # Outputs first: a wrong --out is found now, not after the network pass.
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".h5", ".hdf5"):
        raise TableError(f"--out {out}: expected a .csv, .h5 or .hdf5 file name")
    check_writable(out, "--out")
    inputs = [args.movie] + ([args.camera] if args.camera else []) + ([args.model] if Path(args.model).exists() else [])
    for given in inputs:
        if _same_file(out, given):
            raise TableError(f"--out {out}: is an input of this run ({given}); choose another output name")
    if out.suffix.lower() != ".csv":
        sidecar = out.with_suffix(".yaml")
        if args.camera and _same_file(sidecar, args.camera):
            raise TableError(f"--out {out}: its Picasso sidecar {sidecar} is the --camera file; choose another output name")
        check_picasso_sidecar(out)
    batch = args.batch_size if args.batch_size == "auto" else _positive_int(args.batch_size, "--batch-size")
    pixel_size = _number(args.pixel_size, "--pixel-size")
    threshold = _number(args.threshold, "--threshold", high=1.0)
    if args.merge_gap < 0:
        raise ValueError(f"--merge-gap: expected 0 or more frames, got {args.merge_gap}")
    nms_radius = _number(args.nms_radius_nm, "--nms-radius-nm", low_ok=True)
    max_memory = _number(args.max_memory_gb, "--max-memory-gb")
    camera = _camera_from_args(args)
    estimate_kwargs = {"kind": args.camera_kind, "baseline": args.baseline, "qe": args.qe or 1.0}
    if args.em_gain is not None:
        estimate_kwargs["em_gain"] = args.em_gain

    # The movie next (seconds before the model is loaded).
    movie = open_movie(args.movie, allow_truncated=args.allow_truncated, channel=_channel_index(args.channel))
    shape = check_movie(movie, str(args.movie))
    if movie.truncated:
        print(f"warning: {movie.truncated}", file=sys.stderr)
    if movie.channels > 1:
        print(f"channel {args.channel} of {movie.channels}: {shape[0]} frames of {shape[1]}x{shape[2]}")
    frame_range = _frame_range(args.frames, shape[0]) if args.frames else None
    if camera != "estimate":
        print(f"camera: {describe_camera(camera)}")

    model = LocalizationModel.load(args.model)
    print(f"model: {model.describe()}")
    t_start = time.time()
    last = [0.0]

    def progress(done, total):
        now = time.time()
        if now - last[0] > 0.5 or done == total:
            last[0] = now
            rate = done / max(now - t_start, 1e-9)
            left = f", {duration((total - done) / rate)} left" if 0 < done < total else ""
            print(f"\r  {done}/{total} frames ({rate:.0f} frames/s{left})  ", end="", flush=True)

    kwargs = dict(
        model=model, camera=camera, pixel_size_nm=pixel_size, threshold=threshold, device=args.device,
        batch_size=batch, max_memory_gb=max_memory, frame_range=frame_range, nms_radius_nm=nms_radius,
        progress=progress, log=print, estimate_kwargs=estimate_kwargs, precision=args.precision,
        threads=args.threads, skip_empty=not args.whole_frames,
    )
    from .core.io.metadata import read_movie_metadata

    # the opened movie (a channel, the complete frames of a truncated file), with what its file states
    kwargs["metadata"] = read_movie_metadata(args.movie, channel=movie.channel)
    if args.merge:  # merging links rows across frames: it needs the whole table
        result = localize(movie, **kwargs)
        print()
        table = result.table()
        result.candidates = {}  # the command writes only what passes the threshold: free the rest
        n_localized = len(table["frame"])
        from .core.analysis.merge import merge_localizations

        table = merge_localizations(table, max_gap=args.merge_gap)
        tic = time.time()
        write_table(table, out, pixel_size_nm=result.pixel_size_nm, movie_shape=result.movie_shape)
        result.timings["write"] = time.time() - tic
    else:
        # Streamed: each batch's rows are written as they come (to a temporary file,
        # renamed when the movie is done), so memory does not grow with the movie.
        with TableWriter(out) as writer:
            result = localize(movie, sink=writer, **kwargs)
            print()
            tic = time.time()
        result.timings["write"] += time.time() - tic  # the last rows and the rename, when the block ends
        n_localized = writer.rows
    n_frames = (frame_range[1] - frame_range[0]) if frame_range else result.movie_shape[0]
    total = time.time() - t_start
    t = result.timings
    print(f"localized {n_localized} molecules in {n_frames} frames ({n_localized / n_frames:.2f} per frame) "
          f"at threshold {result.threshold:g}; {n_frames / total:.0f} frames/s "
          f"(read {t.get('read', 0):.1f} s, network {t.get('network', 0):.1f} s, post-processing {t.get('postprocess', 0):.1f} s, "
          f"write {t['write']:.1f} s, batch size {t.get('batch_size')})")
    if result.network_share is not None:
        print(f"the network ran on {result.network_share:.0%} of the pixels: the box holding the molecules "
              f"(--whole-frames to run it everywhere)")
    if args.merge:
        print(f"merged them into {len(table['frame'])} localizations "
              f"({n_localized / max(len(table['frame']), 1):.2f} frames per molecule, gap {args.merge_gap})")
    if movie.truncated:
        print(f"note: {movie.truncated}")
    print(f"wrote {out}" + (f" and {out.with_suffix('.yaml')}" if out.suffix.lower() != ".csv" else ""))
    return 0


def _positive_int(value, name):
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive integer or 'auto', got {value!r}") from None
    if v < 1:
        raise ValueError(f"{name}: expected a positive integer or 'auto', got {value!r}")
    return v


def _channel_index(channel):
    """--channel (1-based) as the 0-based index open_movie takes, or None."""
    if channel is not None and channel < 1:
        raise ValueError(f"--channel: expected 1 or more (channels count from 1), got {channel}")
    return None if channel is None else channel - 1


def cmd_camera(args) -> int:
    """What the movie's file states about its camera, and the estimate from its noise,
    before any localizing; ``--out`` writes it as a camera YAML to check and correct."""
    from .core.camera import camera_for_movie, check_camera_yaml_target, describe_estimate, write_camera_yaml
    from .core.config import camera_config
    from .core.io import open_movie
    from .core.io.metadata import read_movie_metadata
    from .core.localize import check_movie

    if args.out:
        if Path(args.out).resolve() == Path(args.movie).resolve():
            raise ValueError(f"--out {args.out}: is the movie itself")
        check_camera_yaml_target(args.out)  # before the estimate: never a file we did not write
    channel_index = _channel_index(args.channel)
    given = {"kind": args.camera_kind, "baseline": args.baseline, "em_gain": args.em_gain, "qe": args.qe}
    camera_config({k: v for k, v in given.items() if v is not None}, required=False, flags=True)
    movie = open_movie(args.movie, channel=channel_index)
    shape = check_movie(movie, str(args.movie))
    metadata = read_movie_metadata(args.movie, channel=movie.channel)
    channel = f", channel {movie.channel + 1} of {movie.channels}" if movie.channels > 1 else ""
    print(f"{args.movie}: {shape[0]} frames of {shape[1]}x{shape[2]}{channel}")
    stated = {k: v for k, v in metadata.items() if k != "source"}
    print("the file states: " + (", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in stated.items()) + f" ({metadata['source']})"
                                 if stated else "nothing about its camera or pixel size"))
    camera, report = camera_for_movie(movie, metadata, **given)
    print(f"camera: {describe_estimate(report)}")
    print(f"  {report['source']}; {camera.e_per_adu:.4g} e-/ADU at EM gain {camera.em_gain:g}" if camera.kind == "emccd"
          else f"  {report['source']}; {camera.e_per_adu:.4g} e-/ADU")
    if args.out:
        write_camera_yaml(args.out, camera, report, Path(args.movie).name + channel)
        print(f"wrote {args.out} (check it, then: napari-smlm localize {args.movie} --camera {args.out} ...)")
    return 0


def cmd_evaluate(args) -> int:
    import json

    from .core.evaluation import evaluate, save_plots
    from .core.io import read_table
    from .core.utils import WriteError, atomic_write, check_writable

    if args.json:
        check_writable(args.json, "--json")
    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():
        raise WriteError(f"--plots {args.plots}: is a file; expected a folder")
    tolerance = _number(args.tolerance_nm, "--tolerance-nm")
    tolerance_z = None if args.tolerance_z_nm is None else _number(args.tolerance_z_nm, "--tolerance-z-nm")
    z_bin = _number(args.z_bin_nm, "--z-bin-nm")
    pred_cols, gt_cols = {}, {}
    pred = read_table(args.locs, pixel_size_nm=args.pixel_size, columns=pred_cols)
    gt = read_table(args.gt, pixel_size_nm=args.pixel_size, first_frame=args.gt_first_frame, columns=gt_cols)
    for name, cols in ((args.gt, gt_cols), (args.locs, pred_cols)):
        if cols and (cols is gt_cols or any(h.lower() not in _OUR_HEADERS for h in cols.values())):
            print(f"{name}: columns used: " + ", ".join(f"{k} <- {h!r}" for k, h in cols.items()))
    if args.threshold is not None:
        keep = pred["prob"] >= args.threshold
        pred = {k: v[keep] for k, v in pred.items()}
    from .core.evaluation import EvaluationError

    try:
        metrics, m = evaluate(pred, gt, tolerance, tolerance_z, frame_check=not args.no_frame_check,
                              unit_check=not args.no_unit_check, z_bin_nm=z_bin)
    except EvaluationError as exc:
        text = str(exc).replace("localizations", str(args.locs), 1).replace("ground truth", str(args.gt), 1)
        raise EvaluationError(text) from None
    rows = [
        ("predictions / ground truth", f"{int(metrics['n_pred'])} / {int(metrics['n_gt'])}"),
        ("TP / FP / FN", f"{int(metrics['tp'])} / {int(metrics['fp'])} / {int(metrics['fn'])}"),
        ("precision", f"{metrics['precision']:.4f}"), ("recall", f"{metrics['recall']:.4f}"),
        ("F1", f"{metrics['f1']:.4f}"), ("Jaccard", f"{metrics['jaccard']:.4f}"),
        ("RMSE lateral / axial / volumetric [nm]", f"{metrics['rmse_lat']:.2f} / {metrics['rmse_ax']:.2f} / {metrics['rmse_vol']:.2f}"),
        ("efficiency lateral / axial / 3D [%]",
         f"{metrics['efficiency_lat']:.2f} / {metrics['efficiency_ax']:.2f} / {metrics['efficiency_3d']:.2f}"),
        ("bias x / y / z [nm]", f"{metrics['bias_x']:.2f} / {metrics['bias_y']:.2f} / {metrics['bias_z']:.2f}"),
        ("photons: median relative error / RMSE", f"{metrics['photon_rel_error_median']:.4f} / {metrics['photon_rmse']:.1f}"),
        ("average precision", f"{metrics['average_precision']:.4f}"),
    ]
    width = max(len(r[0]) for r in rows)
    axial = (f"{metrics['tolerance_z_nm']:g} nm axial" if np.isfinite(metrics["tolerance_z_nm"])
             else "no axial limit")
    print(f"tolerance {tolerance:g} nm lateral, {axial} "
          f"({'3D' if metrics['is_3d'] else '2D'} ground truth: its z {'varies' if metrics['is_3d'] else 'is constant'})")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    if metrics["by_z"]:
        print(f"errors against the true z ({z_bin:g} nm bins; RMSE and bias in nm):")
        print(f"  {'true z [nm]':>15}  {'GT':>6}  {'recall':>6}  {'RMSE lat':>8}  {'RMSE ax':>8}  {'bias z':>7}")
        for r in metrics["by_z"]:
            print(f"  {r['z_lo']:>7g} – {r['z_hi']:<5g}  {r['n_gt']:>6d}  {r['recall']:>6.3f}  {r['rmse_lat']:>8.1f}  "
                  f"{r['rmse_ax']:>8.1f}  {r['bias_z']:>7.1f}")
    if metrics["scale_hint"]:
        from .core.evaluation.metrics import scale_hint_message

        print(f"warning: {scale_hint_message(metrics['scale_hint'], option='--pixel-size')}", file=sys.stderr)
    if args.json:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2) + "\n"))
        print(f"wrote {args.json}", file=sys.stderr if _is_stream(args.json) else sys.stdout)
    if args.plots:
        for f in save_plots(pred, gt, m, args.plots, z_bin_nm=z_bin):
            print(f"wrote {f}")
    return 0


_OUR_HEADERS = {"frame": "frame", "x [nm]": "x", "y [nm]": "y", "z [nm]": "z", "intensity [photon]": "photons",
                "offset [photon]": "bg", "prob": "prob", "uncertainty_xy [nm]": "uncertainty_xy",
                "uncertainty_z [nm]": "sigma_z", "sigma_x [nm]": "sigma_x", "sigma_y [nm]": "sigma_y",
                "sigma_photons [photon]": "sigma_photons"}


def _is_stream(path) -> bool:
    """stdout, stderr or a pipe: progress lines must not mix into what is written there."""
    import os
    import stat

    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def cmd_render(args) -> int:
    import tifffile

    from .core.io import read_table
    from .core.render import render, render_volume, render_z_color, select_z
    from .core.utils import atomic_write, check_writable

    out = Path(args.out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"--out {out}: expected a .tif file name")
    check_writable(out, "--out")
    if _same_file(out, args.locs):
        raise ValueError(f"--out {out}: is the input table; choose another output name")
    _number(args.pixel_size_nm, "--pixel-size-nm")
    _number(args.sigma_nm, "--sigma-nm")
    z_range = None
    if args.z_range is not None:
        z_range = tuple(float(v) for v in args.z_range)
        if not (np.isfinite(z_range).all() and z_range[0] < z_range[1]):
            raise ValueError(f"--z-range: expected LO < HI in nm, got {args.z_range[0]:g} {args.z_range[1]:g}")
    if args.volume_z_bin is not None:
        _number(args.volume_z_bin, "--volume-z-bin")
        if args.color_by == "z":
            raise ValueError("--color-by z and --volume-z-bin: choose one (a volume is one channel, z is its axis)")
    if args.color_by == "z":
        import matplotlib

        if args.colormap not in matplotlib.colormaps:
            raise ValueError(f"--colormap: {args.colormap!r} is not a matplotlib colour map (e.g. rainbow, turbo)")
    table = read_table(args.locs, pixel_size_nm=args.camera_pixel_size)
    if args.threshold is not None:
        keep = table["prob"] >= args.threshold
        table = {k: v[keep] for k, v in table.items()}
    # the image covers the whole table, slab or not, so slabs of one table overlay
    shape_nm = (float(np.max(table["y"], initial=0.0)) + args.pixel_size_nm,
                float(np.max(table["x"], initial=0.0)) + args.pixel_size_nm)
    n = len(select_z(table, z_range)["x"])
    kw = dict(blur=args.blur, sigma_nm=args.sigma_nm, shape_nm=shape_nm, z_range_nm=z_range)
    res = 1e7 / args.pixel_size_nm  # pixels per cm
    slab = "" if z_range is None else f" with z in [{z_range[0]:g}, {z_range[1]:g}] nm"
    if args.volume_z_bin is not None:
        volume, edges = render_volume(table, args.pixel_size_nm, args.volume_z_bin, **kw)
        # ImageJ hyperstack: Fiji reads the voxel size (nm) and the z origin
        atomic_write(out, lambda tmp: tifffile.imwrite(
            tmp, volume, imagej=True, resolution=(1 / args.pixel_size_nm, 1 / args.pixel_size_nm),
            metadata={"axes": "ZYX", "unit": "nm", "spacing": args.volume_z_bin, "zorigin": float(-edges[0] / args.volume_z_bin)}))
        print(f"rendered {n} localizations{slab} into {volume.shape[0]} z slices of {args.volume_z_bin:g} nm "
              f"({edges[0]:g} to {edges[-1]:g} nm) x {volume.shape[1]}x{volume.shape[2]} pixels of "
              f"{args.pixel_size_nm:g} nm ({args.blur}); wrote {out}")
        return 0
    if args.color_by == "z":
        rgb, limits = render_z_color(table, args.pixel_size_nm, colormap=args.colormap, **kw)
        image = np.round(rgb * 255).astype(np.uint8)
        meta = {"unit": "nm", "spacing_nm": args.pixel_size_nm, "color_by": "z", "colormap": args.colormap,
                "z_limits_nm": list(limits)}
        atomic_write(out, lambda tmp: tifffile.imwrite(tmp, image, photometric="rgb", resolution=(res, res),
                                                       resolutionunit="CENTIMETER", metadata=meta))
        colorbar = out.with_name(out.stem + "_colorbar.png")
        atomic_write(colorbar, lambda tmp: _save_z_colorbar(tmp, args.colormap, limits))
        flat = "" if len(np.unique(table.get("z", [0.0]))) > 1 else " (every z is equal: 2D data, one colour)"
        print(f"rendered {n} localizations{slab} into {image.shape[0]}x{image.shape[1]} RGB pixels of "
              f"{args.pixel_size_nm:g} nm ({args.blur}), coloured by z: {args.colormap} from {limits[0]:.0f} nm "
              f"to {limits[1]:.0f} nm{flat}; wrote {out} and its colour bar {colorbar}")
        return 0
    image = render(table, args.pixel_size_nm, **kw)
    atomic_write(out, lambda tmp: tifffile.imwrite(tmp, image, resolution=(res, res), resolutionunit="CENTIMETER",
                                                   metadata={"unit": "nm", "spacing_nm": args.pixel_size_nm}))
    print(f"rendered {n} localizations{slab} into {image.shape[0]}x{image.shape[1]} pixels of {args.pixel_size_nm:g} nm ({args.blur}); wrote {out}")
    return 0


def _save_z_colorbar(path, colormap: str, limits_nm) -> None:
    """A small PNG colour bar: which colour is which z (nm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 0.9), layout="constrained")
    norm = matplotlib.colors.Normalize(*limits_nm)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=colormap), cax=ax, orientation="horizontal",
                 label="z [nm]")
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def cmd_demo(args) -> int:
    """The main job: simulate a movie with known molecules, localize it with the
    bundled model, score it against the truth, render it."""
    out = Path(args.out or "runs/demo")
    out.mkdir(parents=True, exist_ok=True)
    print(f"napari-smlm demo: simulate -> localize -> evaluate -> render, in {out}/")
    common = ["--set", "simulation.frame_size=[64,64]", "--set", f"simulation.emitters.density_per_um2=[{args.density},{args.density}]",
              "--set", "simulation.emitters.photons=[1000,5000]", "--set", "simulation.emitters.background=[50,50]",
              "--set", "simulation.psf.sigma_nm=[130,130]", "--set", "simulation.emitters.structure=filaments"]
    steps = [
        ["simulate", "--frames", str(args.frames), "--out", str(out), "--seed", "1", *common],
        ["localize", str(out / "movie.tif"), "--model", args.model, "--out", str(out / "localizations.csv"),
         "--baseline", "100", "--e-per-adu", "45", "--em-gain", "100", "--qe", "0.9"],
        ["evaluate", str(out / "localizations.csv"), str(out / "emitters.csv"), "--json", str(out / "metrics.json"),
         "--plots", str(out / "plots")],
        ["render", str(out / "localizations.csv"), "--pixel-size-nm", "10", "--out", str(out / "super_resolution.tif")],
    ]
    for argv in steps:
        print(f"\n$ napari-smlm {' '.join(argv)}")
        sub = build_parser().parse_args(argv)
        sub.debug = args.debug
        code = sub.func(sub)
        if code:
            return code
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-smlm", description="Deep-learning single-molecule localization microscopy.")
    parser.add_argument("--debug", action="store_true", help="print full tracebacks (and use autograd anomaly detection)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("simulate", help="simulate a movie with ground truth", description="Simulate a TIFF movie (uint16 ADU) and its ground-truth emitters CSV.")
    p.add_argument("--config", help="config YAML (or a shipped name: smoke, default_2d, fast_2d, astig_3d, decode_reference); default: built-in defaults")
    p.add_argument("--frames", type=int, default=1000, help="number of frames (default 1000)")
    p.add_argument("--out", required=True, help="output directory: writes movie.tif and emitters.csv")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. simulation.frame_size=[32,32]")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train a localization network", description="Train a network; writes config.yaml, last.pt, best.pt, metrics.csv and tensorboard/ to the run directory.")
    p.add_argument("--config", required=True, help="config YAML (or a shipped name: smoke, default_2d, fast_2d, astig_3d, decode_reference)")
    p.add_argument("--resume", help="checkpoint to continue from (continues at its next epoch)")
    p.add_argument("--init-weights", metavar="MODEL", help="start a new run from these weights (a checkpoint or a bundled model "
                   "name such as 'default'): fine-tune to your microscope; sets training.init_weights")
    p.add_argument("--out", help="run directory (overrides output.run_dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. training.epochs=1 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="validate the config, build everything, run one batch forward and backward, exit")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in the run directory (without it, "
                   "a run directory holding checkpoints is refused: continue it with --resume or choose another --out)")
    p.add_argument("--print-every", type=int, default=25, help="print a running loss every N steps (default 25)")
    p.add_argument("--psf", metavar="PSF.h5", help="3D PSF calibration (napari-smlm calibrate, or a SMAP *_3dcal.mat): "
                   "simulate with it, z over its calibrated range (sets simulation.psf.calibration and the spline PSF; "
                   "--set simulation.psf.kind=astigmatic for its Gaussian fit)")
    p.add_argument("--max-minutes", type=float, help="time box: stop cleanly (last.pt, best.pt) after this many minutes "
                   "of training; --resume continues (sets training.max_minutes)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("localize", help="localize molecules in a movie", description="Run a network over a TIFF movie and write the localization table (CSV in ThunderSTORM style, or Picasso HDF5 + YAML).")
    p.add_argument("movie", help="TIFF stack (multi-page, BigTIFF, OME-TIFF) or a folder of single-frame TIFFs")
    p.add_argument("--model", default="default",
                   help="'default' (the bundled model), 'fast' (the bundled fast preset: several times quicker, "
                        "a little less accurate) or a checkpoint .pt")
    p.add_argument("--out", required=True, help="output table: .csv or .h5/.hdf5")
    cam = p.add_argument_group("camera (default: estimated from the movie)")
    cam.add_argument("--camera", help="camera YAML (keys of simulation.camera)")
    cam.add_argument("--baseline", type=float, help="camera baseline / offset [ADU]")
    cam.add_argument("--e-per-adu", type=float, help="electrons per ADU (conversion factor)")
    cam.add_argument("--em-gain", type=float, help="EM gain (EMCCD)")
    cam.add_argument("--qe", type=float, help="quantum efficiency (0-1)")
    cam.add_argument("--camera-kind", choices=("emccd", "scmos", "ideal"), help="camera type (default: emccd if --em-gain > 1)")
    cam.add_argument("--estimate-camera", action="store_true", help="estimate kind, baseline and gain from the movie's background noise (the default when no camera is given)")
    cam.add_argument("--photons", action="store_true", help="the movie is already in photons (no camera conversion)")
    p.add_argument("--pixel-size", type=float, help="camera pixel size [nm] (default: the model's)")
    p.add_argument("--threshold", type=float, help="detection probability threshold (default: the model's own: "
                   "0.4 for the bundled model, 0.2 for fast, 0.5 for a checkpoint that states none)")
    p.add_argument("--frames", help="frame range FIRST:LAST, 1-based inclusive (default: all)")
    p.add_argument("--channel", type=int, help="the channel to localize, 1-based, in a TIFF with channels "
                   "(ImageJ or OME axes such as TCYX)")
    p.add_argument("--allow-truncated", action="store_true", help="localize the complete frames of a truncated TIFF "
                   "(without it, a truncated file is an error naming its last readable frame)")
    p.add_argument("--nms-radius-nm", type=float, help="non-maximum suppression radius [nm] (default: half a pixel)")
    p.add_argument("--merge", action="store_true",
                   help="merge a molecule's localizations in consecutive frames into one (photons summed, position "
                        "uncertainty-weighted; as `napari-smlm merge`), adding an n_frames column")
    p.add_argument("--merge-gap", type=int, default=1,
                   help="with --merge: frames a molecule may be missed in between (default 1)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="network arithmetic: auto (fp16 on CUDA; bf16 on CPUs with AVX-512 BF16 or AMX, else fp32), "
                        "fp32, bf16, fp16 (CUDA); see docs/benchmarks/precision.md")
    p.add_argument("--threads", type=int, help="CPU threads (default: the cores other work leaves free)")
    p.add_argument("--whole-frames", action="store_true",
                   help="run the network on every pixel (default: where bright molecules map a structure, a cell "
                        "that does not fill the field, only on its box with a 32-pixel margin)")
    p.add_argument("--batch-size", default="auto", help="frame windows per batch, or 'auto' (default)")
    p.add_argument("--max-memory-gb", type=float, help="memory budget for batch size auto (default: half the free memory)")
    p.set_defaults(func=cmd_localize)

    p = sub.add_parser("camera", help="the movie's camera: what its file states, and the estimate from its noise",
                       description="Before localizing: what the TIFF's metadata states about the camera, and the "
                                   "camera estimated from the movie's background noise, with its uncertainty "
                                   "(docs/camera.md); --out writes it as a camera YAML for localize --camera, to "
                                   "check and correct first.")
    p.add_argument("movie", help="TIFF stack or a folder of single-frame TIFFs")
    p.add_argument("--out", help="write the camera as YAML (the keys localize --camera reads)")
    p.add_argument("--channel", type=int, help="the channel, 1-based, in a TIFF with channels")
    p.add_argument("--camera-kind", choices=("emccd", "scmos"), help="the kind, where you know it")
    p.add_argument("--baseline", type=float, help="the baseline [ADU], where you know it")
    p.add_argument("--em-gain", type=float, help="the EM gain (EMCCD), where you know it")
    p.add_argument("--qe", type=float, help="quantum efficiency (0-1), where you know it")
    p.set_defaults(func=cmd_camera)

    p = sub.add_parser("evaluate", help="compare localizations with ground truth", description="Per-frame optimal matching within the tolerances; precision, recall, F1, Jaccard, RMSE, efficiency, bias, photon error, average precision; for 3D ground truth also axial RMSE and bias, 3D efficiency (SMLM Challenge 2016) and the errors against the true z.")
    p.add_argument("locs", help="localizations (.csv or Picasso .h5)")
    p.add_argument("gt", help="ground truth (our CSV, ThunderSTORM CSV, SMLM-challenge CSV, Picasso .h5, or HDF5 training layout)")
    p.add_argument("--tolerance-nm", type=float, default=250.0, help="lateral matching tolerance [nm] (default 250)")
    p.add_argument("--tolerance-z-nm", type=float,
                   help="axial matching tolerance [nm] (default 500 where the ground truth's z varies; "
                        "none for 2D ground truth)")
    p.add_argument("--z-bin-nm", type=float, default=100.0,
                   help="bin width [nm] of the errors against the true z (3D ground truth; default 100)")
    p.add_argument("--threshold", type=float, help="keep only localizations with prob >= this")
    p.add_argument("--pixel-size", type=float, help="camera pixel size [nm] for Picasso files without it in their .yaml")
    p.add_argument("--gt-first-frame", type=int, choices=(0, 1), default=1,
                   help="number of the first frame in a ground-truth CSV "
                        "(default 1, as ThunderSTORM; 0 for tables counting from 0)")
    p.add_argument("--no-frame-check", action="store_true",
                   help="score as numbered even when the frames look one apart (a ±1 shift matches clearly better)")
    p.add_argument("--no-unit-check", action="store_true",
                   help="compare even when the tables' extents are more than 5x apart (µm or pixels under an nm header?)")
    p.add_argument("--json", help="write the metrics as JSON here (a file, or /dev/stdout)")
    p.add_argument("--plots", help="write PR curve, error histograms and, for 3D ground truth, errors against z "
                                   "(PNG) into this folder")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("render", help="render a super-resolution image",
                       description="Render localizations into a super-resolution TIFF: density (float32), coloured by "
                                   "z (8-bit RGB, with a colour bar PNG) or a z stack (float32, ImageJ hyperstack).")
    p.add_argument("locs", help="localizations (.csv or Picasso .h5)")
    p.add_argument("--pixel-size-nm", type=float, default=10.0, help="render pixel size [nm] (default 10)")
    p.add_argument("--out", required=True, help="output .tif")
    p.add_argument("--blur", choices=("gaussian", "histogram"), default="gaussian", help="gaussian: blur each localization by its uncertainty (default); histogram: counts")
    p.add_argument("--sigma-nm", type=float, help="fixed blur σ [nm] instead of each localization's uncertainty")
    p.add_argument("--threshold", type=float, help="keep only localizations with prob >= this")
    p.add_argument("--camera-pixel-size", type=float, help="camera pixel size [nm] for Picasso files without it in their .yaml")
    p.add_argument("--color-by", choices=("density", "z"), default="density",
                   help="density: one channel (default); z: each localization coloured by its z, an RGB TIFF "
                        "and OUT_colorbar.png")
    p.add_argument("--colormap", default="rainbow", help="matplotlib colour map for --color-by z (default rainbow)")
    p.add_argument("--z-range", nargs=2, type=float, metavar=("LO", "HI"),
                   help="only localizations with LO <= z <= HI [nm] (a z slab); with --color-by z also the colour "
                        "scale's range (default: the data's z range)")
    p.add_argument("--volume-z-bin", type=float, metavar="NM",
                   help="render a z stack instead: slices of NM nm in z (Z, rows, cols), for a 3D view")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("demo", help="simulate a movie, localize it, evaluate and render (about a minute on a CPU)",
                       description="Simulate an EMCCD movie with known molecules, localize it with the bundled model, "
                                   "score it against the truth and render a super-resolution image.")
    p.add_argument("--out", help="output folder (default runs/demo)")
    p.add_argument("--frames", type=int, default=500, help="frames to simulate (default 500)")
    p.add_argument("--density", type=float, default=0.3, help="molecules per um^2 per frame (default 0.3)")
    p.add_argument("--model", default="default",
                   help="model to localize with: 'default' (the bundled model), 'fast' or a checkpoint .pt")
    p.set_defaults(func=cmd_demo)

    from .cli_analysis import add_parsers  # drift, merge, resolution
    from .cli_calibrate import add_parsers as add_calibrate

    add_parsers(sub)
    add_calibrate(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not getattr(args, "debug", False):
        args.debug = "--debug" in (argv if argv is not None else sys.argv)
    import signal

    previous = signal.signal(signal.SIGTERM, _raise_terminated)  # `kill` is told like Ctrl-C
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:  # Ctrl-C outside training: one line, no traceback
        if args.debug:
            raise
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\nnapari-smlm: {what}; no output was written or changed", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # one clear line unless --debug
        if args.debug:
            raise
        from .core.config import ConfigError

        kind = "config error" if isinstance(exc, ConfigError) else "error"
        text = str(exc).strip() or type(exc).__name__
        print(f"napari-smlm: {kind}: {text}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
