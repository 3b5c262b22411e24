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

    cfg = load_config(_config_path(args.config) if args.config else None, args.set)
    if args.frames < 1:
        raise ValueError(f"--frames: expected a positive number of frames, got {args.frames}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulator(cfg.simulation, "cpu", seed=args.seed)
    t0 = time.time()
    chunks, table, bg = sim.simulate_movie(args.frames)
    done = [0]

    def progress():
        for chunk in chunks:
            done[0] += chunk.shape[0]
            print(f"\r  simulated {done[0]}/{args.frames} frames", end="", flush=True)
            yield chunk.numpy()

    write_movie(progress(), out / "movie.tif", (args.frames, sim.height, sim.width))
    print()
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
    write_localizations_csv({k: v[order] for k, v in gt.items()}, out / "emitters.csv")
    print(
        f"wrote {out / 'movie.tif'} ({args.frames} frames of {sim.height}x{sim.width} px, uint16 ADU) and "
        f"{out / 'emitters.csv'} ({len(table)} emitter-frames, {len(table) / args.frames:.1f} per frame) "
        f"in {time.time() - t0:.1f} s"
    )
    return 0


def cmd_train(args) -> int:
    from .core.config import load_config
    from .core.training import PrintProgress, Trainer

    overrides = list(args.set or [])
    if args.out:
        overrides.append(f"output.run_dir={args.out}")
    if args.init_weights:
        overrides.append(f"training.init_weights={args.init_weights}")
    cfg = load_config(_config_path(args.config), overrides)
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
    trainer = Trainer(cfg, resume=args.resume, progress=PrintProgress(every=args.print_every))
    try:
        trainer.fit()
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last complete epoch is in {trainer.run_dir / 'last.pt'}", file=sys.stderr)
        return 130
    finally:
        trainer.close()
    return 0


def _camera_from_args(args):
    """Camera from --camera YAML, from flags, --estimate-camera, or (none given) estimated."""
    from .core.camera import Camera

    flags = {k: getattr(args, k) for k in ("baseline", "e_per_adu", "em_gain", "qe") if getattr(args, k) is not None}
    if args.camera and flags:
        raise ValueError("give the camera either as --camera YAML or as flags (--baseline ...), not both")
    if args.camera:
        return args.camera
    if args.photons:
        return None
    if flags and not args.estimate_camera:
        missing = [f"--{k.replace('_', '-')}" for k in ("baseline", "e_per_adu") if k not in flags]
        if missing:
            raise ValueError(f"camera flags: {', '.join(missing)} needed too (or use --estimate-camera)")
        kind = args.camera_kind or ("emccd" if flags.get("em_gain", 1.0) > 1 else "scmos")
        return Camera(baseline=flags["baseline"], e_per_adu=flags["e_per_adu"], em_gain=flags.get("em_gain", 1.0),
                      qe=flags.get("qe", 1.0), read_noise_e=0.0, kind=kind)
    return "estimate"


def cmd_localize(args) -> int:
    from .core.inference import LocalizationModel
    from .core.io import write_table
    from .core.io.tables import TableError
    from .core.localize import localize

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".h5", ".hdf5"):
        raise TableError(f"--out {out}: expected a .csv, .h5 or .hdf5 file name")
    if not out.parent.exists():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    batch = args.batch_size if args.batch_size == "auto" else _positive_int(args.batch_size, "--batch-size")
    camera = _camera_from_args(args)
    estimate_kwargs = {"kind": args.camera_kind, "baseline": args.baseline, "qe": args.qe}
    if args.em_gain is not None:
        estimate_kwargs["em_gain"] = args.em_gain
    model = LocalizationModel.load(args.model)
    print(f"model: {model.source} ({model.model.architecture}, {model.frame_window}-frame window, "
          f"trained at {model.pixel_size_nm:g} nm pixels)")
    t_start = time.time()
    last = [0.0]

    def progress(done, total):
        now = time.time()
        if now - last[0] > 0.5 or done == total:
            last[0] = now
            rate = done / max(now - t_start, 1e-9)
            print(f"\r  {done}/{total} frames ({rate:.0f} frames/s)", end="", flush=True)

    frame_range = None
    if args.frames:
        a, b = (int(v) for v in args.frames.split(":"))
        frame_range = (a - 1, b)
    result = localize(
        args.movie, model=model, camera=camera, pixel_size_nm=args.pixel_size, threshold=args.threshold,
        device=args.device, batch_size=batch, max_memory_gb=args.max_memory_gb, frame_range=frame_range,
        nms_radius_nm=args.nms_radius_nm, progress=progress, log=print, estimate_kwargs=estimate_kwargs,
    )
    print()
    table = result.table()
    tic = time.time()
    write_table(table, out, pixel_size_nm=result.pixel_size_nm, movie_shape=result.movie_shape)
    result.timings["write"] = time.time() - tic
    n_frames = (frame_range[1] - frame_range[0]) if frame_range else result.movie_shape[0]
    total = time.time() - t_start
    t = result.timings
    print(f"localized {len(table['frame'])} molecules in {n_frames} frames ({len(table['frame']) / n_frames:.2f} per frame) "
          f"at threshold {result.threshold:g}; {n_frames / total:.0f} frames/s "
          f"(read {t.get('read', 0):.1f} s, network {t.get('network', 0):.1f} s, post-processing {t.get('postprocess', 0):.1f} s, "
          f"write {t['write']:.1f} s, batch size {t.get('batch_size')})")
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


def cmd_evaluate(args) -> int:
    import json

    from .core.evaluation import evaluate, save_plots
    from .core.io import read_table
    from .core.utils import atomic_write

    pred = read_table(args.locs, pixel_size_nm=args.pixel_size)
    gt = read_table(args.gt, pixel_size_nm=args.pixel_size)
    if args.threshold is not None:
        keep = pred["prob"] >= args.threshold
        pred = {k: v[keep] for k, v in pred.items()}
    metrics, m = evaluate(pred, gt, args.tolerance_nm, args.tolerance_z_nm)
    rows = [
        ("predictions / ground truth", f"{int(metrics['n_pred'])} / {int(metrics['n_gt'])}"),
        ("TP / FP / FN", f"{int(metrics['tp'])} / {int(metrics['fp'])} / {int(metrics['fn'])}"),
        ("precision", f"{metrics['precision']:.4f}"), ("recall", f"{metrics['recall']:.4f}"),
        ("F1", f"{metrics['f1']:.4f}"), ("Jaccard", f"{metrics['jaccard']:.4f}"),
        ("RMSE lateral / axial / volumetric [nm]", f"{metrics['rmse_lat']:.2f} / {metrics['rmse_ax']:.2f} / {metrics['rmse_vol']:.2f}"),
        ("efficiency lateral / axial / mean [%]", f"{metrics['efficiency_lat']:.2f} / {metrics['efficiency_ax']:.2f} / {metrics['efficiency']:.2f}"),
        ("bias x / y [nm]", f"{metrics['bias_x']:.2f} / {metrics['bias_y']:.2f}"),
        ("photons: median relative error / RMSE", f"{metrics['photon_rel_error_median']:.4f} / {metrics['photon_rmse']:.1f}"),
        ("average precision", f"{metrics['average_precision']:.4f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"tolerance {args.tolerance_nm:g} nm lateral, {args.tolerance_z_nm:g} nm axial")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    if args.json:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2)))
        print(f"wrote {args.json}")
    if args.plots:
        for f in save_plots(pred, gt, m, args.plots):
            print(f"wrote {f}")
    return 0


def cmd_render(args) -> int:
    import tifffile

    from .core.io import read_table
    from .core.render import render
    from .core.utils import atomic_write

    out = Path(args.out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"--out {out}: expected a .tif file name")
    table = read_table(args.locs, pixel_size_nm=args.camera_pixel_size)
    if args.threshold is not None:
        keep = table["prob"] >= args.threshold
        table = {k: v[keep] for k, v in table.items()}
    image = render(table, args.pixel_size_nm, blur=args.blur, sigma_nm=args.sigma_nm)
    res = 1e7 / args.pixel_size_nm  # pixels per cm
    atomic_write(out, lambda tmp: tifffile.imwrite(tmp, image, resolution=(res, res), resolutionunit="CENTIMETER",
                                                   metadata={"unit": "nm", "spacing_nm": args.pixel_size_nm}))
    print(f"rendered {len(table['x'])} localizations into {image.shape[0]}x{image.shape[1]} pixels of {args.pixel_size_nm:g} nm ({args.blur}); wrote {out}")
    return 0


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
    p.add_argument("--config", help="config YAML (or a shipped name: smoke, default_2d, decode_reference); default: built-in defaults")
    p.add_argument("--frames", type=int, default=1000, help="number of frames (default 1000)")
    p.add_argument("--out", required=True, help="output directory: writes movie.tif and emitters.csv")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. simulation.frame_size=[32,32]")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train a localization network", description="Train a network; writes config.yaml, last.pt, best.pt, metrics.csv and tensorboard/ to the run directory.")
    p.add_argument("--config", required=True, help="config YAML (or a shipped name: smoke, default_2d, decode_reference)")
    p.add_argument("--resume", help="checkpoint to continue from (continues at its next epoch)")
    p.add_argument("--init-weights", metavar="MODEL", help="start a new run from these weights (a checkpoint or a bundled model "
                   "name such as 'default'): fine-tune to your microscope; sets training.init_weights")
    p.add_argument("--out", help="run directory (overrides output.run_dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. training.epochs=1 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="validate the config, build everything, run one batch forward and backward, exit")
    p.add_argument("--print-every", type=int, default=25, help="print a running loss every N steps (default 25)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("localize", help="localize molecules in a movie", description="Run a network over a TIFF movie and write the localization table (CSV in ThunderSTORM style, or Picasso HDF5 + YAML).")
    p.add_argument("movie", help="TIFF stack (multi-page, BigTIFF, OME-TIFF) or a folder of single-frame TIFFs")
    p.add_argument("--model", default="default", help="'default' (the bundled model) or a checkpoint .pt")
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
    p.add_argument("--threshold", type=float, help="detection probability threshold (default: the model's, 0.5)")
    p.add_argument("--frames", help="frame range FIRST:LAST, 1-based inclusive (default: all)")
    p.add_argument("--nms-radius-nm", type=float, help="non-maximum suppression radius [nm] (default: half a pixel)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", default="auto", help="frame windows per batch, or 'auto' (default)")
    p.add_argument("--max-memory-gb", type=float, help="memory budget for batch size auto (default: half the free memory)")
    p.set_defaults(func=cmd_localize)

    p = sub.add_parser("evaluate", help="compare localizations with ground truth", description="Per-frame optimal matching within the tolerances; precision, recall, F1, Jaccard, RMSE, efficiency, bias, photon error, average precision.")
    p.add_argument("locs", help="localizations (.csv or Picasso .h5)")
    p.add_argument("gt", help="ground truth (our CSV, ThunderSTORM CSV, SMLM-challenge CSV, Picasso .h5, or HDF5 training layout)")
    p.add_argument("--tolerance-nm", type=float, default=250.0, help="lateral matching tolerance [nm] (default 250)")
    p.add_argument("--tolerance-z-nm", type=float, default=500.0, help="axial matching tolerance [nm] (default 500)")
    p.add_argument("--threshold", type=float, help="keep only localizations with prob >= this")
    p.add_argument("--pixel-size", type=float, help="camera pixel size [nm] for Picasso files without it in their .yaml")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.add_argument("--plots", help="write PR curve and error histograms (PNG) into this folder")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("render", help="render a super-resolution image", description="Render localizations into a super-resolution TIFF (float32).")
    p.add_argument("locs", help="localizations (.csv or Picasso .h5)")
    p.add_argument("--pixel-size-nm", type=float, default=10.0, help="render pixel size [nm] (default 10)")
    p.add_argument("--out", required=True, help="output .tif")
    p.add_argument("--blur", choices=("gaussian", "histogram"), default="gaussian", help="gaussian: blur each localization by its uncertainty (default); histogram: counts")
    p.add_argument("--sigma-nm", type=float, help="fixed blur σ [nm] instead of each localization's uncertainty")
    p.add_argument("--threshold", type=float, help="keep only localizations with prob >= this")
    p.add_argument("--camera-pixel-size", type=float, help="camera pixel size [nm] for Picasso files without it in their .yaml")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("demo", help="simulate a movie, localize it, evaluate and render (about a minute on a CPU)",
                       description="Simulate an EMCCD movie with known molecules, localize it with the bundled model, "
                                   "score it against the truth and render a super-resolution image.")
    p.add_argument("--out", help="output folder (default runs/demo)")
    p.add_argument("--frames", type=int, default=500, help="frames to simulate (default 500)")
    p.add_argument("--density", type=float, default=0.3, help="molecules per um^2 per frame (default 0.3)")
    p.add_argument("--model", default="default", help="model to localize with (default: the bundled model)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not getattr(args, "debug", False):
        args.debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        return args.func(args)
    except Exception as exc:  # one clear line unless --debug
        if args.debug:
            raise
        from .core.config import ConfigError

        kind = "config error" if isinstance(exc, ConfigError) else "error"
        print(f"napari-smlm: {kind}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
