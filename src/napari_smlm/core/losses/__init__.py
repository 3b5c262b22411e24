"""Loss terms (registry) and UnifiedLoss, composed from the config."""

from . import gaussian_mm, multiscale, ppxyzb  # noqa: F401  (register the terms)
from .base import LOSS_REGISTRY, LossTerm, register_loss
from .unified import UnifiedLoss, build_loss

__all__ = ["LOSS_REGISTRY", "LossTerm", "register_loss", "UnifiedLoss", "build_loss"]
