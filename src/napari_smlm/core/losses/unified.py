"""UnifiedLoss: a weighted sum of registered terms, with warm-up and dynamic weighting."""

from __future__ import annotations

import torch
from torch import nn

from ..config import LossConfig, ScalingConfig
from .base import LOSS_REGISTRY

__all__ = ["UnifiedLoss", "build_loss"]


class UnifiedLoss(nn.Module):
    """Σ_i w_i(epoch) · L_i, reporting every term.

    Warm-up: a term with ``warmup_epochs = n`` ramps its weight linearly over the
    first n epochs (epoch e uses (e + 1) / (n + 1) of it).
    Dynamic weighting:
    ``uncertainty`` (Kendall et al. 2018) learns s_i and uses exp(-s_i) L_i + s_i;
    ``loss_ratio`` divides each term by its running mean (normalised so the weights
    average to one), so no term dominates because of its units.
    """

    def __init__(self, terms: list[nn.Module], weights: list[float], warmup_epochs: list[int],
                 dynamic_weighting: str = "none", ema: float = 0.99):
        super().__init__()
        self.terms = nn.ModuleList(terms)
        self.names = [t.name for t in terms]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"loss.terms: each term may appear once, got {self.names}")
        self.weights = list(weights)
        self.warmup_epochs = list(warmup_epochs)
        self.dynamic_weighting = dynamic_weighting
        self.epoch = 0
        self.ema = ema
        if dynamic_weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(terms)))
        self.register_buffer("running", torch.zeros(len(terms)))
        self.register_buffer("running_init", torch.zeros((), dtype=torch.bool))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def effective_weights(self) -> list[float]:
        return [w * min(1.0, (self.epoch + 1) / (n + 1)) for w, n in zip(self.weights, self.warmup_epochs)]

    def forward(self, output: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = [term(output, batch) for term in self.terms]
        parts = {name: v.detach() for name, v in zip(self.names, values)}
        stacked = torch.stack(values)
        weights = torch.tensor(self.effective_weights(), device=stacked.device, dtype=stacked.dtype)
        if self.dynamic_weighting == "uncertainty":
            total = (weights * (torch.exp(-self.log_vars) * stacked + self.log_vars)).sum()
        elif self.dynamic_weighting == "loss_ratio":
            with torch.no_grad():
                current = stacked.detach().abs()
                if torch.isfinite(current).all():
                    if not bool(self.running_init):
                        self.running.copy_(current)
                        self.running_init.fill_(True)
                    else:
                        self.running.mul_(self.ema).add_((1 - self.ema) * current)
                scale = 1.0 / self.running.clamp_min(1e-8)
                scale = scale / scale.mean()
            total = (weights * scale * stacked).sum()
        else:
            total = (weights * stacked).sum()
        return total, parts


def build_loss(cfg: LossConfig, channels: tuple[str, ...], scaling: ScalingConfig) -> UnifiedLoss:
    terms = []
    for i, term_cfg in enumerate(cfg.terms):
        if term_cfg.name not in LOSS_REGISTRY:
            raise ValueError(f"loss.terms[{i}].name: unknown loss {term_cfg.name!r}; known: {', '.join(sorted(LOSS_REGISTRY))}")
        try:
            terms.append(LOSS_REGISTRY[term_cfg.name](channels, scaling, **term_cfg.kwargs))
        except TypeError as exc:
            raise ValueError(f"loss.terms[{i}].kwargs: invalid arguments for {term_cfg.name!r}: {exc}") from None
    if not terms:
        raise ValueError("loss.terms: expected at least one loss term")
    return UnifiedLoss(terms, [t.weight for t in cfg.terms], [t.warmup_epochs for t in cfg.terms], cfg.dynamic_weighting)
