"""The fast preset (``fast_net``): DECODE's outputs from a network ~15x cheaper.

LiteLoc's idea (Fei et al., 2025) scaled to a laptop CPU: the work happens at half
resolution — the K-frame window is folded 2x2 into channels (pixel unshuffle), a
stem and residual 3x3 convolutions with growing dilation give a receptive field of
~20 camera pixels without pooling — and only a thin full-resolution stage (the
features unfolded back by pixel shuffle, concatenated with the frames themselves)
places each molecule within its pixel. One 1x1 convolution gives all ten DECODE
outputs (p, photons, x, y, z, four sigmas, background), so every loss and the
post-processing apply unchanged.

Cost per camera pixel at the defaults (48 features, dilations 1, 2, 4, 1): ~25 k
multiply-adds, against ~195 k for the bundled ``sigma_munet`` (24/24 features).
ReLU rather than ELU: at this size the activations are a quarter of the time, and
ReLU's is the cheapest (measured: 5.6 against 7.6 ms per 256x256 frame in bf16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SMLMModel, register_model
from .decode import P_BIAS_INIT, SIGMA_MAX, SIGMA_MIN, _activate
from .unet import make_activation

__all__ = ["FastNet"]

_GROUPS = {"p": 1, "photons": 1, "xyz": 3, "sigma": 4, "bg": 1}
_NAMES = ("p", "photons", "x", "y", "z", "sigma_photons", "sigma_x", "sigma_y", "sigma_z", "bg")


@register_model("fast_net")
class FastNet(SMLMModel):
    """Half-resolution dilated trunk + thin full-resolution head; 10 outputs."""

    output_channels = _NAMES

    def __init__(
        self,
        frame_window: int = 3,
        features: int = 48,
        dilations: tuple = (1, 2, 4, 1),
        fine_features: int = 12,
        head_features: int = 16,
        activation: str = "relu",
    ):
        dilations = tuple(int(d) for d in dilations)
        super().__init__(frame_window=frame_window, features=features, dilations=list(dilations),
                         fine_features=fine_features, head_features=head_features, activation=activation)
        if frame_window < 1 or frame_window % 2 == 0:
            raise ValueError(f"model.frame_window: expected a positive odd number of frames, got {frame_window}")
        if not dilations or min(dilations) < 1:
            raise ValueError(f"model.kwargs.dilations: expected positive integers, got {list(dilations)}")
        self.frame_window = frame_window
        self.dilations = dilations
        self.stem = nn.Conv2d(4 * frame_window, features, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(features, features, 3, padding=d, dilation=d) for d in dilations)
        self.unfold = nn.Conv2d(features, 4 * fine_features, 1)
        self.fine = nn.Conv2d(fine_features + frame_window, head_features, 3, padding=1)
        self.out = nn.Conv2d(head_features, len(_NAMES), 1)
        self.act = make_activation(activation)
        nn.init.constant_(self.out.bias[:1], P_BIAS_INIT)

    @property
    def stride(self) -> int:
        return 2

    @property
    def receptive_radius(self) -> int:
        # 2x2 folding (1 px), the stem and each block at half resolution (2 px per
        # half-resolution pixel of reach), the full-resolution 3x3 conv (1 px).
        return 1 + 2 * (1 + sum(self.dilations)) + 1

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        y = self.act(self.stem(F.pixel_unshuffle(frames, 2)))
        for block in self.blocks:
            y = y + self.act(block(y))
        y = self.act(F.pixel_shuffle(self.unfold(y), 2))
        y = self.act(self.fine(torch.cat([y, frames], dim=1)))
        # The output activations in float32 on an NCHW map: under bfloat16 autocast on
        # channels-last slices they ran element by element (one 256x256 batch: 10.5 ->
        # 7.4 ms per frame with this line, profiled).
        raw = self.out(y).float().contiguous()  # NCHW: each channel one contiguous slab
        if not torch.is_grad_enabled():  # inference: in place, no concatenation
            return _activate_in_place(raw)
        out = _activate(dict(zip(_GROUPS, torch.split(raw, list(_GROUPS.values()), dim=1))))
        return torch.cat([out[k] for k in _GROUPS], dim=1)


def _activate_in_place(raw: torch.Tensor) -> torch.Tensor:
    """:func:`~.decode._activate` on the (B, 10, H, W) map in place (p stays a logit)."""
    raw[:, 1:2].sigmoid_()  # photons
    raw[:, 2:5].tanh_()  # x, y, z
    raw[:, 5:9].sigmoid_().mul_(SIGMA_MAX).add_(SIGMA_MIN)  # sigmas
    raw[:, 9:10].sigmoid_()  # background
    return raw
