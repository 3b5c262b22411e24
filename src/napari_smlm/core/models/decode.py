"""DECODE-style localization networks: SimpleSMLMNet, DoubleMUnet, SigmaMUNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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

    def _apply_heads(self, features: torch.Tensor, keep_above: float | None = None) -> torch.Tensor:
        """The heads on the trunk's features -> (B, C, H, W). ``keep_above`` (inference
        only): the other heads only where the detection probability exceeds it
        (:meth:`_sparse_heads`); None: everywhere."""
        if torch.is_grad_enabled():
            raw = {k: head(features) for k, head in self.heads.items()}
        elif keep_above is not None:
            return self._sparse_heads(features, keep_above)
        else:
            raw = self._fused_heads(features)
        out = _activate(raw)
        return torch.cat([out[k] for k in self.heads.keys()], dim=1)

    def _sparse_heads(self, features: torch.Tensor, keep_above: float) -> torch.Tensor:
        """Inference: the p head everywhere, the other heads only at pixels whose
        probability exceeds ``keep_above``; their channels are 0 elsewhere.

        Post-processing reads nothing else (candidates and the neighbours pooled with
        them are all above its raw threshold), and such pixels are a few per cent of a
        frame, so the other heads' 3x3 convolution (4/5 of the heads' work) runs as one
        matrix product on the 3x3 patches of those pixels: the same arithmetic at the
        same pixels as the dense convolution (written here: torch offers no sparse
        convolution for CPU inference, and one 3x3 layer needs only this gather).
        All heads share one activation (``heads[0].net[1]``).
        """
        heads = list(self.heads.values())
        b_, _, h, w = features.shape
        logit = heads[0](features).float()[:, 0]  # "p" is the first head
        out = logit.new_zeros(b_, len(self.output_channels), h, w)
        out[:, 0] = logit
        b, r, c = (torch.sigmoid(logit) > keep_above).nonzero(as_tuple=True)
        if len(b) == 0:
            return out
        w1, b1, w2, b2, outs = _stacked_heads(heads[1:])
        # the first layers as one (hidden, 9·C) matrix, in the patches' (dy, dx, c) order
        w1 = w1.permute(0, 2, 3, 1).reshape(len(w1), -1)
        padded = F.pad(features, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
        d = torch.arange(3, device=r.device)
        # rows padded to one of a few sizes: oneDNN keeps a primitive per matrix shape, and
        # a new shape per batch grew the resident memory with the movie
        n = len(b)
        rows = torch.cat([torch.arange(n, device=b.device), b.new_zeros(_bucket(n) - n)])
        bb, rr, cc = b[rows], r[rows], c[rows]
        patches = padded[bb[:, None], rr[:, None] + d.repeat_interleave(3), cc[:, None] + d.repeat(3)]  # (N', 9, C)
        hidden = heads[0].net[1](F.linear(patches.reshape(len(rows), -1), w1, b1))
        y = F.linear(hidden, w2, b2)[:n].float()
        raw = dict(zip(list(self.heads.keys())[1:], torch.split(y, outs, dim=1)))
        act = _activate({"p": y[:, :0], **raw})
        out[b, 1:, r, c] = torch.cat([act[k] for k in raw], dim=1)
        return out

    def _fused_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same heads as one wide 3x3 conv and one block-diagonal 1x1 conv: the
        same arithmetic, but two large convolutions run much faster than ten small
        ones (inference only; training keeps the modules so autograd sees them)."""
        heads = list(self.heads.values())
        w1, b1, w2, b2, outs = _stacked_heads(heads)
        hidden = heads[0].net[1](torch.nn.functional.conv2d(features, w1, b1, padding=1))
        y = torch.nn.functional.conv2d(hidden, w2[:, :, None, None], b2)
        return dict(zip(self.heads.keys(), torch.split(y, outs, dim=1)))


def _stacked_heads(heads: list) -> tuple:
    """Heads (3x3 conv, activation, 1x1 conv) as one: their first convolutions stacked
    (hidden, C, 3, 3) with biases, their second as one block-diagonal (out, hidden)
    matrix with biases, and each head's number of outputs."""
    w1 = torch.cat([h.net[0].weight for h in heads])
    b1 = torch.cat([h.net[0].bias for h in heads])
    c = heads[0].net[0].out_channels
    outs = [h.net[2].out_channels for h in heads]
    w2 = w1.new_zeros(sum(outs), c * len(heads))
    row = 0
    for i, (h, n) in enumerate(zip(heads, outs)):
        w2[row:row + n, i * c:(i + 1) * c] = h.net[2].weight[:, :, 0, 0]
        row += n
    b2 = torch.cat([h.net[2].bias for h in heads])
    return w1, b1, w2, b2, outs


def _bucket(n: int) -> int:
    """``n`` rounded up to the next of 1024, 1280, 1600, ... (steps of 25 %, multiples of
    64): a handful of distinct sizes over a movie, at most a quarter more rows."""
    size = 1024
    while size < n:
        size = (size * 5 // 4 + 63) // 64 * 64
    return size


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

    def _decode(self, features: torch.Tensor, keep_above: float | None = None):
        """The union U-Net's features -> the output (subclasses add to the heads)."""
        return self._apply_heads(features, keep_above)

    def forward_block(self, block, index, cache=None, frame_ids=None, keep_above=None):
        # The shared U-Net sees one frame at a time: run it once per frame of the
        # block and gather its features into windows (each frame serves K windows);
        # with a cache, once per frame across calls too (consecutive batches of windows
        # share K - 1 frames: with 2 windows per batch, half the shared U-Net's work).
        block, h, w = self.pad_to_stride(block)
        if cache is None:
            feats = self.shared(block.unsqueeze(1)).permute(0, 2, 3, 1)  # (F, H, W, C)
        else:
            ids = (frame_ids if frame_ids is not None else torch.arange(len(block))).tolist()
            missing = [i for i, f in enumerate(ids) if f not in cache]
            if missing:
                new = self.shared(block[missing].unsqueeze(1)).permute(0, 2, 3, 1)
                cache.update(zip((ids[i] for i in missing), new))
            feats = torch.stack([cache[f] for f in ids])
            # the next batch of windows starts where this one ends: keep the last K - 1
            # frames (``frame_ids`` ascend), as copies, so that the rest can be freed
            cache.clear()
            keep = index.shape[1] - 1
            cache.update((ids[j], feats[j].clone()) for j in range(max(0, len(ids) - keep), len(ids)))
        b, k = index.shape
        _, hh, ww, c = feats.shape
        # windows (B, K·C, H, W) in channels-last memory, channel k·C + c (as a
        # reshape of NCHW features; that reshape would copy them into NCHW)
        windows = feats[index.reshape(-1)].reshape(b, k, hh, ww, c).permute(0, 2, 3, 1, 4) \
            .reshape(b, hh, ww, k * c).permute(0, 3, 1, 2)
        return self._crop(self._decode(self.union(windows), keep_above), h, w)


@register_model("sigma_munet")
class SigmaMUNet(DoubleMUnet):
    """DoubleMUnet with DECODE's 10 outputs: p, photons, x, y, z, four σ's, bg."""

    with_sigma = True
