"""From per-pixel network maps to molecules.

DECODE's spatial integration: candidate pixels are local maxima of the detection
probability; each candidate's probability is the sum over itself and its four
neighbours, so one molecule whose probability is split over two pixels counts
once, while a second pixel above ``split_threshold`` that is not itself a local
maximum is kept as its own molecule (two molecules in adjacent pixels).
Positions are the pixel centre plus the predicted offset, pooled with the predictions
of neighbouring pixels that agree with it and are not candidates themselves (:func:`_pooled`).

On a grid finer than the camera's (multi-scale models, ``scale`` cells per camera
pixel) a molecule's probability spreads over several cells, since its position is
only known to its localization precision, not to one 12.5 nm cell: there the
neighbourhood grows with the scale (:func:`fine_grid_window`), candidates are local
maxima of the neighbourhood sum, and positions, photons and z are the
probability-weighted means over the neighbourhood.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ScalingConfig

__all__ = ["spatial_integration", "maps_to_candidates", "non_maximum_suppression", "filter_table", "select_rows",
           "RAW_THRESHOLD"]

# Pixels at or below this probability are neither candidates nor pooled with one.
RAW_THRESHOLD = 0.1

def _plus_sum(x: torch.Tensor) -> torch.Tensor:
    """Each pixel plus its four neighbours (zero outside the frame), for (..., H, W).
    Shifted adds: a one-channel 3x3 convolution costs ~20x more on a CPU (measured)."""
    q = F.pad(x, (1, 1, 1, 1))
    return x + q[..., :-2, 1:-1] + q[..., 2:, 1:-1] + q[..., 1:-1, :-2] + q[..., 1:-1, 2:]


def _max_3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 neighbourhood maximum of a map >= 0 (zero outside the frame), separably
    with shifted maxima (cheaper than max_pool2d, which also builds indices)."""
    q = F.pad(x, (1, 1, 0, 0))
    m = torch.maximum(torch.maximum(q[..., :-2], q[..., 1:-1]), q[..., 2:])
    q = F.pad(m, (0, 0, 1, 1))
    return torch.maximum(torch.maximum(q[..., :-2, :], q[..., 1:-1, :]), q[..., 2:, :])


def spatial_integration(p: torch.Tensor, raw_threshold: float = RAW_THRESHOLD, split_threshold: float = 0.6) -> torch.Tensor:
    """(B, H, W) probabilities -> (B, H, W) integrated probabilities (0 off candidates)."""
    p4 = p.unsqueeze(1)
    clipped = torch.where(p4 > raw_threshold, p4, torch.zeros_like(p4))
    local_max = (clipped == _max_3x3(clipped)) & (clipped > 0)
    summed = _plus_sum(clipped)
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
    raw_threshold: float = RAW_THRESHOLD,
    split_threshold: float = 0.6,
    min_prob: float = 0.1,
    scale: int = 1,
) -> dict[str, np.ndarray]:
    """Network output (B, C, H, W) of consecutive frames -> candidate table in nm.

    ``pixel_size_nm`` is the camera pixel; ``scale`` the number of output cells per
    camera pixel (a model's ``output_scale``; 1 for per-pixel models). Every candidate with integrated
    probability >= ``min_prob`` is kept with its ``prob``, so a later, higher
    threshold re-filters without re-running the net.
    """
    ch = {name: i for i, name in enumerate(channels)}
    if scale > 1 and "sigma_x" in ch:  # trained with the Gaussian-mixture loss: each cell is a component
        return _mixture_modes(output, ch, scaling, pixel_size_nm / scale, frame_offset, min_prob, radius_cells=0.7 * scale)
    if scale > 1:
        return _fine_grid_candidates(output, ch, scaling, pixel_size_nm / scale, frame_offset, min_prob, fine_grid_window(scale))
    p = torch.sigmoid(output[:, ch["p"]].float())
    prob = spatial_integration(p, raw_threshold, split_threshold)
    b, r, c = (prob >= min_prob).nonzero(as_tuple=True)
    zeros = torch.zeros(len(b), device=output.device)
    take = lambda name: output[b, ch[name], r, c].float() if name in ch else zeros  # noqa: E731
    if "x" in ch:
        pooled = [name for name in POOLED if name in ch]
        dx, dy, values = _pooled(p, prob > 0, output, [ch["x"], ch["y"]] + [ch[name] for name in pooled], b, r, c,
                                 raw_threshold)
        take_pooled = dict(zip(pooled, values))
    else:  # no offset heads: probability-weighted centroid over the 3x3 neighbourhood
        dx, dy = _centroid_offsets(p, b, r, c)
        take_pooled = {}
    table = {
        "frame": (b + frame_offset).cpu().numpy().astype(np.int64),
        "x": ((c.float() + 0.5 + dx) * pixel_size_nm).cpu().numpy(),
        "y": ((r.float() + 0.5 + dy) * pixel_size_nm).cpu().numpy(),
        "z": ((take_pooled["z"] if "z" in take_pooled else take("z")) * scaling.z_nm).cpu().numpy(),
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


def fine_grid_window(scale: int) -> int:
    """Integration window (odd, in cells) on a grid ``scale`` times finer than the
    camera's: about half a camera pixel across, at least 3 cells (8x -> 5 cells)."""
    w = max(3, scale // 2 + 1)
    return w if w % 2 else w + 1


def _fine_grid_candidates(output, ch, scaling, cell_nm, frame_offset, min_prob, window) -> dict[str, np.ndarray]:
    p = torch.sigmoid(output[:, ch["p"]].float()).unsqueeze(1)
    p = torch.where(p > 0.01, p, torch.zeros_like(p))  # cell noise
    pad = window // 2
    box = lambda m: F.avg_pool2d(m, window, stride=1, padding=pad, count_include_pad=True) * (window * window)  # noqa: E731
    mass = box(p)
    # Windows around one confident cell all hold the same mass (its neighbours are below
    # the noise floor): the window centred on the cell with the most probability wins.
    key = mass + 1e-3 * p
    peak = (key == F.max_pool2d(key, window, stride=1, padding=pad)) & (mass >= min_prob)
    b, _, r, c = peak.nonzero(as_tuple=True)
    h, w = p.shape[-2:]
    cols = torch.arange(w, device=p.device, dtype=p.dtype).view(1, 1, 1, w) + 0.5
    rows = torch.arange(h, device=p.device, dtype=p.dtype).view(1, 1, h, 1) + 0.5
    safe = mass[b, 0, r, c].clamp_min(1e-12)
    mean = lambda m: box(p * m)[b, 0, r, c] / safe  # noqa: E731
    chan = lambda name: output[:, ch[name]: ch[name] + 1].float()  # noqa: E731
    table = {
        "frame": (b + frame_offset).cpu().numpy().astype(np.int64),
        "x": (mean(cols + chan("x")) * cell_nm).cpu().numpy(),
        "y": (mean(rows + chan("y")) * cell_nm).cpu().numpy(),
        "z": (mean(chan("z")) * scaling.z_nm).cpu().numpy() if "z" in ch else np.zeros(len(b)),
        "photons": (mean(chan("photons")) * scaling.photons).cpu().numpy(),
        "bg": (output[b, ch["bg"], r, c].float() * scaling.background).cpu().numpy() if "bg" in ch else np.full(len(b), np.nan),
        "prob": mass[b, 0, r, c].clamp(max=1.0).cpu().numpy(),
    }
    return table


def _mixture_modes(output, ch, scaling, cell_nm, frame_offset, min_prob, radius_cells, floor=0.01) -> dict[str, np.ndarray]:
    """Candidates of a fine grid trained with the Gaussian-mixture loss, where every cell
    is a mixture component at its own predicted position (cell centre + offset) with
    weight p. Components are grouped greedily around the most probable one not yet taken,
    by the distance between their *predicted positions* (``radius_cells``: 0.7 camera
    pixels, chosen among 0.3 / 0.5 / 0.7 on benchmarks/architectures.py's movies at 0.5,
    4 and 6 /µm² — docs/benchmarks/architectures/multiscale.md), not between cells: two molecules whose cells touch stay apart when their
    cells point to different places, and one molecule spread over several cells is one
    candidate. ``prob`` is the group's summed p (at most 1); positions and the other
    values are p-weighted means, ``bg`` the most probable cell's."""
    from scipy.spatial import cKDTree

    p = torch.sigmoid(output[:, ch["p"]].float())
    b, r, c = (p > floor).nonzero(as_tuple=True)
    chan = lambda name: output[b, ch[name], r, c].float().cpu().numpy()  # noqa: E731
    w = p[b, r, c].cpu().numpy().astype(np.float64)
    x = c.cpu().numpy() + 0.5 + chan("x")
    y = r.cpu().numpy() + 0.5 + chan("y")
    frames = b.cpu().numpy()
    names = [n for n in ("z", "photons", "sigma_x", "sigma_y", "sigma_z", "sigma_photons") if n in ch]
    values = {n: chan(n) for n in names}
    span = 4.0 * (max(output.shape[-2:]) + radius_cells)  # frames far apart: groups stay in their frame
    tree = cKDTree(np.column_stack([x, y, frames * span]))
    taken = np.zeros(len(w), bool)
    rows = []
    for i in np.argsort(-w, kind="stable"):
        if taken[i]:
            continue
        group = np.asarray(tree.query_ball_point([x[i], y[i], frames[i] * span], radius_cells), int)
        group = group[~taken[group]]
        taken[group] = True
        mass = w[group].sum()
        if mass >= min_prob:
            rows.append((i, group, mass))
    mean = lambda v: np.array([np.dot(w[g], v[g]) / m for _, g, m in rows], np.float32)  # noqa: E731
    seeds = np.array([i for i, _, _ in rows], int)
    table = {
        "frame": (frames[seeds] + frame_offset).astype(np.int64),
        "x": mean(x) * cell_nm,
        "y": mean(y) * cell_nm,
        "z": mean(values["z"]) * scaling.z_nm if "z" in values else np.zeros(len(rows)),
        "photons": mean(values["photons"]) * scaling.photons,
        "bg": chan("bg")[seeds] * scaling.background if "bg" in ch else np.full(len(rows), np.nan),
        "prob": np.minimum(np.array([m for _, _, m in rows], np.float32), 1.0),
    }
    if "sigma_x" in values:  # σ's in the fine grid's cells
        table["sigma_x"] = mean(values["sigma_x"]) * cell_nm
        table["sigma_y"] = mean(values["sigma_y"]) * cell_nm
        table["sigma_z"] = mean(values["sigma_z"]) * scaling.z_nm
        table["sigma_photons"] = mean(values["sigma_photons"]) * scaling.photons
    return {k: np.asarray(v, np.float32) if k not in ("frame",) else v for k, v in table.items()}


# Maps pooled like the position. z: on the astigmatic 3D benchmark (benchmarks/astig_3d.py,
# the 60-minute model of 2026-11-30) axial RMSE 49.4 -> 47.4 nm at 0.2 /µm² and 75.4 ->
# 73.4 nm at 1 /µm², lateral 35.1 -> 34.8 and 52.6 -> 52.0 nm with x and y pooled.
POOLED = ("z",)
# Neighbours whose predicted position lies within this many pixels (in x and in y) of a
# candidate's are taken as predictions of the same molecule (see _pooled).
POOL_RADIUS_PX = 0.75


def _pooled(p, candidate, output, channels, b, r, c, raw_threshold):
    """Offsets (x, y: the first two of ``channels``) of candidates (b, r, c) from the pixel
    centre, and the other ``channels`` at the candidates: the probability-weighted means
    over the candidate and those of its 3×3 neighbours above ``raw_threshold`` whose
    predicted position agrees with the candidate's (within ``POOL_RADIUS_PX``) and that are
    not candidates themselves (``candidate``: a molecule of their own, or the same one found
    twice, which non-maximum suppression judges by the unpooled positions). Each pixel
    near a molecule predicts its position from a slightly different view; their errors are
    not wholly shared. On benchmarks/run.py's movies (bundled model v2, threshold 0.4)
    lateral RMSE fell 1–3 % against the candidate pixel's own offset (0.1 /µm² 16.07 →
    15.80 nm, 0.5: 18.15 → 17.99, 2: 28.73 → 27.99, low SNR 35.16 → 34.57), the fast
    model's 4–6 %, the Jaccard unchanged. Pooling other candidates as well pulled pairs
    together until non-maximum suppression merged some (demo Jaccard 0.7824 → 0.7802)."""
    idx = torch.as_tensor(channels, device=output.device)
    if len(b) == 0 or POOL_RADIUS_PX <= 0:
        own = output[b[:, None], idx[None, :], r[:, None], c[:, None]].float()
        return own[:, 0], own[:, 1], list(own[:, 2:].unbind(1))
    _, h, w = p.shape
    # the 3×3 neighbourhood of every candidate at once (few, large tensor operations: this
    # runs once per batch of frames, where many small ones cost more than the arithmetic)
    dr = torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1, 1], device=r.device)
    dc = torch.tensor([-1, 0, 1, -1, 0, 1, -1, 0, 1], device=r.device)
    rr, cc = r[:, None] + dr, c[:, None] + dc  # (n, 9)
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    rr, cc = rr.clamp(0, h - 1), cc.clamp(0, w - 1)
    vals = output[b[:, None, None], idx[None, None, :], rr[..., None], cc[..., None]].float()  # (n, 9, k)
    vals[..., 0] += dc.to(vals.dtype)  # positions in the candidate pixel's frame
    vals[..., 1] += dr.to(vals.dtype)
    own = vals[:, 4]
    weight = p[b[:, None], rr, cc]
    agree = inside & (weight > raw_threshold) & ~candidate[b[:, None], rr, cc] \
        & ((vals[..., 0] - own[:, None, 0]).abs() < POOL_RADIUS_PX) & ((vals[..., 1] - own[:, None, 1]).abs() < POOL_RADIUS_PX)
    agree[:, 4] = True  # the candidate itself, always
    weight = torch.where(agree, weight, torch.zeros_like(weight))
    out = (weight[..., None] * vals).sum(1) / weight.sum(1).clamp_min(1e-12)[:, None]
    return out[:, 0], out[:, 1], list(out[:, 2:].unbind(1))


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
