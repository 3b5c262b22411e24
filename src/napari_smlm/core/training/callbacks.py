"""Trainer callbacks: checkpoints, metrics CSV, TensorBoard, early stopping, progress.

A callback implements any of ``on_train_start / on_epoch_start / on_batch_end /
on_validation_end / on_train_end``; each receives the trainer and a small dict.
Only rank 0 of a distributed run gets the callbacks that write files.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..utils import atomic_write

__all__ = [
    "Callback", "CheckpointCallback", "MetricsCSVCallback", "TensorBoardCallback",
    "EarlyStopping", "ProgressCallback", "PrintProgress",
]


class Callback:
    def on_train_start(self, trainer, info: dict) -> None: ...
    def on_epoch_start(self, trainer, info: dict) -> None: ...
    def on_batch_end(self, trainer, info: dict) -> None: ...
    def on_validation_end(self, trainer, info: dict) -> None: ...
    def on_train_end(self, trainer, info: dict) -> None: ...


class CheckpointCallback(Callback):
    """``last.pt`` after every epoch, ``best.pt`` when the monitored metric improves."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_validation_end(self, trainer, info):
        from .checkpoint import save_checkpoint

        # One group: a full disk leaves last.pt and best.pt both at the previous epoch.
        paths = [self.run_dir / "last.pt"] + ([self.run_dir / "best.pt"] if info.get("improved") else [])
        save_checkpoint(trainer.state(), *paths)
        trainer.saved_epoch = trainer.epoch


class MetricsCSVCallback(Callback):
    """``metrics.csv``: one row per epoch (rewritten whole, atomically, from the history)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.csv"

    def on_validation_end(self, trainer, info):
        rows = trainer.history
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k not in keys]

        def write(tmp):
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)

        atomic_write(self.path, write)


class TensorBoardCallback(Callback):
    """Each loss term, learning rate, gradient norm, validation metrics and a few
    example frames (grey: input; red: true emitters; green: detections)."""

    def __init__(self, run_dir: Path, every_n_batches: int = 10, image_every: int = 1):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        self.every = every_n_batches
        self.image_every = image_every

    def on_batch_end(self, trainer, info):
        if info["step"] % self.every:
            return
        for k, v in info["loss_terms"].items():
            self.writer.add_scalar(f"train/{k}", v, info["step"])
        self.writer.add_scalar("train/loss", info["loss"], info["step"])
        self.writer.add_scalar("train/lr", info["lr"], info["step"])
        self.writer.add_scalar("train/grad_norm", info["grad_norm"], info["step"])

    def on_validation_end(self, trainer, info):
        for k, v in info["metrics"].items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"val/{k}", v, info["epoch"])
        if self.image_every and info["epoch"] % self.image_every == 0 and trainer.example is not None:
            self.writer.add_images("val/examples", example_images(*trainer.example), info["epoch"], dataformats="NHWC")
        self.writer.flush()

    def on_train_end(self, trainer, info):
        self.writer.close()


def example_images(frames: torch.Tensor, batch: dict, pred: dict, n: int = 4) -> np.ndarray:
    """RGB images (N, H, W, 3) in [0, 1]: centre frame, true (red) and detected (green) emitters."""
    k = frames.shape[1] // 2
    imgs = []
    for b in range(min(n, frames.shape[0])):
        f = frames[b, k].float().cpu().numpy()
        f = (f - f.min()) / max(float(f.max() - f.min()), 1e-6)
        rgb = np.stack([f, f, f], -1) * 0.7
        h, w = f.shape
        m = batch["mask"][b].cpu().numpy()
        for x, y in zip(batch["x_px"][b].cpu().numpy()[m], batch["y_px"][b].cpu().numpy()[m]):
            rgb[min(int(y), h - 1), min(int(x), w - 1)] = (1, 0, 0)
        sel = pred["frame"] == b
        for x, y in zip(pred["x_px"][sel], pred["y_px"][sel]):
            r, c = min(int(y), h - 1), min(int(x), w - 1)
            rgb[r, c] = (1, 1, 0) if rgb[r, c, 1] == 0 and rgb[r, c, 0] == 1 else (0, 1, 0)
        imgs.append(rgb)
    return np.stack(imgs).astype(np.float32)


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for ``patience`` epochs."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_validation_end(self, trainer, info):
        if trainer.epochs_since_improvement >= self.patience:
            trainer.request_stop(f"early stopping: {trainer.monitor} did not improve for {self.patience} epochs")


class ProgressCallback(Callback):
    """Forwards small event dicts to a function (the CLI prints them; the GUI plots them)."""

    def __init__(self, report: Callable[[dict], None]):
        self.report = report

    def on_train_start(self, trainer, info):
        self.report({"event": "start", **info})

    def on_batch_end(self, trainer, info):
        self.report({"event": "batch", **info})

    def on_validation_end(self, trainer, info):
        self.report({"event": "validation", **info})

    def on_train_end(self, trainer, info):
        self.report({"event": "end", **info})


class PrintProgress:
    """The CLI's reporter: a line per epoch, plus a running line every ``every`` steps."""

    def __init__(self, every: int = 25, printer: Optional[Callable[[str], None]] = None):
        self.every = every
        self.print = printer or (lambda s: print(s, flush=True))

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            self.print(
                f"training {event['architecture']} ({event['parameters']:,} parameters) on {event['device']} "
                f"from epoch {event['epoch'] + 1} of {event['epochs']}, {event['steps_per_epoch']} steps/epoch"
            )
        elif kind == "batch" and (event["batch"] + 1) % self.every == 0:
            terms = " ".join(f"{k}={v:.4g}" for k, v in event["loss_terms"].items())
            self.print(f"  epoch {event['epoch'] + 1} step {event['batch'] + 1}/{event['steps_per_epoch']} loss={event['loss']:.4g} ({terms})")
        elif kind == "validation":
            m = event["metrics"]
            self.print(
                f"epoch {event['epoch'] + 1}: train_loss={m['train_loss']:.4g} val_loss={m['val_loss']:.4g} "
                f"precision={m['precision']:.3f} recall={m['recall']:.3f} jaccard={m['jaccard']:.3f} "
                f"rmse_lat={m['rmse_lat']:.1f} nm rmse_ax={m['rmse_ax']:.1f} nm lr={m['lr']:.3g} "
                f"({m['seconds']:.1f} s){'  *best*' if event.get('improved') else ''}"
            )
        elif kind == "end":
            if event["reason"] == "interrupted" or event["reason"].startswith("failed"):
                return  # the caller says what happened and where the last good checkpoint is
            self.print(f"done: {event['reason']}; best {event['monitor']}={event['best_metric']:.4g}; run directory {event['run_dir']}")
