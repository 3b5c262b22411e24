"""Losses for the multi-scale model (per scale) and detection alternatives to BCE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..targets import targets_at_scale
from .base import LossTerm, register_loss
from .base import channel_weights as make_channel_weights

_LOG_2PI = math.log(2 * math.pi)


def count_nll(p: torch.Tensor, n_true: torch.Tensor, eps: float) -> torch.Tensor:
    """Gaussian approximation of the Poisson-binomial count: -log N(n | Σp, Σp(1-p) + eps), per sample."""
    p = p.flatten(1)
    mean = p.sum(1)
    var = (p * (1 - p)).sum(1) + eps
    return 0.5 * (n_true - mean) ** 2 / var + 0.5 * torch.log(var) + 0.5 * _LOG_2PI


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), mean over pixels."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return (a_t * (1 - p_t) ** gamma * ce).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss on the detection map, per sample then averaged."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


DETECTION_LOSSES = ("bce", "focal", "dice")


def check_detection(kind: str) -> None:
    if kind not in DETECTION_LOSSES:
        raise ValueError(f"loss.terms.kwargs.detection: expected one of {', '.join(DETECTION_LOSSES)}, got {kind!r}")


def detection_loss(kind: str, logits, target, pos_weight: float) -> torch.Tensor:
    check_detection(kind)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(pos_weight, device=logits.device))
    if kind == "focal":
        return focal_loss(logits, target)
    return dice_loss(logits, target)


@register_loss("focal")
class FocalLoss(LossTerm):
    """Sigmoid focal loss on the detection map alone (pair with a localization term)."""

    required_channels = ("p",)

    def __init__(self, channels, scaling, alpha: float = 0.25, gamma: float = 2.0):
        super().__init__(channels, scaling)
        self.alpha, self.gamma = float(alpha), float(gamma)

    def forward(self, output, batch):
        from ..targets import pixel_targets

        t = pixel_targets(batch, output.shape[-2:], self.scaling)
        return focal_loss(self.ch(output, "p").float(), t["p"], self.alpha, self.gamma)


@register_loss("dice")
class DiceLoss(LossTerm):
    """Soft Dice loss on the detection map alone (pair with a localization term)."""

    required_channels = ("p",)

    def forward(self, output, batch):
        from ..targets import pixel_targets

        t = pixel_targets(batch, output.shape[-2:], self.scaling)
        return dice_loss(self.ch(output, "p").float(), t["p"])


@register_loss("multiscale")
class MultiScaleLoss(LossTerm):
    """Per scale s: detection (BCE-with-logits with ``pos_weight``, or focal/dice) +
    masked SmoothL1 (or MSE) on photons, x, y, z + MSE on background + a count term
    (eps-floored Gaussian approximation) ; weighted by ``scale_weights``; with
    ``progressive``, scale j (coarse to fine) joins at epoch j·warmup_epochs/(n-1).
    Adds the VQ and reconstruction losses the model reports. Given a plain tensor
    (validation), scores it as the finest scale."""

    required_channels = ("p", "photons", "x", "y", "z", "bg")
    multi_scale = True

    def __init__(self, channels, scaling, scales=(1, 2, 4, 8), scale_weights=None, channel_weights=None,
                 pos_weight: float = 5.0, eps: float = 1e-4, warmup_epochs: int = 0, progressive: bool = True,
                 count_weight: float = 0.01, vq_weight: float = 1.0, recon_weight: float = 1.0,
                 smooth_l1: bool = True, detection: str = "bce"):
        super().__init__(channels, scaling)
        self.scales = [int(s) for s in scales]
        self.scale_weights = list(scale_weights) if scale_weights is not None else [1.0] * len(self.scales)
        if len(self.scale_weights) != len(self.scales):
            raise ValueError(f"loss.terms.kwargs.scale_weights: expected {len(self.scales)} weights (one per scale {self.scales}), "
                             f"got {len(self.scale_weights)}")
        self.channel_weights = make_channel_weights(channel_weights)
        if eps < 1e-4:
            raise ValueError(f"loss.terms.kwargs.eps: expected >= 1e-4 (count-term stability), got {eps}")
        self.pos_weight, self.eps = float(pos_weight), float(eps)
        self.warmup_epochs, self.progressive = int(warmup_epochs), bool(progressive)
        self.count_weight, self.vq_weight, self.recon_weight = float(count_weight), float(vq_weight), float(recon_weight)
        self.smooth_l1 = bool(smooth_l1)
        self.detection = detection
        check_detection(detection)
        self.epoch = 0

    def active_scales(self) -> list[int]:
        n = len(self.scales)
        if not self.progressive or self.warmup_epochs == 0 or n == 1:
            return list(self.scales)
        return [s for j, s in enumerate(self.scales) if self.epoch >= round(j * self.warmup_epochs / (n - 1))]

    def scale_loss(self, out: torch.Tensor, batch: dict, scale: int) -> torch.Tensor:
        h, w = out.shape[-2] // scale, out.shape[-1] // scale
        t = targets_at_scale(batch, (h, w), self.scaling, scale)
        cw = self.channel_weights
        loss = cw["p"] * detection_loss(self.detection, out[:, 0].float(), t["p"], self.pos_weight)
        mask = t["p"] > 0
        n = mask.sum().clamp_min(1)
        reg = F.smooth_l1_loss if self.smooth_l1 else F.mse_loss
        for i, name in ((1, "photons"), (2, "x"), (3, "y"), (4, "z")):
            err = reg(out[:, i].float(), t[name], reduction="none")
            loss = loss + cw[name] * (err * mask).sum() / n
        if "bg" in t:
            loss = loss + cw["bg"] * F.mse_loss(out[:, 5].float(), t["bg"])
        if self.count_weight > 0:
            loss = loss + self.count_weight * count_nll(torch.sigmoid(out[:, 0].float()), batch["mask"].sum(1).float(), self.eps).mean()
        return loss

    def forward(self, output, batch):
        if isinstance(output, torch.Tensor):
            # finest-scale map only (validation): which scale it is follows from the frame size
            s = output.shape[-1] // batch["frames"].shape[-1]
            return self.scale_loss(output, batch, s)
        total = output["scales"][self.scales[0]].new_zeros(())
        active = self.active_scales()
        for s, weight in zip(self.scales, self.scale_weights):
            if s in active and s in output["scales"]:
                total = total + weight * self.scale_loss(output["scales"][s], batch, s)
        if "vq_loss" in output:
            total = total + self.vq_weight * output["vq_loss"]
        if "recon" in output:
            k = batch["frames"].shape[1] // 2
            target = batch["frames"][:, k:k + 1].float() / self.scaling.input_scale
            total = total + self.recon_weight * F.mse_loss(output["recon"].float()[..., : target.shape[-2], : target.shape[-1]], target)
        return total
