"""Optimizer and scheduler factories (small registries, chosen by name)."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ..config import OptimizerConfig, SchedulerConfig

__all__ = ["build_optimizer", "build_scheduler", "OPTIMIZERS", "SCHEDULERS"]


def _adamw(params, cfg: OptimizerConfig):
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _adam(params, cfg: OptimizerConfig):
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _sgd(params, cfg: OptimizerConfig):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


OPTIMIZERS = {"adamw": _adamw, "adam": _adam, "sgd": _sgd}


def build_optimizer(params: Iterable, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.name](params, cfg)


def _step(opt, cfg: SchedulerConfig, epochs: int, mode: str):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)


def _cosine(opt, cfg: SchedulerConfig, epochs: int, mode: str):
    base = opt.param_groups[0]["lr"]
    floor = cfg.min_lr / base if base > 0 else 0.0
    warm = cfg.warmup_epochs

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        progress = (epoch - warm) / max(1, epochs - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _plateau(opt, cfg: SchedulerConfig, epochs: int, mode: str):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=mode, factor=cfg.gamma, patience=cfg.patience, min_lr=cfg.min_lr
    )


def _none(opt, cfg: SchedulerConfig, epochs: int, mode: str):
    return None


SCHEDULERS = {"step": _step, "cosine": _cosine, "plateau": _plateau, "none": _none}


def build_scheduler(optimizer, cfg: SchedulerConfig, epochs: int, mode: str = "max"):
    """Epoch-wise scheduler (None for ``none``); ``plateau`` is stepped with the
    monitored metric, ``mode`` saying whether larger (``max``) or smaller is better."""
    return SCHEDULERS[cfg.name](optimizer, cfg, epochs, mode)
