"""From per-pixel network maps to molecules.

DECODE's spatial integration: candidate pixels are local maxima of the detection
probability; each candidate's probability is the sum over itself and its four
neighbours, so one molecule whose probability is split over two pixels counts
once, while a second pixel above ``split_threshold`` that is not itself a local
maximum is kept as its own molecule (two molecules in adjacent pixels).
Positions are the pixel centre plus the predicted offset.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ScalingConfig

__all__ = ["spatial_integration", "maps_to_candidates"]

_PLUS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])


def spatial_integration(p: torch.Tensor, raw_threshold: float = 0.1, split_threshold: float = 0.6) -> torch.Tensor:
    """(B, H, W) probabilities -> (B, H, W) integrated probabilities (0 off candidates)."""
    p4 = p.unsqueeze(1)
    clipped = torch.where(p4 > raw_threshold, p4, torch.zeros_like(p4))
    local_max = (clipped == F.max_pool2d(clipped, 3, stride=1, padding=1)) & (clipped > 0)
    summed = F.conv2d(clipped, _PLUS.to(p.device, p.dtype).view(1, 1, 3, 3), padding=1)
    second = (~local_max) & (p4 > split_threshold)
    # A split-off second molecule takes its own probability, not the neighbourhood's.
    integrated = torch.where(local_max, summed, torch.where(second, p4, torch.zeros_like(p4)))
    return integrated.clamp(max=1.0).squeeze(1)


@torch.no_grad()
def maps_to_candidates(
    output: torch.Tensor,
    channels: tuple[str, ...],
    scaling: ScalingConfig,
    pixel_size_nm: float,
    frame_offset: int = 0,
    raw_threshold: float = 0.1,
    split_threshold: float = 0.6,
    min_prob: float = 0.1,
) -> dict[str, np.ndarray]:
    """Network output (B, C, H, W) of consecutive frames -> candidate table in nm.

    Every candidate with integrated probability >= ``min_prob`` is kept with its
    ``prob``, so a later, higher threshold re-filters without re-running the net.
    """
    ch = {name: i for i, name in enumerate(channels)}
    p = torch.sigmoid(output[:, ch["p"]].float())
    prob = spatial_integration(p, raw_threshold, split_threshold)
    b, r, c = (prob >= min_prob).nonzero(as_tuple=True)
    take = lambda name: output[b, ch[name], r, c].float()  # noqa: E731
    table = {
        "frame": (b + frame_offset).cpu().numpy().astype(np.int64),
        "x": ((c.float() + 0.5 + take("x")) * pixel_size_nm).cpu().numpy(),
        "y": ((r.float() + 0.5 + take("y")) * pixel_size_nm).cpu().numpy(),
        "z": (take("z") * scaling.z_nm).cpu().numpy(),
        "photons": (take("photons") * scaling.photons).cpu().numpy(),
        "bg": (take("bg") * scaling.background).cpu().numpy() if "bg" in ch else np.full(len(b), np.nan),
        "prob": prob[b, r, c].cpu().numpy(),
    }
    if "sigma_x" in ch:
        table["sigma_x"] = (take("sigma_x") * pixel_size_nm).cpu().numpy()
        table["sigma_y"] = (take("sigma_y") * pixel_size_nm).cpu().numpy()
        table["sigma_z"] = (take("sigma_z") * scaling.z_nm).cpu().numpy()
        table["sigma_photons"] = (take("sigma_photons") * scaling.photons).cpu().numpy()
    return table
