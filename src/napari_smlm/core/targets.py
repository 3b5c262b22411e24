"""Emitter lists -> per-pixel training targets (in the network's scaled units)."""

from __future__ import annotations

import torch

from .config import ScalingConfig

__all__ = ["pixel_targets"]


def pixel_targets(batch: dict[str, torch.Tensor], shape: tuple[int, int], scaling: ScalingConfig) -> dict[str, torch.Tensor]:
    """Per-pixel targets of the centre frame.

    ``batch`` holds padded emitters (B, M): ``x_px, y_px, z_nm, photons, mask``
    and optionally ``background`` (B, H, W). Returns (B, H, W) maps: ``p`` (1 in
    the pixel holding an emitter), ``x``/``y`` (offset from that pixel's centre in
    pixels), ``z``, ``photons``, and ``bg``, scaled as the network predicts them.
    Where two emitters share a pixel, one of them is kept (per-pixel models cannot
    represent both; that is what the Gaussian-mixture loss is for).
    """
    h, w = shape
    mask = batch["mask"]
    b_idx, m_idx = mask.nonzero(as_tuple=True)
    x = batch["x_px"][b_idx, m_idx]
    y = batch["y_px"][b_idx, m_idx]
    col = x.floor().long().clamp(0, w - 1)
    row = y.floor().long().clamp(0, h - 1)
    ref = batch["x_px"]
    out = {k: ref.new_zeros((mask.shape[0], h, w)) for k in ("p", "x", "y", "z", "photons")}
    out["p"][b_idx, row, col] = 1.0
    out["x"][b_idx, row, col] = x - (col.to(x.dtype) + 0.5)
    out["y"][b_idx, row, col] = y - (row.to(y.dtype) + 0.5)
    out["z"][b_idx, row, col] = batch["z_nm"][b_idx, m_idx] / scaling.z_nm
    out["photons"][b_idx, row, col] = batch["photons"][b_idx, m_idx] / scaling.photons
    if "background" in batch:
        out["bg"] = batch["background"] / scaling.background
    return out


def targets_at_scale(batch: dict[str, torch.Tensor], shape: tuple[int, int], scaling: ScalingConfig, scale: int) -> dict[str, torch.Tensor]:
    """:func:`pixel_targets` on a grid ``scale`` times finer than the camera's:
    cell (i, j) covers camera pixels [i/scale, (i+1)/scale); offsets are in fine
    cells; background stays photons per camera pixel (nearest-upsampled)."""
    h, w = shape
    fine = {**batch, "x_px": batch["x_px"] * scale, "y_px": batch["y_px"] * scale}
    if "background" in batch:
        fine["background"] = batch["background"].repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    return pixel_targets(fine, (h * scale, w * scale), scaling)


def condition_maps(batch: dict[str, torch.Tensor], shape: tuple[int, int], scaling: ScalingConfig, scales: list[int]) -> list[torch.Tensor]:
    """Teacher-forcing inputs of a multi-scale model: per scale a (B, 6, H·s, W·s)
    map (p as 0/1, photons, x, y, z, bg) built from the true emitters."""
    out = []
    for s in scales:
        t = targets_at_scale(batch, shape, scaling, s)
        bg = t.get("bg", torch.zeros_like(t["p"]))
        out.append(torch.stack([t["p"], t["photons"], t["x"], t["y"], t["z"], bg], 1))
    return out
