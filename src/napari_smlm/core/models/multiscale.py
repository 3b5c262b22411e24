"""Multi-scale progressive emitter prediction (``multiscale_var``).

VAR-style next-scale prediction: a CNN encoder reads the K-frame window; a map at
the camera grid (scale 1) is predicted from its features (optionally vector-
quantized); then each finer scale s (2x, 4x, 8x the camera grid) is predicted by
a transformer conditioned on the upsampled coarser maps: teacher-forced with the
true coarser maps in training, coarse-to-fine from its own predictions at
inference. On a fine grid two molecules inside one camera pixel fall into
different cells, which is where per-pixel models fail at high density.

Tokens are camera cells; each token predicts the s x s cells it covers (pixel
shuffle), and attention runs inside non-overlapping windows of ``window`` x
``window`` cells, so cost grows linearly with the frame and tiled inference stays
exact (tile origins fall on the window grid). Every scale outputs 6 channels:
p logits, photons, dx, dy (offsets from that scale's cell centre, in its cells), z, bg.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SMLMModel, register_model
from .decode import P_BIAS_INIT, SIGMA_MAX, SIGMA_MIN, SigmaMUNet
from .unet import make_activation

__all__ = ["VectorQuantizer", "MultiScaleVAR", "MultiScaleMUNet", "SCALE_CHANNELS"]

SCALE_CHANNELS = ("p", "photons", "x", "y", "z", "bg")


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantization with a straight-through gradient.

    Returns the quantized tensor (B, D, H, W) and the VQ loss
    ``||sg(z) - e||² + commitment · ||z - sg(e)||²`` (van den Oord et al. 2017).
    """

    def __init__(self, codebook_size: int = 256, embedding_dim: int = 32, commitment: float = 0.25):
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, embedding_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self.commitment = commitment

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.weight.t()
                + self.codebook.weight.pow(2).sum(1).unsqueeze(0))
        index = dist.argmin(1)
        q = self.codebook(index).view(b, h, w, d).permute(0, 3, 1, 2)
        loss = F.mse_loss(q, z.detach()) + self.commitment * F.mse_loss(z, q.detach())
        q = z + (q - z).detach()  # straight-through estimator
        return q, loss, index.view(b, h, w)


class WindowBlock(nn.Module):
    """Pre-norm transformer block with self-attention inside windows of cells."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        b, c, h, w = x.shape
        s = self.window
        t = x.view(b, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1).reshape(-1, s * s, c)
        y = self.norm1(t)
        t = t + self.attn(y, y, y, need_weights=False)[0]
        t = t + self.mlp(self.norm2(t))
        return t.view(b, h // s, w // s, s, s, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


@register_model("multiscale_var")
class MultiScaleVAR(SMLMModel):
    """See the module docstring. ``forward`` returns the finest scale's map
    (B, 6, H·S, W·S); :attr:`output_scale` = S tells post-processing the cell size."""

    def __init__(
        self,
        frame_window: int = 3,
        scales: tuple[int, ...] | list[int] = (2, 4, 8),
        base_channels: int = 32,
        embed_dim: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        window: int = 8,
        use_vq: bool = False,
        codebook_size: int = 256,
        embedding_dim: int = 32,
        commitment: float = 0.25,
        activation: str = "elu",
        input_size: int | list[int] | None = None,  # informational (training frame size)
    ):
        scales = [int(s) for s in scales]
        if not scales or any(b != 2 * a for a, b in zip([1, *scales[:-1]], scales)):
            raise ValueError(f"model.kwargs.scales: expected doubling scales such as [2, 4, 8], got {scales}")
        super().__init__(frame_window=frame_window, scales=scales, base_channels=base_channels, embed_dim=embed_dim,
                         num_heads=num_heads, num_layers=num_layers, window=window, use_vq=use_vq,
                         codebook_size=codebook_size, embedding_dim=embedding_dim, commitment=commitment,
                         activation=activation, input_size=input_size)
        self.scales = [1, *scales]
        self.window = window
        c = base_channels
        act = lambda: make_activation(activation)  # noqa: E731
        self.encoder = nn.Sequential(
            nn.Conv2d(frame_window, c, 3, padding=1), act(), nn.Conv2d(c, c, 3, padding=1), act(),
            nn.Conv2d(c, c, 3, padding=2, dilation=2), act(), nn.Conv2d(c, c, 3, padding=4, dilation=4), act(),
        )
        self.use_vq = use_vq
        if use_vq:
            self.pre_vq = nn.Conv2d(c, embedding_dim, 1)
            self.vq = VectorQuantizer(codebook_size, embedding_dim, commitment)
            self.post_vq = nn.Conv2d(embedding_dim, c, 1)
            self.recon = nn.Conv2d(c, 1, 3, padding=1)  # reconstructs the centre frame
        self.coarse_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), act(), nn.Conv2d(c, 6, 1))
        nn.init.constant_(self.coarse_head[-1].bias[0], -6.0)
        self.feature_proj = nn.Conv2d(c, embed_dim, 1)
        # per finer scale: the coarser map, unshuffled to camera cells (6 · (s/2)² channels)
        self.cond_proj = nn.ModuleList(nn.Conv2d(6 * (s // 2) ** 2, embed_dim, 1) for s in self.scales[1:])
        self.scale_embed = nn.Parameter(torch.zeros(len(self.scales) - 1, embed_dim, 1, 1))
        self.blocks = nn.ModuleList(WindowBlock(embed_dim, num_heads, window) for _ in range(num_layers))
        self.heads = nn.ModuleList(nn.Conv2d(embed_dim, 6 * s * s, 1) for s in self.scales[1:])
        for head, s in zip(self.heads, self.scales[1:]):
            with torch.no_grad():
                head.bias.view(6, s * s)[0].fill_(-6.0)
        self.output_channels = SCALE_CHANNELS

    @property
    def stride(self) -> int:
        return self.window

    @property
    def output_scale(self) -> int:
        return self.scales[-1]

    @property
    def receptive_radius(self) -> int:
        # 2 convs (1 each) + dilated 2 and 4, the coarse head's 3x3, and a whole window.
        return 1 + 1 + 2 + 4 + 1 + self.window

    @staticmethod
    def _activate(raw: torch.Tensor) -> torch.Tensor:
        """Raw 6-channel map -> (p logit, photons, dx, dy, z, bg) in their ranges."""
        return torch.cat([raw[:, :1], torch.sigmoid(raw[:, 1:2]), torch.tanh(raw[:, 2:5]), torch.sigmoid(raw[:, 5:6])], 1)

    @staticmethod
    def as_condition(m: torch.Tensor) -> torch.Tensor:
        """A map used as conditioning: p as a probability, the rest as predicted."""
        return torch.cat([torch.sigmoid(m[:, :1]), m[:, 1:]], 1)

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict]:
        feats = self.encoder(frames)
        extras: dict = {}
        if self.use_vq:
            q, vq_loss, _ = self.vq(self.pre_vq(feats))
            feats = self.post_vq(q)
            extras["vq_loss"] = vq_loss
            extras["recon"] = self.recon(feats)
        return feats, extras

    def predict_scale(self, i: int, tokens: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
        """Scale ``self.scales[i + 1]`` from encoder tokens and the coarser map
        (at scale ``self.scales[i]``, already in conditioning form)."""
        s_prev, s = self.scales[i], self.scales[i + 1]
        cond = F.pixel_unshuffle(coarser, s_prev) if s_prev > 1 else coarser
        x = tokens + self.cond_proj[i](cond) + self.scale_embed[i]
        for block in self.blocks:
            x = block(x)
        return self._activate(F.pixel_shuffle(self.heads[i](x), s))

    def forward_scales(self, frames: torch.Tensor, teacher: list[torch.Tensor] | None = None) -> dict:
        """All scales. ``teacher[i]`` (conditioning form) replaces the prediction at
        scale ``self.scales[i]`` as input to the next scale (teacher forcing)."""
        frames, h, w = self.pad_to_stride(frames)
        feats, extras = self.encode(frames)
        maps = [self._activate(self.coarse_head(feats))]
        tokens = self.feature_proj(feats)
        for i in range(len(self.scales) - 1):
            cond = teacher[i] if teacher is not None else self.as_condition(maps[-1])
            maps.append(self.predict_scale(i, tokens, cond))
        out = {s: m[..., : h * s, : w * s] for s, m in zip(self.scales, maps)}
        return {"scales": out, **extras}

    def forward(self, frames: torch.Tensor, teacher: list[torch.Tensor] | None = None):
        """Finest map (B, 6, H·S, W·S); with ``teacher`` (training), the dict of
        all scales and the VQ terms, teacher-forced."""
        if teacher is not None:
            return self.forward_scales(frames, teacher)
        return self.forward_scales(frames)["scales"][self.scales[-1]]


@register_model("multiscale_munet")
class MultiScaleMUNet(SigmaMUNet):
    """DECODE's SigmaMUNet with a next-scale head: on top of its camera-grid
    prediction, a map ``fine_scale`` times finer (two molecules in one camera pixel
    fall into different cells), predicted from the trunk's features *and* the
    camera-grid prediction (next-scale prediction on a strong trunk, issue 15).

    Both scales carry DECODE's ten channels (p logit, photons, x, y, z offsets from
    their own cell centre in their own cells, four σ's in their own cells, bg);
    the fine map's bg is the camera grid's, repeated. Trained with the Gaussian-mixture
    loss on every scale (it needs no per-cell targets, so a fine grid's sparsity
    does not matter); ``forward`` returns the fine map, and in training mode (grad
    enabled) the dict ``{"scales": {1: camera grid, s: fine}}`` the losses take.
    """

    def __init__(self, fine_scale: int = 2, fine_features: int = 32, fine_mode: str = "upsample", **kwargs):
        if not kwargs.get("with_background", True):
            raise ValueError("model.kwargs.with_background: multiscale_munet needs the background head")
        super().__init__(**kwargs)
        self.init_kwargs.update(fine_scale=fine_scale, fine_features=fine_features, fine_mode=fine_mode)
        if fine_scale not in (2, 4):
            raise ValueError(f"model.kwargs.fine_scale: expected 2 or 4, got {fine_scale}")
        if fine_mode not in ("shuffle", "upsample"):
            raise ValueError(f"model.kwargs.fine_mode: expected 'shuffle' or 'upsample', got {fine_mode!r}")
        self.fine_scale, self.fine_mode = int(fine_scale), fine_mode
        c_in = self.heads["p"].net[0].in_channels + len(self.output_channels)
        act = lambda: make_activation(kwargs.get("activation", "elu"))  # noqa: E731
        # shuffle: convolutions on the camera grid, each pixel's s x s cells from its own
        # output channels; upsample: features interpolated to the fine grid, convolved there
        n_out = 9 * self.fine_scale ** 2 if fine_mode == "shuffle" else 9
        self.fine = nn.Sequential(
            nn.Conv2d(c_in, fine_features, 3, padding=1), act(),
            nn.Conv2d(fine_features, fine_features, 3, padding=1), act(),
            nn.Conv2d(fine_features, n_out, 1),
        )
        with torch.no_grad():  # channel-major (after pixel shuffle): the first outputs are p
            self.fine[-1].bias[: n_out // 9].fill_(P_BIAS_INIT)

    @property
    def output_scale(self) -> int:
        return self.fine_scale

    def _decode(self, feats: torch.Tensor, keep_above: float | None = None) -> dict:
        coarse = self._apply_heads(feats)  # dense: the fine head reads all of it
        cond = MultiScaleVAR.as_condition(coarse)  # p as a probability, the rest as predicted
        s = self.fine_scale
        if self.fine_mode == "shuffle":
            raw = F.pixel_shuffle(self.fine(torch.cat([feats, cond], 1)), s)
        else:
            raw = self.fine(F.interpolate(torch.cat([feats, cond], 1), scale_factor=s, mode="bilinear", align_corners=False))
        bg = coarse[:, 9:10].repeat_interleave(s, -2).repeat_interleave(s, -1)
        fine = torch.cat([raw[:, :1], torch.sigmoid(raw[:, 1:2]), torch.tanh(raw[:, 2:5]),
                          torch.sigmoid(raw[:, 5:9]) * SIGMA_MAX + SIGMA_MIN, bg], 1)
        return {1: coarse, s: fine}

    def _crop(self, maps: dict, h: int, w: int):
        maps = {s: m[..., : h * s, : w * s] for s, m in maps.items()}
        if self.training and torch.is_grad_enabled():
            return {"scales": maps}
        return maps[self.fine_scale]
