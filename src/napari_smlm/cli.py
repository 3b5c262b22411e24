"""Command line: ``napari-smlm simulate|train|demo``.

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


def cmd_demo(args) -> int:
    """The main job until localization lands: a short training on the smoke config."""
    args.config = str(CONFIG_DIR / "smoke.yaml")
    args.resume = None
    args.dry_run = False
    args.out = args.out or "runs/demo"
    print("napari-smlm demo: a short CPU training of a DECODE-style network on simulated data")
    return cmd_train(args)


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
    p.add_argument("--out", help="run directory (overrides output.run_dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. training.epochs=1 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="validate the config, build everything, run one batch forward and backward, exit")
    p.add_argument("--print-every", type=int, default=25, help="print a running loss every N steps (default 25)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="short demo training on simulated data (CPU, ~2 minutes)", description="Train the smoke config and print progress and validation metrics.")
    p.add_argument("--out", help="run directory (default runs/demo)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--print-every", type=int, default=25, help="print a running loss every N steps")
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
