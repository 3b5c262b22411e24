"""The Trainer: one loop for simulated and dataset training, CPU, CUDA and DDP."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import Config, save_config, to_dict
from ..evaluation.matching import match, metrics_from_match
from ..evaluation.metrics import efficiency
from ..inference.postprocess import filter_table, maps_to_candidates
from ..losses import build_loss
from ..models import build_model
from ..targets import condition_maps
from ..utils import cpu_has_bf16
from .callbacks import (
    Callback, CheckpointCallback, EarlyStopping, MetricsCSVCallback, ProgressCallback, TensorBoardCallback,
)
from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from .data import build_data
from .factories import build_optimizer, build_scheduler

__all__ = ["Trainer", "TrainingError", "resolve_device", "scale_input", "existing_run"]

_LOWER_IS_BETTER = ("loss", "rmse", "fp", "fn")
TUNED_THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))  # 0.1 ... 0.9, for jaccard_tuned


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. repeated non-finite losses); checkpoints stay intact."""


RUN_FILES = ("last.pt", "best.pt", "metrics.csv")


def existing_run(run_dir: str | Path) -> Optional[str]:
    """What a run directory already holds (for the question "replace it?"), or None.

    E.g. ``"best.pt: epoch 6, jaccard 0.763; last.pt: epoch 6"``; reads only the
    small metrics.csv, never a checkpoint."""
    run_dir = Path(run_dir)
    present = [name for name in RUN_FILES if (run_dir / name).is_file()]
    if not present:
        return None
    parts = [", ".join(present)]
    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        import csv

        try:
            with open(metrics, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error):
            rows = []
        if rows:
            parts.append(f"{len(rows)} epoch(s)")
            if "jaccard" in rows[0]:
                try:
                    best = max(float(r["jaccard"]) for r in rows if r.get("jaccard"))
                    parts.append(f"best jaccard {best:.3f}")
                except ValueError:
                    pass
    return "; ".join(parts)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("training.device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def scale_input(frames: torch.Tensor, scaling) -> torch.Tensor:
    """Photons -> network input units (also used by inference)."""
    return (frames - scaling.input_offset) / scaling.input_scale


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _as_float(out):
    """Network outputs (a tensor, or a multi-scale model's dict of them) in float32:
    the losses run in full precision whatever autocast computed the network in."""
    if isinstance(out, torch.Tensor):
        return out.float()
    if isinstance(out, dict):
        return {k: _as_float(v) for k, v in out.items()}
    return out


class Trainer:
    """Train a model from a :class:`Config`.

    Parameters
    ----------
    cfg : the resolved config.
    run_dir : output directory (defaults to ``cfg.output.run_dir``).
    resume : checkpoint to continue from (its epoch, optimizer, scheduler, RNG and
        history are restored; training continues at the next epoch).
    progress : function receiving small event dicts (``event`` = start / batch /
        validation / end), used by the CLI and the napari widget alike.
    callbacks : extra callbacks.
    write_files : False for a dry run (no run directory).
    overwrite : replace a finished run in ``run_dir``. Without it, a run directory
        that holds checkpoints or metrics is refused unless ``resume`` is given (a
        new run would silently replace best.pt); see :func:`existing_run`.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: Optional[str | Path] = None,
        resume: Optional[str | Path] = None,
        progress: Optional[Callable[[dict], None]] = None,
        callbacks: Optional[list[Callback]] = None,
        write_files: bool = True,
        overwrite: bool = False,
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir or cfg.output.run_dir)
        self.rank, local_rank, self.world_size = _distributed()
        self.is_main = self.rank == 0
        self.device = resolve_device(cfg.training.device)
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(local_rank)
                self.device = torch.device("cuda", local_rank)
            torch.distributed.init_process_group(backend)
        seed = cfg.training.seed + 1_000 * self.rank  # per-rank data stream
        torch.manual_seed(cfg.training.seed)  # same initial weights on every rank

        self.model = build_model(cfg.model.architecture, frame_window=cfg.model.frame_window, **cfg.model.kwargs)
        self.model.to(self.device)
        if self.device.type == "cpu":
            # oneDNN's convolutions, forward and backward, run faster channels-last
            # (default_2d, fwd + bwd + loss on one core: 0.98 s NCHW, 0.80 s channels-last).
            self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(cfg.loss, self.model.output_channels, cfg.model.scaling).to(self.device)
        self.net = self.model
        if self.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        params = list(self.model.parameters()) + list(self.loss_fn.parameters())
        self.optimizer = build_optimizer(params, cfg.optimizer)
        self.monitor = cfg.training.monitor
        self.mode = "min" if any(s in self.monitor for s in _LOWER_IS_BETTER) else "max"
        self.scheduler = build_scheduler(self.optimizer, cfg.scheduler, cfg.training.epochs, self.mode)
        self.use_amp = bool(cfg.training.amp and self.device.type == "cuda")  # float16 + loss scaling
        # training.amp on a CPU with native bfloat16: autocast to bf16, no loss scaling
        # (bf16 has float32's range). default_2d, fwd + bwd + loss on one core: 0.80 s
        # float32 -> 0.46 s bf16, both channels-last. Weights and optimizer stay float32.
        self.cpu_bf16 = bool(cfg.training.amp and self.device.type == "cpu" and cpu_has_bf16())
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.data, self.validation = build_data(cfg, self.device, seed, self.rank, self.world_size)

        self.epoch = 0  # next epoch to run (0-based)
        self.step = 0
        self.best_metric = -math.inf if self.mode == "max" else math.inf
        self.epochs_since_improvement = 0
        self.history: list[dict] = []
        self.nonfinite_total = 0
        self._consecutive_nonfinite = 0
        self.example = None
        self._stop_reason: Optional[str] = None
        self.saved_epoch: Optional[int] = None  # the epoch last.pt holds (1-based), once known
        if resume is not None:
            self._load(resume)
            if Path(resume).resolve() == (self.run_dir / "last.pt").resolve():
                self.saved_epoch = self.epoch or None
        elif cfg.training.init_weights:
            self._init_weights(cfg.training.init_weights)

        self.callbacks: list[Callback] = []
        if self.is_main and write_files:
            found = existing_run(self.run_dir)
            if found and resume is None and not overwrite:
                raise TrainingError(
                    f"{self.run_dir}: already holds a training run ({found}); a new run would replace it. "
                    f"Continue it with --resume {self.run_dir / 'last.pt'}, choose another --out, "
                    f"or give --overwrite to replace it"
                )
            if found and resume is None and overwrite:
                for name in RUN_FILES:  # a half-replaced run would pair new metrics with old weights
                    (self.run_dir / name).unlink(missing_ok=True)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            self.callbacks += [CheckpointCallback(self.run_dir), MetricsCSVCallback(self.run_dir)]
            if cfg.output.tensorboard:
                self.callbacks.append(TensorBoardCallback(self.run_dir, image_every=cfg.training.log_images_every))
        if cfg.training.early_stopping_patience:
            self.callbacks.append(EarlyStopping(cfg.training.early_stopping_patience))
        if progress is not None and self.is_main:
            self.callbacks.append(ProgressCallback(progress))
        self.callbacks += list(callbacks or [])

    # ------------------------------------------------------------------ control
    def request_stop(self, reason: str = "stopped by user") -> None:
        """Ask the loop to end after the current batch (thread-safe: a flag)."""
        self._stop_reason = reason

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _emit(self, hook: str, info: dict) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, info)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        cfg = self.cfg
        return {
            "architecture": cfg.model.architecture,
            "model_kwargs": dict(self.model.init_kwargs),
            "state_dict": self.model.state_dict(),
            "loss_state": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": float(self.best_metric),
            "monitor": self.monitor,
            "epochs_since_improvement": self.epochs_since_improvement,
            "history": self.history,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "data": self.data.state_dict(),
            },
            "inference": {
                "pixel_size_nm": float(cfg.simulation.pixel_size_nm),
                "frame_window": int(cfg.model.frame_window),
                "output_channels": list(self.model.output_channels),
                "scaling": to_dict(cfg.model.scaling),
                "camera": to_dict(cfg.simulation.camera),
                "psf": to_dict(cfg.simulation.psf),
                "z_range_nm": [float(v) for v in cfg.simulation.emitters.z_range_nm],
                "detection_threshold": float(cfg.training.detection_threshold),
            },
            "config": to_dict(cfg),
        }

    def save(self, path: Path) -> None:
        save_checkpoint(self.state(), path)

    def _load_weights(self, path) -> dict:
        state = load_checkpoint(path, architecture=self.cfg.model.architecture)
        if dict(state["model_kwargs"]) != dict(self.model.init_kwargs):
            raise CheckpointError(
                f"{path}: checkpoint model kwargs {state['model_kwargs']} differ from the config's {self.model.init_kwargs}"
            )
        load_weights(self.model, state, path)
        return state

    def _init_weights(self, source: str) -> None:
        """Weights only (fine-tuning): epoch, optimizer, schedule and history start fresh."""
        from ..inference.runner import resolve_model_path

        path = resolve_model_path(source, what="training.init_weights:")
        state = self._load_weights(path)
        if state.get("inference", {}).get("scaling") not in (None, to_dict(self.cfg.model.scaling)):
            raise CheckpointError(f"training.init_weights: {path} was trained with model.scaling {state['inference']['scaling']}, "
                                  f"the config has {to_dict(self.cfg.model.scaling)}; the weights expect their own scaling")
        if self.is_main:
            print(f"note: starting from the weights of {path} (epoch {state['epoch']}); a new run from epoch 0", file=sys.stderr)

    def _load(self, path) -> None:
        state = self._load_weights(path)
        if state.get("loss_state"):
            self.loss_fn.load_state_dict(state["loss_state"])
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        else:
            # An inference-only checkpoint (e.g. the bundled model): continue from its
            # weights and epoch with a fresh optimizer; the scheduler is advanced to
            # the epoch so the learning rate is where the schedule puts it.
            if self.scheduler is not None and not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                with warnings.catch_warnings():
                    # stepped on purpose before any optimizer step: PyTorch's warning that
                    # this skips the schedule's first value would only puzzle the user
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
                    for _ in range(int(state["epoch"])):
                        self.scheduler.step()
            if self.is_main:
                print(f"note: {path} holds no optimizer state; continuing its weights with a fresh optimizer", file=sys.stderr)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.best_metric = float(state["best_metric"])
        if state.get("monitor") not in (None, self.monitor):
            # best.pt was chosen by another metric: its value says nothing about this one
            self.best_metric = -math.inf if self.mode == "max" else math.inf
            if self.is_main:
                print(f"note: {path} chose best.pt by {state['monitor']}; this run monitors {self.monitor}, "
                      "so the next best.pt is chosen afresh", file=sys.stderr)
        self.epochs_since_improvement = int(state.get("epochs_since_improvement", 0))
        self.history = list(state.get("history", []))
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if self.world_size == 1 and "data" in rng:
            self.data.load_state_dict(rng["data"])

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.float16)
        if self.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        x = scale_input(batch["frames"], self.cfg.model.scaling)
        with self._autocast():
            if hasattr(self.model, "scales"):  # multi-scale: teacher-forced with the true coarser maps
                teacher = condition_maps(batch, tuple(x.shape[-2:]), self.cfg.model.scaling, self.model.scales[:-1])
                out = _as_float(self.net(x, teacher=teacher))
            else:
                out = _as_float(self.net(x))
        return self.loss_fn(out, batch)

    def train_step(self) -> dict:
        """One optimizer step (with gradient accumulation); returns its numbers."""
        tcfg = self.cfg.training
        self.optimizer.zero_grad(set_to_none=True)
        total, terms_sum, finite = 0.0, {}, True
        for micro in range(tcfg.accumulate_steps):
            batch = self.data.next_batch()
            sync = micro == tcfg.accumulate_steps - 1 or self.world_size == 1
            ctx = contextlib.nullcontext() if sync or not hasattr(self.net, "no_sync") else self.net.no_sync()
            with ctx:
                loss, terms = self._forward_loss(batch)
                if not torch.isfinite(loss):
                    finite = False
                    break
                self.scaler.scale(loss / tcfg.accumulate_steps).backward()
            total += float(loss.detach()) / tcfg.accumulate_steps
            for k, v in terms.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + float(v) / tcfg.accumulate_steps
        if self.world_size > 1:
            # Every rank must agree to skip, or the next all-reduce would hang.
            flag = torch.tensor([0.0 if finite else 1.0], device=self.device)
            torch.distributed.all_reduce(flag)
            finite = bool(flag.item() == 0)
        grad_norm = float("nan")
        if finite:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            clip = tcfg.grad_clip if tcfg.grad_clip else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            if not math.isfinite(grad_norm) and not self.use_amp:
                finite = False  # (with AMP the scaler skips such steps itself)
        if finite:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._consecutive_nonfinite = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_total += 1
            self._consecutive_nonfinite += 1
            if self._consecutive_nonfinite >= tcfg.max_nonfinite:
                raise TrainingError(
                    f"{self._consecutive_nonfinite} non-finite losses in a row at step {self.step}; stopping. "
                    f"The last good checkpoint is {self.run_dir / 'last.pt'}. "
                    f"Try a lower optimizer.lr or a smaller training.grad_clip."
                )
        self.step += 1
        return {"loss": total if finite else float("nan"), "loss_terms": terms_sum, "grad_norm": grad_norm, "finite": finite}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation loss and localization metrics on the fixed validation set."""
        self.model.eval()
        cfg = self.cfg
        px = cfg.simulation.pixel_size_nm
        losses, preds, gts = [], [], []
        offset = 0
        for batch in self.validation:
            with self._autocast():
                out = self.model(scale_input(batch["frames"], cfg.model.scaling)).float()
            losses.append(float(self.loss_fn(out, batch)[0]))
            pred = maps_to_candidates(out, self.model.output_channels, cfg.model.scaling, px, frame_offset=offset,
                                      min_prob=min(TUNED_THRESHOLDS[0], cfg.training.detection_threshold),
                                      scale=self.model.output_scale)
            preds.append(pred)
            m = batch["mask"].cpu().numpy()
            b_idx = np.nonzero(m)[0]
            gts.append({
                "frame": b_idx + offset,
                "x": batch["x_px"].cpu().numpy()[m] * px,
                "y": batch["y_px"].cpu().numpy()[m] * px,
                "z": batch["z_nm"].cpu().numpy()[m],
            })
            if offset == 0:
                shown = pred["prob"] >= cfg.training.detection_threshold
                self.example = (batch["frames"], batch, {"frame": pred["frame"][shown], "x_px": pred["x"][shown] / px,
                                                         "y_px": pred["y"][shown] / px})
            offset += batch["frames"].shape[0]
        candidates = {k: np.concatenate([p[k] for p in preds]) for k in ("frame", "x", "y", "z", "prob")}
        pred = filter_table(candidates, cfg.training.detection_threshold)
        gt = {k: np.concatenate([g[k] for g in gts]) for k in ("frame", "x", "y", "z")}
        # 3D training is matched as it is evaluated (500 nm axial tolerance, SMLM Challenge
        # 2016) and scored by its efficiencies too, so that `monitor: efficiency_3d` can
        # choose best.pt by z as well as by detection.
        z_lo, z_hi = cfg.simulation.emitters.z_range_nm
        is_3d = z_hi > z_lo and cfg.simulation.psf.kind != "gaussian"
        tolerance_z = 500.0 if is_3d else np.inf
        metrics = metrics_from_match(pred, gt, match(pred, gt, cfg.training.match_tolerance_nm, tolerance_z))
        # The Jaccard at the threshold that is best for this epoch's model (what bundling
        # and a user's slider get), so that `monitor: jaccard_tuned` picks best.pt by how
        # good the model is rather than by where its probabilities sit relative to a fixed
        # threshold (which moved model v2's validation Jaccard by about ±0.01 per epoch).
        tuned = []
        for t in TUNED_THRESHOLDS:
            sel = filter_table(candidates, float(t))
            tuned.append((metrics_from_match(sel, gt, match(sel, gt, cfg.training.match_tolerance_nm, tolerance_z))["jaccard"], float(t)))
        metrics["jaccard_tuned"], metrics["threshold_tuned"] = max(tuned)
        metrics["efficiency_lat"] = efficiency(metrics["jaccard"], metrics["rmse_lat"], 1.0)
        if is_3d:
            metrics["efficiency_ax"] = efficiency(metrics["jaccard"], metrics["rmse_ax"], 0.5)
            metrics["efficiency_3d"] = 0.5 * (metrics["efficiency_lat"] + metrics["efficiency_ax"])
        finite = [v for v in losses if math.isfinite(v)]
        metrics["val_loss"] = float(np.mean(finite)) if finite else float("nan")
        self.model.train()
        return metrics

    def fit(self) -> dict:
        """Run the remaining epochs. Returns the last history row."""
        cfg, tcfg = self.cfg, self.cfg.training
        self._emit("on_train_start", {
            "architecture": cfg.model.architecture, "parameters": self.parameter_count, "device": str(self.device),
            "epoch": self.epoch, "epochs": tcfg.epochs, "steps_per_epoch": tcfg.steps_per_epoch,
            "world_size": self.world_size,
        })
        reason = "interrupted"  # until the loop ends on its own
        self.model.train()
        deadline = time.monotonic() + 60.0 * tcfg.max_minutes if tcfg.max_minutes else math.inf
        try:
            while self.epoch < tcfg.epochs:
                epoch = self.epoch
                t0 = time.time()
                self.loss_fn.set_epoch(epoch)
                self.data.set_epoch(epoch)
                self._emit("on_epoch_start", {"epoch": epoch})
                running, n_ok = 0.0, 0
                for b in range(tcfg.steps_per_epoch):
                    out = self.train_step()
                    if out["finite"]:
                        running += out["loss"]
                        n_ok += 1
                    self._emit("on_batch_end", {
                        "epoch": epoch, "batch": b, "step": self.step, "steps_per_epoch": tcfg.steps_per_epoch,
                        "lr": self.optimizer.param_groups[0]["lr"], **out,
                    })
                    if not self._stop_reason and time.monotonic() >= deadline:
                        self._stop_reason = f"time box of {tcfg.max_minutes:g} minutes reached"
                    if self._stop_reason:
                        break
                metrics = self.validate()
                metrics["train_loss"] = running / n_ok if n_ok else float("nan")
                metrics["lr"] = self.optimizer.param_groups[0]["lr"]
                metrics["nonfinite_steps"] = self.nonfinite_total
                metrics["seconds"] = time.time() - t0
                value = metrics.get(self.monitor, float("nan"))
                better = value > self.best_metric if self.mode == "max" else value < self.best_metric
                improved = bool(math.isfinite(value) and better)
                if improved:
                    self.best_metric = value
                    self.epochs_since_improvement = 0
                else:
                    self.epochs_since_improvement += 1
                if self.scheduler is not None:
                    if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        self.scheduler.step(value if math.isfinite(value) else self.best_metric)
                    else:
                        self.scheduler.step()
                self.epoch = epoch + 1
                row = {"epoch": self.epoch, "step": self.step, **{k: float(v) for k, v in metrics.items()}}
                self.history.append(row)
                self._emit("on_validation_end", {"epoch": epoch, "metrics": metrics, "improved": improved})
                if self._stop_reason:
                    break
            reason = self._stop_reason or "finished"
        except KeyboardInterrupt:
            reason = "interrupted"
            raise
        except BaseException as exc:
            reason = f"failed ({type(exc).__name__})"
            raise
        finally:
            self._emit("on_train_end", {
                "reason": reason, "epoch": self.epoch, "best_metric": self.best_metric, "monitor": self.monitor,
                "run_dir": str(self.run_dir),
            })
        return self.history[-1] if self.history else {}

    def dry_run(self) -> dict:
        """One batch forward and backward, no optimizer step, no files."""
        batch = self.data.next_batch()
        loss, terms = self._forward_loss(batch)
        self.scaler.scale(loss).backward()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach()), "loss_terms": {k: float(v) for k, v in terms.items()},
                "batch_shape": tuple(batch["frames"].shape), "parameters": self.parameter_count}

    def last_good_checkpoint(self) -> str:
        """Where training can continue from, in words (after an interruption or a failure)."""
        last = self.run_dir / "last.pt"
        if last.is_file():
            epoch = f" (epoch {self.saved_epoch})" if self.saved_epoch else ""
            return f"the last complete epoch{epoch} is in {last}; continue with --resume {last}"
        return f"no epoch was completed, so there is no checkpoint in {self.run_dir}"

    def close(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
