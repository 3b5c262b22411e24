"""U-Net building block (`unet2d`), following DECODE's UNet2d."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet2d", "make_activation", "make_norm"]

_ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}


def make_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"model.kwargs.activation: unknown activation {name!r}; known: {sorted(_ACTIVATIONS)}") from None


def make_norm(name: str | None, channels: int) -> nn.Module:
    if name in (None, "none"):
        return nn.Identity()
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"model.kwargs.norm: unknown norm {name!r}; expected none, batch, group or instance")


def conv_block(c_in: int, c_out: int, activation: str, norm: str | None) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        make_norm(norm, c_out),
        make_activation(activation),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        make_norm(norm, c_out),
        make_activation(activation),
    )


class UNet2d(nn.Module):
    """2D U-Net. Input (B, in_channels, H, W) -> (B, out_channels, H, W).

    H and W must be multiples of ``2**depth`` (:class:`~.base.SMLMModel` pads).

    Parameters
    ----------
    depth : number of down-sampling steps.
    initial_features : channels at full resolution; doubled at each level.
    pooling : ``max`` (max-pool) or ``conv`` (strided convolution).
    upsampling : ``bilinear`` (interpolate + conv) or ``transpose`` (transposed conv).
    final_activation : activation applied to the output (None for a linear output).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 2,
        initial_features: int = 48,
        activation: str = "elu",
        norm: str | None = None,
        pooling: str = "max",
        upsampling: str = "bilinear",
        final_activation: str | None = None,
    ):
        super().__init__()
        if pooling not in ("max", "conv"):
            raise ValueError(f"model.kwargs.pooling: expected 'max' or 'conv', got {pooling!r}")
        if upsampling not in ("bilinear", "transpose"):
            raise ValueError(f"model.kwargs.upsampling: expected 'bilinear' or 'transpose', got {upsampling!r}")
        self.depth = depth
        feats = [initial_features * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = in_channels
        for i in range(depth):
            self.encoders.append(conv_block(c, feats[i], activation, norm))
            self.pools.append(
                nn.MaxPool2d(2) if pooling == "max" else nn.Conv2d(feats[i], feats[i], 2, stride=2)
            )
            c = feats[i]
        self.bottom = conv_block(c, feats[depth], activation, norm)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.upsampling = upsampling
        for i in reversed(range(depth)):
            if upsampling == "transpose":
                self.ups.append(nn.ConvTranspose2d(feats[i + 1], feats[i], 2, stride=2))
            else:
                self.ups.append(nn.Conv2d(feats[i + 1], feats[i], 3, padding=1))
            self.decoders.append(conv_block(2 * feats[i], feats[i], activation, norm))
        self.out = nn.Conv2d(feats[0], out_channels, 1)
        self.final_activation = make_activation(final_activation) if final_activation else nn.Identity()

    @property
    def stride(self) -> int:
        return 2**self.depth

    @property
    def receptive_radius(self) -> int:
        """An upper bound, in input pixels, on how far an output pixel can see.

        Per level at scale s = 2**i: two 3x3 convs down (2s), pooling (<= 2s),
        upsampling (bilinear 2s + 3x3 conv s, or transposed conv 2s), two 3x3 convs
        up (2s); plus the bottom block (2 · 2**depth). Tiled inference uses it as
        the halo, so that tiles give exactly the untiled result.
        """
        per_level = 9 if self.upsampling == "bilinear" else 8
        return per_level * (2**self.depth - 1) + 2 * 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc, pool in zip(self.encoders, self.pools):
            x = enc(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            if self.upsampling == "bilinear":
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(x)
            x = dec(torch.cat([x, skip], dim=1))
        return self.final_activation(self.out(x))
