"""Loss registry. A loss term maps (model output, batch) to a scalar."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import ScalingConfig

__all__ = ["LOSS_REGISTRY", "register_loss", "LossTerm"]

LOSS_REGISTRY: dict[str, Callable[..., "LossTerm"]] = {}


def register_loss(name: str):
    def deco(cls):
        LOSS_REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


class LossTerm(nn.Module):
    """Base class: ``forward(output (B, C, H, W), batch) -> scalar``.

    ``required_channels`` lists the model output channels the term reads; building
    a term for a model that lacks them is an error at build time, not mid-training.
    """

    name = ""
    required_channels: tuple[str, ...] = ()

    def __init__(self, channels: tuple[str, ...], scaling: ScalingConfig):
        super().__init__()
        missing = [c for c in self.required_channels if c not in channels]
        if missing:
            raise ValueError(
                f"loss.terms: {self.name!r} needs model outputs {list(self.required_channels)}, "
                f"but the model has {list(channels)} (missing {missing})"
            )
        self.channels = tuple(channels)
        self.scaling = scaling

    def ch(self, output: torch.Tensor, name: str) -> torch.Tensor:
        return output[:, self.channels.index(name)]


CHANNEL_WEIGHT_KEYS = ("p", "photons", "x", "y", "z", "bg")


def channel_weights(given: dict | None) -> dict[str, float]:
    """Per-channel loss weights: 1 for every channel unless ``given`` says otherwise."""
    weights = {k: 1.0 for k in CHANNEL_WEIGHT_KEYS}
    unknown = set(given or {}) - set(weights)
    if unknown:
        raise ValueError(f"loss.terms.kwargs.channel_weights: unknown channels {sorted(unknown)}; known {sorted(weights)}")
    weights.update({k: float(v) for k, v in (given or {}).items()})
    return weights
