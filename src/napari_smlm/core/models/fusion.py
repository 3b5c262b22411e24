"""Fusion U-Net (``fusion_unet``): two encoders of different families, fused per scale.

A VGG-style encoder (plain 3x3 conv stacks) and a ResNet-style encoder
(bottleneck residual blocks) read two inputs — by default the centre frame and
its temporal context (all K frames), or the two channels of a two-channel movie
(``inputs: channels``, K = 2). At every scale their features are fused
(concatenation + 1x1 conv, or a learned per-channel attention gate between
the two) and a single U-Net decoder with skip connections from the fused
features feeds DECODE-style heads (10 outputs with σ's, so every loss applies).
Written with torch.nn only; nothing is downloaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import register_model
from .decode import _HeadedModel
from .unet import conv_block, make_activation

__all__ = ["FusionUNet"]


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce, 3x3, 1x1 expand, identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, activation: str):
        super().__init__()
        mid = max(4, c_out // 4)
        self.body = nn.Sequential(
            nn.Conv2d(c_in, mid, 1), make_activation(activation), nn.Conv2d(mid, mid, 3, padding=1),
            make_activation(activation), nn.Conv2d(mid, c_out, 1),
        )
        self.short = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.act = make_activation(activation)

    def forward(self, x):
        return self.act(self.body(x) + self.short(x))


class Fuse(nn.Module):
    def __init__(self, c: int, mode: str, activation: str):
        super().__init__()
        self.mode = mode
        if mode == "concat":
            self.net = nn.Sequential(nn.Conv2d(2 * c, c, 1), make_activation(activation))
        elif mode == "attention":
            # squeeze-and-excitation style gate deciding, per channel, how much of each encoder to take
            self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * c, max(4, c // 4), 1), nn.ReLU(),
                                      nn.Conv2d(max(4, c // 4), c, 1), nn.Sigmoid())
        else:
            raise ValueError(f"model.kwargs.fusion: expected 'concat' or 'attention', got {mode!r}")

    def forward(self, a, b):
        both = torch.cat([a, b], 1)
        if self.mode == "concat":
            return self.net(both)
        g = self.gate(both)
        return g * a + (1 - g) * b


@register_model("fusion_unet")
class FusionUNet(_HeadedModel):
    def __init__(
        self,
        frame_window: int = 3,
        depth: int = 2,
        initial_features: int = 32,
        fusion: str = "concat",
        inputs: str = "centre_context",
        activation: str = "elu",
        with_sigma: bool = True,
    ):
        super().__init__(frame_window=frame_window, depth=depth, initial_features=initial_features, fusion=fusion,
                         inputs=inputs, activation=activation, with_sigma=with_sigma)
        if inputs not in ("centre_context", "channels"):
            raise ValueError(f"model.kwargs.inputs: expected 'centre_context' or 'channels', got {inputs!r}")
        if inputs == "channels" and frame_window != 2:
            raise ValueError("model.kwargs.inputs: 'channels' reads a two-channel movie; set model.frame_window: 2")
        self.inputs = inputs
        self.depth = depth
        feats = [initial_features * 2**i for i in range(depth + 1)]
        c_a, c_b = (1, frame_window) if inputs == "centre_context" else (1, 1)
        self.vgg, self.res, self.fuse = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i, c in enumerate(feats):
            self.vgg.append(conv_block(c_a if i == 0 else feats[i - 1], c, activation, None))
            self.res.append(nn.Sequential(Bottleneck(c_b if i == 0 else feats[i - 1], c, activation), Bottleneck(c, c, activation)))
            self.fuse.append(Fuse(c, fusion, activation))
        self.ups = nn.ModuleList(nn.Conv2d(feats[i + 1], feats[i], 3, padding=1) for i in reversed(range(depth)))
        self.decoders = nn.ModuleList(conv_block(2 * feats[i], feats[i], activation, None) for i in reversed(range(depth)))
        self._make_heads(feats[0], activation, with_sigma=with_sigma, with_background=True)

    @property
    def stride(self) -> int:
        return 2**self.depth

    @property
    def receptive_radius(self) -> int:
        # per level at scale s: encoder 2s (VGG) or 2s (bottlenecks: two 3x3), pooling 2s,
        # bilinear 2s + 3x3 s, decoder 2s; bottom 2 · 2**depth; head 1
        return 9 * (2**self.depth - 1) + 2 * 2**self.depth + 1

    def _split(self, frames):
        if self.inputs == "channels":
            return frames[:, :1], frames[:, 1:2]
        k = frames.shape[1] // 2
        return frames[:, k:k + 1], frames

    def _forward(self, frames):
        a, b = self._split(frames)
        skips = []
        for i in range(self.depth + 1):
            a, b = self.vgg[i](a), self.res[i](b)
            fused = self.fuse[i](a, b)
            skips.append(fused)
            if i < self.depth:
                a, b = F.max_pool2d(a, 2), F.max_pool2d(b, 2)
        x = skips[-1]
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips[:-1])):
            x = up(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
            x = dec(torch.cat([x, skip], 1))
        return self._apply_heads(x)
