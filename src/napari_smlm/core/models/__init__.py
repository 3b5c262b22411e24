"""Localization networks, chosen by name from the config (see :func:`build_model`)."""

from . import decode, fast, fusion, multiscale  # noqa: F401  (register the models)
from .base import MODEL_REGISTRY, SMLMModel, build_model, register_model
from .unet import UNet2d

__all__ = ["MODEL_REGISTRY", "SMLMModel", "build_model", "register_model", "UNet2d"]
