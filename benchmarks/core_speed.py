"""Simulator frames/s and training steps/s on this machine.

    python benchmarks/core_speed.py [--device cpu|cuda] [--threads N]

Prints a Markdown table. Targets (issue 2): simulation >= 2,000 frames/s of
64x64 at 1 emitter/um^2 on 2 CPU cores, so that simulation never starves training.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import train_steps_per_second  # noqa: E402

from napari_smlm.core.config import load_config  # noqa: E402
from napari_smlm.core.simulation import Simulator  # noqa: E402
from napari_smlm.core.training import Trainer  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "napari_smlm" / "configs"


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def simulator_rate(device: str, batch: int = 256, repeats: int = 10) -> dict:
    cfg = load_config(None, ["simulation.frame_size=[64,64]", "simulation.emitters.density_per_um2=[1.0,1.0]"])
    sim = Simulator(cfg.simulation, device, seed=0)
    single = _timed(lambda: sim.sample_batch(batch, 1), repeats)
    window = _timed(lambda: sim.sample_batch(batch // 3, 3), repeats)
    return {"frames/s (single frames)": batch / single, "frames/s (3-frame windows)": 3 * (batch // 3) / window}


def training_rate(config: str, device: str, steps: int) -> dict:
    cfg = load_config(CONFIGS / f"{config}.yaml", [f"training.device={device}", "training.validation_size=8"])
    trainer = Trainer(cfg, write_files=False)
    dt = 1 / train_steps_per_second(trainer, steps, warmup=1)  # the late-training loss (gaussian_mm where scheduled)
    return {
        "steps/s": 1 / dt,
        "frames/s": cfg.training.batch_size / dt,
        "batch": f"{cfg.training.batch_size}x{cfg.model.frame_window}x{cfg.simulation.frame_size[0]}x{cfg.simulation.frame_size[1]}",
        "parameters": trainer.parameter_count,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# napari-smlm core speed — {platform.node()} {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, device {args.device}, {args.threads} threads, {time.strftime('%Y-%m-%d')}\n")
    sim = simulator_rate(args.device)
    print("| simulator (64x64, 1 emitter/um², EMCCD) | value |\n|---|---|")
    for k, v in sim.items():
        print(f"| {k} | {v:,.0f} |")
    print("\n| training config | batch | parameters | steps/s | frames/s |\n|---|---|---|---|---|")
    for name in ("smoke", "default_2d", "fast_2d"):
        r = training_rate(name, args.device, args.steps)
        print(f"| {name} | {r['batch']} | {r['parameters']:,} | {r['steps/s']:.2f} | {r['frames/s']:.0f} |")


if __name__ == "__main__":
    main()
