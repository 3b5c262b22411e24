"""DECODE-style localization networks: SimpleSMLMNet, DoubleMUnet, SigmaMUNet."""

from __future__ import annotations

import torch
from torch import nn

from .base import SMLMModel, register_model
from .unet import UNet2d, make_activation

__all__ = ["SimpleSMLMNet", "DoubleMUnet", "SigmaMUNet"]

P_BIAS_INIT = -6.0  # as DECODE: start with a low detection probability everywhere
SIGMA_MAX, SIGMA_MIN = 3.0, 0.01  # predicted sigmas: SIGMA_MIN + SIGMA_MAX * sigmoid, bounded away from 0


class Head(nn.Module):
    """3×3 conv + activation + 1×1 conv, as DECODE's multi-task heads."""

    def __init__(self, c_in: int, c_out: int, activation: str):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=1), make_activation(activation), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x):
        return self.net(x)


def _activate(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel output activations (p stays a logit)."""
    out = {"p": raw["p"], "photons": torch.sigmoid(raw["photons"]), "xyz": torch.tanh(raw["xyz"])}
    if "sigma" in raw:
        out["sigma"] = torch.sigmoid(raw["sigma"]) * SIGMA_MAX + SIGMA_MIN
    if "bg" in raw:
        out["bg"] = torch.sigmoid(raw["bg"])
    return out


class _HeadedModel(SMLMModel):
    """Shared head logic: one head per channel group, concatenated in channel order."""

    def _make_heads(self, features: int, activation: str, with_sigma: bool, with_background: bool):
        groups = {"p": 1, "photons": 1, "xyz": 3}
        if with_sigma:
            groups["sigma"] = 4
        if with_background:
            groups["bg"] = 1
        self.heads = nn.ModuleDict({k: Head(features, n, activation) for k, n in groups.items()})
        nn.init.constant_(self.heads["p"].net[-1].bias, P_BIAS_INIT)
        names = ["p", "photons", "x", "y", "z"]
        if with_sigma:
            names += ["sigma_photons", "sigma_x", "sigma_y", "sigma_z"]
        if with_background:
            names += ["bg"]
        self.output_channels = tuple(names)

    def _apply_heads(self, features: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raw = {k: head(features) for k, head in self.heads.items()}
        else:
            raw = self._fused_heads(features)
        out = _activate(raw)
        return torch.cat([out[k] for k in self.heads.keys()], dim=1)

    def _fused_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same heads as one wide 3x3 conv and one block-diagonal 1x1 conv: the
        same arithmetic, but two large convolutions run much faster than ten small
        ones (inference only; training keeps the modules so autograd sees them)."""
        heads = list(self.heads.values())
        w1 = torch.cat([h.net[0].weight for h in heads])
        b1 = torch.cat([h.net[0].bias for h in heads])
        c = heads[0].net[0].out_channels
        outs = [h.net[2].out_channels for h in heads]
        w2 = w1.new_zeros(sum(outs), c * len(heads), 1, 1)
        row = 0
        for i, (h, n) in enumerate(zip(heads, outs)):
            w2[row:row + n, i * c:(i + 1) * c] = h.net[2].weight
            row += n
        b2 = torch.cat([h.net[2].bias for h in heads])
        hidden = heads[0].net[1](torch.nn.functional.conv2d(features, w1, b1, padding=1))
        y = torch.nn.functional.conv2d(hidden, w2, b2)
        return dict(zip(self.heads.keys(), torch.split(y, outs, dim=1)))


@register_model("simple_smlm_net")
class SimpleSMLMNet(_HeadedModel):
    """One U-Net over the K-frame window stacked as channels (K = 1: a single frame).

    5 outputs (p, photons, x, y, z) or 6 with ``with_background``.
    """

    def __init__(
        self,
        frame_window: int = 1,
        depth: int = 2,
        initial_features: int = 32,
        activation: str = "elu",
        norm: str | None = None,
        pooling: str = "max",
        upsampling: str = "bilinear",
        with_background: bool = True,
    ):
        super().__init__(
            frame_window=frame_window, depth=depth, initial_features=initial_features, activation=activation,
            norm=norm, pooling=pooling, upsampling=upsampling, with_background=with_background,
        )
        self.unet = UNet2d(frame_window, initial_features, depth, initial_features, activation, norm, pooling,
                           upsampling, final_activation=activation)
        self._make_heads(initial_features, activation, with_sigma=False, with_background=with_background)

    @property
    def stride(self) -> int:
        return self.unet.stride

    @property
    def receptive_radius(self) -> int:
        return self.unet.receptive_radius + 1  # + the heads' 3x3 conv

    def _forward(self, frames):
        return self._apply_heads(self.unet(frames))


@register_model("double_munet")
class DoubleMUnet(_HeadedModel):
    """DECODE's DoubleMUnet: a shared U-Net on each of the K frames, their features
    concatenated, then a union U-Net; the centre frame is predicted."""

    with_sigma = False

    def __init__(
        self,
        frame_window: int = 3,
        depth_shared: int = 2,
        depth_union: int = 2,
        initial_features: int = 48,
        inter_features: int = 48,
        activation: str = "elu",
        norm: str | None = None,
        pooling: str = "max",
        upsampling: str = "bilinear",
        with_background: bool = True,
    ):
        super().__init__(
            frame_window=frame_window, depth_shared=depth_shared, depth_union=depth_union,
            initial_features=initial_features, inter_features=inter_features, activation=activation, norm=norm,
            pooling=pooling, upsampling=upsampling, with_background=with_background,
        )
        if frame_window not in (1, 3):
            raise ValueError(f"model.frame_window: {self.architecture} supports 1 or 3 frames, got {frame_window}")
        self.frame_window = frame_window
        self.shared = UNet2d(1, inter_features, depth_shared, initial_features, activation, norm, pooling,
                             upsampling, final_activation=activation)
        self.union = UNet2d(frame_window * inter_features, inter_features, depth_union, initial_features,
                            activation, norm, pooling, upsampling, final_activation=activation)
        self._make_heads(inter_features, activation, with_sigma=self.with_sigma, with_background=with_background)

    @property
    def stride(self) -> int:
        return max(self.shared.stride, self.union.stride)

    @property
    def receptive_radius(self) -> int:
        return self.shared.receptive_radius + self.union.receptive_radius + 1

    def _forward(self, frames):
        b, k, h, w = frames.shape
        if k != self.frame_window:
            raise ValueError(f"{self.architecture}: expected {self.frame_window} frames per window, got {k}")
        feats = self.shared(frames.reshape(b * k, 1, h, w)).reshape(b, -1, h, w)
        return self._decode(self.union(feats))

    def _decode(self, features: torch.Tensor):
        """The union U-Net's features -> the output (subclasses add to the heads)."""
        return self._apply_heads(features)

    def forward_block(self, block, index):
        # The shared U-Net sees one frame at a time: run it once per frame of the
        # block and gather its features into windows (each frame serves K windows).
        block, h, w = self.pad_to_stride(block)
        feats = self.shared(block.unsqueeze(1))  # (F, C, H, W)
        b, k = index.shape
        windows = feats[index.reshape(-1)].reshape(b, k * feats.shape[1], *feats.shape[-2:])
        return self._crop(self._decode(self.union(windows)), h, w)


@register_model("sigma_munet")
class SigmaMUNet(DoubleMUnet):
    """DoubleMUnet with DECODE's 10 outputs: p, photons, x, y, z, four σ's, bg."""

    with_sigma = True
