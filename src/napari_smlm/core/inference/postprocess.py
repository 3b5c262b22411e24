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

__all__ = ["spatial_integration", "maps_to_candidates", "non_maximum_suppression", "filter_table", "select_rows"]

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
    zeros = torch.zeros(len(b), device=output.device)
    take = lambda name: output[b, ch[name], r, c].float() if name in ch else zeros  # noqa: E731
    if "x" in ch:
        dx, dy = take("x"), take("y")
    else:  # no offset heads: probability-weighted centroid over the 3x3 neighbourhood
        dx, dy = _centroid_offsets(p, b, r, c)
    table = {
        "frame": (b + frame_offset).cpu().numpy().astype(np.int64),
        "x": ((c.float() + 0.5 + dx) * pixel_size_nm).cpu().numpy(),
        "y": ((r.float() + 0.5 + dy) * pixel_size_nm).cpu().numpy(),
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


def _centroid_offsets(p: torch.Tensor, b, r, c) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets (pixels) of the probability-weighted centroid of each candidate's 3x3."""
    padded = torch.nn.functional.pad(p, (1, 1, 1, 1))
    d = torch.arange(-1, 2, device=p.device, dtype=p.dtype)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    patch = torch.stack([padded[b, r + 1 + int(i), c + 1 + int(j)] for i, j in zip(dy.flatten(), dx.flatten())], 1)
    total = patch.sum(1).clamp_min(1e-12)
    return (patch * dx.flatten()).sum(1) / total, (patch * dy.flatten()).sum(1) / total


def select_rows(table: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[keep] for k, v in table.items()}


def non_maximum_suppression(table: dict[str, np.ndarray], radius_nm: float) -> np.ndarray:
    """Boolean mask keeping, within each frame, no two localizations closer than
    ``radius_nm``: the more probable one survives (greedy, in order of ``prob``)."""
    from scipy.spatial import cKDTree

    n = len(table["frame"])
    keep = np.ones(n, bool)
    if n < 2 or radius_nm <= 0:
        return keep
    # Frames as a third coordinate far apart, so pairs are only found within a frame.
    span = 10.0 * (max(np.ptp(table["x"]), np.ptp(table["y"])) + radius_nm + 1.0)
    pts = np.stack([table["x"], table["y"], table["frame"].astype(float) * span], 1)
    pairs = cKDTree(pts).query_pairs(radius_nm, output_type="ndarray")
    if len(pairs) == 0:
        return keep
    order = np.argsort(-np.asarray(table["prob"]), kind="stable")
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    for i in order:
        if keep[i] and i in neighbours:
            for j in neighbours[i]:
                if rank[j] > rank[i]:
                    keep[j] = False
    return keep


def filter_table(
    table: dict[str, np.ndarray],
    threshold: float = 0.5,
    min_photons: float | None = None,
    max_uncertainty_nm: float | None = None,
) -> dict[str, np.ndarray]:
    """Re-filter cached candidates (no network run): probability threshold, and
    optional photon and lateral-uncertainty limits."""
    keep = np.asarray(table["prob"]) >= threshold
    if min_photons is not None:
        keep &= np.asarray(table["photons"]) >= min_photons
    if max_uncertainty_nm is not None and "sigma_x" in table:
        sxy = np.sqrt(0.5 * (np.asarray(table["sigma_x"]) ** 2 + np.asarray(table["sigma_y"]) ** 2))
        keep &= sxy <= max_uncertainty_nm
    return select_rows(table, keep)
