"""PPXYZB: per-pixel BCE on detection + masked MSE on the other channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..targets import pixel_targets
from .base import LossTerm, register_loss
from .base import channel_weights as make_channel_weights


@register_loss("ppxyzb")
class PPXYZBLoss(LossTerm):
    """BCE-with-logits on p (``pos_weight`` up-weights the rare emitter pixels; or
    ``detection: focal|dice``) plus
    MSE on photons, x, y, z masked to emitter pixels, plus MSE on background over
    all pixels where the model predicts it. ``channel_weights`` scales each part."""

    required_channels = ("p", "photons", "x", "y", "z")

    def __init__(self, channels, scaling, pos_weight: float = 10.0, channel_weights: dict | None = None,
                 detection: str = "bce"):
        super().__init__(channels, scaling)
        from .multiscale import check_detection

        self.pos_weight = float(pos_weight)
        self.detection = detection
        check_detection(detection)
        self.channel_weights = make_channel_weights(channel_weights)

    def forward(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        target = pixel_targets(batch, output.shape[-2:], self.scaling)
        from .multiscale import detection_loss

        logits = self.ch(output, "p").float()
        loss = self.channel_weights["p"] * detection_loss(self.detection, logits, target["p"], self.pos_weight)
        emitter = target["p"] > 0
        n = emitter.sum().clamp_min(1)
        for name in ("photons", "x", "y", "z"):
            err = (self.ch(output, name).float() - target[name]) ** 2
            loss = loss + self.channel_weights[name] * (err * emitter).sum() / n
        if "bg" in self.channels and "bg" in target:
            loss = loss + self.channel_weights["bg"] * F.mse_loss(self.ch(output, "bg").float(), target["bg"])
        return loss
