"""UnifiedLoss: a weighted sum of registered terms, with warm-up and dynamic weighting."""

from __future__ import annotations

import torch
from torch import nn

from ..config import LossConfig, ScalingConfig
from .base import LOSS_REGISTRY

__all__ = ["UnifiedLoss", "build_loss"]


class UnifiedLoss(nn.Module):
    """Σ_i w_i(epoch) · L_i, reporting every term.

    Schedule: a term is active for ``start_epoch <= epoch < until_epoch``; with
    ``warmup_epochs = n`` its weight ramps linearly over its first n active epochs
    (active epoch e uses (e + 1) / (n + 1) of it). A typical use: a per-pixel
    ``ppxyzb`` term for the first epochs, which finds molecules quickly, then
    DECODE's ``gaussian_mm``, which refines positions and calibrates σ's but
    learns slowly from scratch.
    Dynamic weighting:
    ``uncertainty`` (Kendall et al. 2018) learns s_i and uses exp(-s_i) L_i + s_i;
    ``loss_ratio`` divides each term by its running mean (normalised so the weights
    average to one), so no term dominates because of its units.
    """

    def __init__(self, terms: list[nn.Module], weights: list[float], warmup_epochs: list[int],
                 dynamic_weighting: str = "none", ema: float = 0.99,
                 start_epochs: list[int] | None = None, until_epochs: list[int | None] | None = None):
        super().__init__()
        self.terms = nn.ModuleList(terms)
        self.names = [t.name for t in terms]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"loss.terms: each term may appear once, got {self.names}")
        self.weights = list(weights)
        self.warmup_epochs = list(warmup_epochs)
        self.start_epochs = list(start_epochs or [0] * len(terms))
        self.until_epochs = list(until_epochs or [None] * len(terms))
        self.dynamic_weighting = dynamic_weighting
        self.epoch = 0
        self.ema = ema
        if dynamic_weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(terms)))
        self.register_buffer("running", torch.zeros(len(terms)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for term in self.terms:
            if hasattr(term, "epoch"):
                term.epoch = self.epoch

    def effective_weights(self) -> list[float]:
        out = []
        for w, n, start, until in zip(self.weights, self.warmup_epochs, self.start_epochs, self.until_epochs):
            active = self.epoch >= start and (until is None or self.epoch < until)
            out.append(w * min(1.0, (self.epoch - start + 1) / (n + 1)) if active else 0.0)
        return out

    def forward(self, output: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        eff = self.effective_weights()
        # A multi-scale model's {"scales": {s: map}}: terms that know scales get it all,
        # the others the camera-grid map. Given only a map finer than the camera grid
        # (such a model's validation output), the others count as 0.
        coarse = output["scales"][min(output["scales"])] if isinstance(output, dict) else output
        fine_only = not isinstance(output, dict) and "frames" in batch and output.shape[-1] > batch["frames"].shape[-1]

        def value(term, w):
            knows_scales = getattr(term, "multi_scale", False)
            if w <= 0 or (fine_only and not knows_scales):  # inactive terms are not computed (gaussian_mm is costly)
                return coarse.new_zeros(())
            return term(output if knows_scales else coarse, batch)

        values = [value(term, w) for term, w in zip(self.terms, eff)]
        parts = {name: v.detach() for name, v, w in zip(self.names, values, eff) if w > 0}
        stacked = torch.stack(values)
        weights = torch.tensor(eff, device=stacked.device, dtype=stacked.dtype)
        if self.dynamic_weighting == "uncertainty":
            total = (weights * (torch.exp(-self.log_vars) * stacked + self.log_vars)).sum()
        elif self.dynamic_weighting == "loss_ratio":
            with torch.no_grad():
                current = stacked.detach().abs()
                active = weights > 0
                if torch.isfinite(current).all():
                    fresh = active & (self.running == 0)
                    self.running.copy_(torch.where(fresh, current, self.running))
                    blend = self.ema * self.running + (1 - self.ema) * current
                    self.running.copy_(torch.where(active & ~fresh, blend, self.running))
                scale = torch.where(active, 1.0 / self.running.clamp_min(1e-8), torch.zeros_like(self.running))
                scale = scale / scale[active].mean().clamp_min(1e-12) if bool(active.any()) else scale
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
    return UnifiedLoss(
        terms, [t.weight for t in cfg.terms], [t.warmup_epochs for t in cfg.terms], cfg.dynamic_weighting,
        start_epochs=[t.start_epoch for t in cfg.terms], until_epochs=[t.until_epoch for t in cfg.terms],
    )
