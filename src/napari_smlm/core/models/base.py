"""Model registry and the shared base class of all localization networks."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODEL_REGISTRY", "register_model", "build_model", "SMLMModel"]

MODEL_REGISTRY: dict[str, Callable[..., "SMLMModel"]] = {}


def register_model(name: str):
    def deco(cls):
        MODEL_REGISTRY[name] = cls
        cls.architecture = name
        return cls

    return deco


def build_model(architecture: str, **kwargs) -> "SMLMModel":
    """Build a registered model by name; unknown names and bad kwargs give clear errors."""
    if architecture not in MODEL_REGISTRY:
        raise ValueError(
            f"model.architecture: unknown architecture {architecture!r}; known: {', '.join(sorted(MODEL_REGISTRY))}"
        )
    try:
        return MODEL_REGISTRY[architecture](**kwargs)
    except TypeError as exc:
        raise ValueError(f"model.kwargs: invalid arguments for {architecture!r}: {exc}") from None


class SMLMModel(nn.Module):
    """Base class: input (B, K, H, W) photons (scaled), output (B, C, H, W).

    ``output_channels`` names the output channels; ``p`` is always a *logit*
    (losses use it directly; post-processing applies the sigmoid). ``x``/``y`` are
    offsets from the pixel centre in pixels, ``z``/``photons``/``bg`` and
    ``sigma_*`` are in the scaled units of :class:`~napari_smlm.core.config.ScalingConfig`.
    Frames whose size is not a multiple of :attr:`stride` are padded, and the
    padding is removed from the output.
    """

    architecture: str = ""
    output_channels: tuple[str, ...] = ()

    def __init__(self, **init_kwargs):
        super().__init__()
        # Everything needed to rebuild this model; stored in checkpoints.
        self.init_kwargs = dict(init_kwargs)

    @property
    def stride(self) -> int:
        return 1

    @property
    def output_scale(self) -> int:
        """Output cells per camera pixel along each axis (1: the camera's own grid)."""
        return 1

    @property
    def receptive_radius(self) -> int:
        """Upper bound (input pixels) on the spatial reach of one output pixel."""
        raise NotImplementedError

    def channel(self, name: str) -> int:
        return self.output_channels.index(name)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frames, h, w = self.pad_to_stride(frames)
        return self._crop(self._forward(frames), h, w)

    def _crop(self, out: torch.Tensor, h: int, w: int):
        """The output of a padded input back to the input's ``h`` x ``w`` pixels."""
        return out[..., :h, :w]

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_block(self, block: torch.Tensor, index: torch.Tensor, cache: dict | None = None,
                      frame_ids: torch.Tensor | None = None, keep_above: float | None = None) -> torch.Tensor:
        """Predict windows of a movie block: ``block`` (F, H, W), ``index`` (B, K)
        frame indices into the block per window -> (B, C, H, W). Equal to
        ``self(block[index])``; models whose first stage works per frame override it
        to compute that stage once per frame instead of once per window.

        Inference hints a model may use or ignore: ``cache``, a dict the caller keeps
        across calls on the same frames, whose ``frame_ids`` (F,) name the block's
        frames in ascending order, each call's windows following the last's (per-frame
        work done once per frame across calls); ``keep_above``, a
        detection probability below which the caller reads nothing but ``p`` (other
        channels may be left 0 there)."""
        return self(block[index])

    def pad_to_stride(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        h, w = x.shape[-2:]
        s = self.stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, h, w
