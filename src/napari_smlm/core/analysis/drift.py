"""Stage drift from the localizations themselves: RCC, fiducials, AIM.

A drift trajectory is a dict of per-frame arrays ``frame`` (0-based, every frame
from the first to the last localized one), ``x``, ``y`` (and ``z``) in nm: the
stage's displacement at that frame relative to the start, so corrected positions
are ``x - drift_x[frame]`` (:func:`apply_drift`).

- :func:`drift_rcc` — redundant cross-correlation (Wang et al., Optics Express 2014):
  the movie is cut into segments, each rendered; every pair of segments is
  cross-correlated (FFT), the peaks fitted to sub-pixel precision, and the segments'
  drifts solved from all pair shifts by least squares, dropping pairs whose residual
  is large, then interpolated to every frame.
- :func:`drift_fiducials` — markers that are on through most of the movie (beads,
  gold) are found as dense, long-lived clusters, and their mean track is the drift.
- :func:`drift_aim` — adaptive intersection maximisation (Ma et al., Science Advances
  2024): each short segment is shifted to maximise how many of its localizations fall
  within a radius of the localizations already corrected; the reference grows as it
  goes, so it needs no rendering and little density.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

__all__ = ["drift_rcc", "drift_fiducials", "drift_aim", "drift_z", "apply_drift", "drift_at", "estimate_drift", "METHODS"]

METHODS = ("rcc", "fiducials", "aim")


def estimate_drift(table: dict, method: str = "rcc", z: Optional[bool] = None, **kwargs) -> dict:
    """The drift trajectory by ``method`` (one of :data:`METHODS`). For 3D
    localizations (z spread over 1 nm; ``z`` forces it on or off) the z drift is
    estimated too, after the lateral one (:func:`drift_z`)."""
    if method not in METHODS:
        raise ValueError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    _check_table(table)
    drift = {"rcc": drift_rcc, "fiducials": drift_fiducials, "aim": drift_aim}[method](table, **kwargs)
    zs = np.asarray(table.get("z", np.zeros(0)), float)
    zs = zs[np.isfinite(zs)]
    if z is None:
        z = zs.size > 0 and float(np.ptp(zs)) > 1.0
    if z:
        seg = drift.get("info", {}).get("segment_frames") or kwargs.get("segment_frames")
        drift["z"], drift.setdefault("info", {})["z"] = drift_z(table, drift, segment_frames=seg)
    return drift


def drift_z(table: dict, lateral: dict, segment_frames: Optional[int] = None, radius_nm: float = 40.0,
            max_drift_nm: float = 500.0, window_nm: float = 80.0) -> tuple[np.ndarray, dict]:
    """z drift at every frame of ``lateral`` (a trajectory from this module), and a
    summary dict.

    After the lateral correction, the localizations of one segment that lie within
    ``radius_nm`` (laterally) of another segment's are mostly the same structures seen
    again, so their z differences cluster around the segments' z offset (an
    intersection in the spirit of AIM, along z). Per pair of segments the offset is
    the mean of those differences within ``window_nm`` of the histogram's peak
    (iterated: a mean shift), and the segments' z drifts are solved from all pairs by
    least squares as in RCC, dropping pairs that disagree by more than 3x the median
    residual. Pairs with fewer than 30 neighbours are skipped."""
    from scipy.spatial import cKDTree

    frame = np.asarray(table["frame"]).astype(int)
    x, y, z = (np.asarray(table[k], float) for k in ("x", "y", "z"))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    frame, x, y, z = frame[ok], x[ok], y[ok], z[ok]
    xc = x - drift_at(lateral, frame, "x")
    yc = y - drift_at(lateral, frame, "y")
    f0, f1 = int(lateral["frame"][0]), int(lateral["frame"][-1])
    n_frames = f1 - f0 + 1
    seg = int(segment_frames or max(100, int(np.ceil(n_frames / 30))))
    n_seg = max(2, int(np.ceil(n_frames / seg)))
    which = np.minimum(np.clip(frame - f0, 0, None) // seg, n_seg - 1)
    members = [np.nonzero(which == s)[0] for s in range(n_seg)]
    trees = [cKDTree(np.c_[xc[m], yc[m]]) if len(m) else None for m in members]
    bins = np.arange(-max_drift_nm, max_drift_nm + 5.0, 5.0)
    pairs, shifts = [], []
    for i in range(n_seg):
        for j in range(i + 1, n_seg):
            if trees[i] is None or trees[j] is None:
                continue
            near = trees[i].sparse_distance_matrix(trees[j], radius_nm, output_type="ndarray")
            if len(near) < 30:
                continue
            dz = z[members[j][near["j"]]] - z[members[i][near["i"]]]
            dz = dz[np.abs(dz) <= max_drift_nm]
            if len(dz) < 30:
                continue
            hist, _ = np.histogram(dz, bins)
            hist = ndimage.gaussian_filter1d(hist.astype(float), window_nm / 20.0)
            centre = 0.5 * (bins[np.argmax(hist)] + bins[np.argmax(hist) + 1])
            for _ in range(10):
                inside = np.abs(dz - centre) <= window_nm
                if inside.sum() < 10:
                    break
                new = float(dz[inside].mean())
                if abs(new - centre) < 0.05:
                    centre = new
                    break
                centre = new
            pairs.append((i, j))
            shifts.append([centre])
    pairs, shifts = np.asarray(pairs, int).reshape(-1, 2), np.asarray(shifts, float).reshape(-1, 1)
    if len(pairs) == 0 or not _connected(pairs, n_seg):
        raise ValueError(f"drift (z): too few localizations near each other across segments of {seg} frames to "
                         "estimate the z drift; use a larger --segment-frames")
    keep = np.ones(len(pairs), bool)
    for _ in range(5):
        d = _solve_pairs(pairs[keep], shifts[keep], n_seg)
        err = np.abs(shifts[:, 0] - (d[pairs[:, 1], 0] - d[pairs[:, 0], 0]))
        limit = max(3.0 * float(np.median(err[keep])), 2.0)
        new = (err <= limit) & keep
        if new.sum() == keep.sum() or not _connected(pairs[new], n_seg):
            break
        keep = new
    d = _solve_pairs(pairs[keep], shifts[keep], n_seg)
    centres = np.array([frame[m].mean() if len(m) else f0 + (s + 0.5) * seg for s, m in enumerate(members)])
    trajectory = _per_frame(f0, f1, centres, d, "z", {}, keys=("z",))["z"]
    return trajectory, {"segments": n_seg, "segment_frames": seg, "pairs_used": int(keep.sum()), "pairs": len(pairs)}


def drift_at(drift: dict, frames, key: str) -> np.ndarray:
    """The drift's ``key`` (x, y, z in nm) at each of ``frames`` (0-based; frames beyond
    the trajectory take its first or last value)."""
    idx = np.clip(np.asarray(frames).astype(int) - int(drift["frame"][0]), 0, len(drift["frame"]) - 1)
    return np.asarray(drift[key], float)[idx]


def apply_drift(table: dict, drift: dict, undo: bool = False) -> dict:
    """A copy of ``table`` with the drift subtracted (or added back with ``undo``);
    every column is kept."""
    out = {k: np.array(v, copy=True) for k, v in table.items()}
    sign = -1.0 if undo else 1.0
    for key in ("x", "y", "z"):
        if key in drift and key in out:
            out[key] = np.asarray(out[key], float) - sign * drift_at(drift, table["frame"], key)
    return out


# ---------------------------------------------------------------------------- RCC
def drift_rcc(table: dict, segment_frames: Optional[int] = None, pixel_nm: Optional[float] = None,
              blur_nm: Optional[float] = None, max_drift_nm: float = 1000.0, residual_nm: Optional[float] = None) -> dict:
    """Redundant cross-correlation. ``segment_frames`` defaults to the shortest segment
    with 2,000 localizations, at least 100 frames and at most 100 segments; ``pixel_nm``
    is the render's pixel (default 15 nm, coarser where the field would need more than
    4,096 pixels a side) and ``blur_nm`` its Gaussian blur (default: one pixel). 15 nm
    against the 20 nm used before: residual drift 1.32 -> 0.99 nm on the benchmark's
    5,000-frame rings (FRC +10 % -> +5 % of drift-free), 1.78 -> 1.29 nm on 20,000 frames,
    filaments unchanged, about twice the time (2-15 s there). Segments are correlated with every other one up to 30
    segments, beyond that with their neighbours within a window that keeps about 1,000
    pairs (a long acquisition then gets short segments, which follow fast drift,
    without a quadratic number of correlations). Pairs whose shift disagrees with the
    solution by more than ``residual_nm`` (default 2 render pixels) are dropped and the
    drifts solved again."""
    frame, x, y = _xy(table)
    f0, f1 = int(frame.min()), int(frame.max())
    n_frames = f1 - f0 + 1
    # Segments as short as the data allow (fast drift), each with enough localizations
    # for an image (2,000), at most 100 of them.
    per_frame = len(x) / n_frames
    seg = int(segment_frames or max(100, int(np.ceil(n_frames / 100)), int(np.ceil(2000 / per_frame))))
    n_seg = max(2, int(np.ceil(n_frames / seg)))
    if n_frames < seg:
        raise ValueError(f"drift (rcc): {n_frames} frames make fewer than 2 segments of {seg} frames; use a smaller --segment-frames")
    which = np.minimum((frame - f0) // seg, n_seg - 1)
    extent = max(x.max() - x.min(), y.max() - y.min()) + 2 * max_drift_nm
    if pixel_nm is None:
        pixel_nm = max(15.0, extent / 4000.0)
    blur_nm = pixel_nm if blur_nm is None else blur_nm
    residual_nm = 2 * pixel_nm if residual_nm is None else residual_nm
    # One render grid for all segments, with room for the drift.
    x0, y0 = x.min() - max_drift_nm, y.min() - max_drift_nm
    w = int(np.ceil((x.max() - x0 + max_drift_nm) / pixel_nm))
    h = int(np.ceil((y.max() - y0 + max_drift_nm) / pixel_nm))
    w, h = _fft_size(w), _fft_size(h)
    if w * h > 4096 * 4096:
        raise ValueError(f"drift (rcc): a {w}x{h} render is too large; use a larger render pixel (pixel_nm)")
    spectra = []
    counts = []
    for s in range(n_seg):
        sel = which == s
        counts.append(int(sel.sum()))
        img, _, _ = np.histogram2d(y[sel] - y0, x[sel] - x0, bins=(h, w), range=((0, h * pixel_nm), (0, w * pixel_nm)))
        img = ndimage.gaussian_filter(img, blur_nm / pixel_nm)
        spectra.append(np.fft.rfft2(img - img.mean()))
    if min(counts) < 20:
        raise ValueError(f"drift (rcc): a segment of {seg} frames holds only {min(counts)} localizations; "
                         "use a larger --segment-frames")
    max_shift = int(np.ceil(max_drift_nm / pixel_nm))
    pairs, shifts = [], []
    window = n_seg - 1 if n_seg <= 30 else max(1, 1000 // n_seg)
    for i in range(n_seg):
        for j in range(i + 1, min(i + window, n_seg - 1) + 1):
            cc = np.fft.irfft2(spectra[i].conj() * spectra[j], s=(h, w))
            dy, dx = _peak(cc, max_shift)
            pairs.append((i, j))
            shifts.append((dx * pixel_nm, dy * pixel_nm))  # segment j relative to segment i
    pairs, shifts = np.asarray(pairs), np.asarray(shifts)
    keep = np.ones(len(pairs), bool)
    for _ in range(5):
        d = _solve_pairs(pairs[keep], shifts[keep], n_seg)
        err = np.hypot(*(shifts - (d[pairs[:, 1]] - d[pairs[:, 0]])).T)
        new = err <= max(residual_nm, 1e-9)
        if new.all() or new.sum() < n_seg - 1 or (new == keep).all():
            break
        keep = new & _connected(pairs[new], n_seg)
    d = _solve_pairs(pairs[keep], shifts[keep], n_seg)
    centres = np.array([frame[which == s].mean() if counts[s] else f0 + (s + 0.5) * seg for s in range(n_seg)])
    return _per_frame(f0, f1, centres, d, "rcc", {"segments": n_seg, "segment_frames": seg,
                                                  "pairs_used": int(keep.sum()), "pairs": len(pairs)})


def _fft_size(n: int) -> int:
    """The next size with only 2, 3 and 5 as factors (fast FFTs)."""
    from scipy.fft import next_fast_len

    return int(next_fast_len(max(int(n), 8)))


def _peak(cc: np.ndarray, max_shift: int) -> tuple[float, float]:
    """Sub-pixel position of the cross-correlation maximum within ±max_shift
    (Gaussian fit through the peak and its neighbours along each axis)."""
    h, w = cc.shape
    c = np.fft.fftshift(cc)
    cy, cx = h // 2, w // 2
    r = min(max_shift, cy - 2, cx - 2)
    win = c[cy - r:cy + r + 1, cx - r:cx + r + 1]
    iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
    py, px = cy - r + iy, cx - r + ix

    def refine(a, b, cc_):
        a, b, cc_ = (np.log(max(v, 1e-12)) for v in (a, b, cc_))  # Gaussian: a parabola in log
        den = a - 2 * b + cc_
        return 0.5 * (a - cc_) / den if den < 0 else 0.0

    peak = max(c[py, px], 1e-12)
    sy = refine(c[py - 1, px], peak, c[py + 1, px]) if 0 < py < h - 1 else 0.0
    sx = refine(c[py, px - 1], peak, c[py, px + 1]) if 0 < px < w - 1 else 0.0
    return py - cy + sy, px - cx + sx


def _solve_pairs(pairs: np.ndarray, shifts: np.ndarray, n: int) -> np.ndarray:
    """Drifts d (n, k), d[0] = 0, from d[j] - d[i] ≈ shift for each pair (least squares)."""
    a = np.zeros((len(pairs), n))
    a[np.arange(len(pairs)), pairs[:, 1]] = 1.0
    a[np.arange(len(pairs)), pairs[:, 0]] = -1.0
    sol, *_ = np.linalg.lstsq(a[:, 1:], shifts, rcond=None)
    return np.vstack([np.zeros((1, shifts.shape[1])), sol])


def _connected(pairs: np.ndarray, n: int) -> bool:
    """Whether the pairs connect every segment (else the solve is undetermined)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(pairs) == 0:
        return False
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[0] == 1


def _per_frame(f0: int, f1: int, centres: np.ndarray, d: np.ndarray, method: str, info: dict,
               keys: tuple[str, ...] = ("x", "y", "z")) -> dict:
    """Drift at every frame from drifts at segment centres (a natural cubic spline where
    there are enough, linear otherwise), set to 0 at the first frame. Before the first
    centre and after the last, the spline goes on as a straight line with its end slope
    (a natural spline's own continuation): held constant there, the drift of the first
    and last half-segment went uncorrected (RCC on 5,000 frames of rings: 3.7 and 4.2 nm
    r.m.s. in the first and last 500 frames, against ~1 nm between)."""
    from scipy.interpolate import CubicSpline

    frames = np.arange(f0, f1 + 1)
    out = {"frame": frames, "method": method, "info": info}
    for k, key in enumerate(keys[:d.shape[1]]):
        if len(centres) >= 4:
            spline = CubicSpline(centres, d[:, k], bc_type="natural")
            inside = np.clip(frames, centres[0], centres[-1])
            v = spline(inside)
            slope = spline(inside, 1)
            v = v + slope * (frames - inside)  # linear beyond the ends
        else:
            v = np.interp(frames, centres, d[:, k])
        out[key] = v - v[0]
    return out


# ---------------------------------------------------------------------------- fiducials
def drift_fiducials(table: dict, min_on_fraction: float = 0.7, radius_nm: float = 150.0, smooth_frames: int = 10,
                    markers: Optional[np.ndarray] = None) -> dict:
    """Drift from fiducial markers: clusters of localizations within ``radius_nm`` present
    in at least ``min_on_fraction`` of the frames (found automatically, or near the (x, y)
    nm positions in ``markers``, e.g. picked by hand); each marker's track relative to its
    own start, averaged over markers (a missing frame is interpolated), smoothed over
    ``smooth_frames`` (a running median)."""
    frame, x, y = _xy(table)
    f0, f1 = int(frame.min()), int(frame.max())
    n_frames = f1 - f0 + 1
    if markers is not None:
        candidates = [(float(cx), float(cy)) for cx, cy in np.asarray(markers, float).reshape(-1, 2)]
    else:  # the densest places in an all-frames histogram
        bin_nm = radius_nm
        x0, y0 = x.min(), y.min()
        ix = ((x - x0) // bin_nm).astype(int)
        iy = ((y - y0) // bin_nm).astype(int)
        grid = np.zeros((iy.max() + 1, ix.max() + 1))
        np.add.at(grid, (iy, ix), 1)
        summed = ndimage.uniform_filter(grid, 3, mode="constant") * 9  # counts within ±1 bin (drift spreads a marker)
        peaks = (summed == ndimage.maximum_filter(summed, 5)) & (summed >= min_on_fraction * n_frames)
        candidates = [(x0 + (px + 0.5) * bin_nm, y0 + (py + 0.5) * bin_nm)
                      for py, px in sorted(zip(*np.nonzero(peaks)), key=lambda p: -summed[p])]
    tracks, centres = [], []
    for cx, cy in candidates:
        if any(np.hypot(cx - a, cy - b) <= 3 * radius_nm for a, b in centres):
            continue  # the same marker, smeared over two bins by the drift
        # follow the marker frame by frame from its centre (drift may move it out of the first box)
        sel = np.hypot(x - cx, y - cy) <= 3 * radius_nm
        fx = frame[sel]
        if len(np.unique(fx)) < min_on_fraction * n_frames:
            continue
        track = np.full((n_frames, 2), np.nan)
        order = np.argsort(fx)
        xs, ys, fs = x[sel][order], y[sel][order], fx[order]
        # one localization per frame: the nearest to the marker's running position
        pos = np.array([np.median(xs), np.median(ys)])
        for f in range(f0, f1 + 1):
            lo, hi = np.searchsorted(fs, f), np.searchsorted(fs, f, side="right")
            if hi > lo:
                d = np.hypot(xs[lo:hi] - pos[0], ys[lo:hi] - pos[1])
                k = lo + int(np.argmin(d))
                if d[k - lo] <= radius_nm:
                    track[f - f0] = (xs[k], ys[k])
                    pos = track[f - f0]
        if np.isfinite(track[:, 0]).mean() >= min_on_fraction:
            centres.append((cx, cy))
            tracks.append(track - np.nanmean(track[: max(1, n_frames // 20)], axis=0))
    if not tracks:
        where = " near the picked positions" if markers is not None else ""
        raise ValueError(f"drift (fiducials): no marker{where} is on in {min_on_fraction:.0%} of the frames; "
                         "use --method rcc or aim")
    mean = np.nanmean(np.stack(tracks), axis=0)
    frames = np.arange(f0, f1 + 1)
    out = {"frame": frames, "method": "fiducials", "info": {"markers": len(tracks)}}
    for k, key in enumerate(("x", "y")):
        v = mean[:, k]
        ok = np.isfinite(v)
        v = np.interp(frames, frames[ok], v[ok])
        if smooth_frames > 1:
            v = ndimage.median_filter(v, smooth_frames, mode="nearest")
        out[key] = v - v[0]
    return out


# ---------------------------------------------------------------------------- AIM
def drift_aim(table: dict, segment_frames: Optional[int] = None, radius_nm: float = 40.0,
              max_step_nm: float = 100.0, passes: int = 2) -> dict:
    """Adaptive intersection maximisation. Segments of ``segment_frames`` (default: 100
    frames, more where they would hold fewer than 500 localizations) are shifted, one after another, to
    maximise the number of their localizations within ``radius_nm`` of the corrected
    localizations before them; the search starts at the previous segment's drift and
    looks ``max_step_nm`` around it. Further ``passes`` align each segment again with
    all the others, corrected."""
    from scipy.spatial import cKDTree

    frame, x, y = _xy(table)
    f0, f1 = int(frame.min()), int(frame.max())
    n_frames = f1 - f0 + 1
    seg = int(segment_frames or max(100, int(np.ceil(500 * n_frames / len(x)))))  # ≥ 500 localizations each
    n_seg = max(2, int(np.ceil(n_frames / seg)))
    which = np.minimum((frame - f0) // seg, n_seg - 1)
    pts = np.stack([x, y], 1)
    ref = pts[which == 0]
    if len(ref) < 10:
        raise ValueError(f"drift (aim): the first {seg} frames hold only {len(ref)} localizations; use a larger --segment-frames")
    tree = cKDTree(ref)
    d = np.zeros((n_seg, 2))
    for s in range(1, n_seg):
        seg_pts = pts[which == s]
        guess = d[s - 1]
        if len(seg_pts) >= 5:
            guess = _best_shift(tree, seg_pts, guess, radius_nm, max_step_nm)
        d[s] = guess
        # the reference grows with every corrected segment (adaptive), rebuilt now and then
        ref = np.vstack([ref, seg_pts - d[s]])
        if s % 4 == 0 or s == n_seg - 1:
            tree = cKDTree(ref)
    # Second pass: each segment against all the others, now corrected (the first pass saw
    # only the segments before it, sparse at the start).
    for _ in range(passes - 1):
        corrected = pts - d[which]
        tree = cKDTree(corrected)
        new = d.copy()
        for s in range(n_seg):
            mine = which == s
            if mine.sum() >= 5:
                new[s] = _best_shift(tree, pts[mine], d[s], radius_nm, 2 * radius_nm, exclude=np.nonzero(mine)[0])
        d = new - new[0]
    centres = np.array([frame[which == s].mean() if (which == s).any() else f0 + (s + 0.5) * seg for s in range(n_seg)])
    return _per_frame(f0, f1, centres, d, "aim", {"segments": n_seg, "segment_frames": seg, "passes": passes})


def _best_shift(tree, pts: np.ndarray, start: np.ndarray, radius: float, span: float,
                exclude: Optional[np.ndarray] = None, max_pairs: int = 2_000_000) -> np.ndarray:
    """The shift s that brings most of ``pts`` within ``radius`` of the reference:
    the densest place among the displacements (point − reference neighbour) within
    ``span`` of ``start`` (a histogram smoothed to the radius), refined to the mean of
    the displacements within half a radius of it."""
    start = np.asarray(start, float)
    neigh = tree.query_ball_point(pts - start, r=span + radius)
    counts = np.fromiter((len(n) for n in neigh), int, len(neigh))
    if counts.sum() > max_pairs:  # dense clusters (fiducials): a random share of the points is plenty
        keep = np.random.default_rng(0).uniform(size=len(pts)) < max_pairs / counts.sum()
        pts, neigh, counts = pts[keep], [n for n, k in zip(neigh, keep) if k], counts[keep]
    if counts.sum() == 0:
        return start
    owner = np.repeat(np.arange(len(pts)), counts)
    other = np.concatenate([np.asarray(n, int) for n in neigh if n])
    if exclude is not None:  # the segment's own points are no reference for it
        mask = ~np.isin(other, exclude)
        owner, other = owner[mask], other[mask]
        if len(other) == 0:
            return start
    disp = pts[owner] - tree.data[other]
    bin_nm = radius / 8
    n = int(np.ceil(2 * (span + radius) / bin_nm))
    lo = start - (span + radius)
    hist, _, _ = np.histogram2d(disp[:, 0], disp[:, 1], bins=n, range=((lo[0], lo[0] + n * bin_nm), (lo[1], lo[1] + n * bin_nm)))
    # Smoothed by the intersection disk's scale: the count of points within ~radius of
    # the shifted reference; its maximum to sub-bin precision by a quadratic fit.
    hist = ndimage.gaussian_filter(hist, radius / bin_nm / 2)
    i, j = np.unravel_index(int(np.argmax(hist)), hist.shape)
    i, j = min(max(i, 1), n - 2), min(max(j, 1), n - 2)
    return lo + (np.array([i, j]) + 0.5 + _quadratic_peak(hist[i - 1:i + 2, j - 1:j + 2])) * bin_nm


def _quadratic_peak(z: np.ndarray) -> np.ndarray:
    """Offset (di, dj) of the maximum of a 2D quadratic through a 3x3 neighbourhood,
    clipped to ±1 (the centre is the discrete maximum)."""
    gi = (z[2, 1] - z[0, 1]) / 2
    gj = (z[1, 2] - z[1, 0]) / 2
    hii = z[2, 1] - 2 * z[1, 1] + z[0, 1]
    hjj = z[1, 2] - 2 * z[1, 1] + z[1, 0]
    hij = (z[2, 2] - z[2, 0] - z[0, 2] + z[0, 0]) / 4
    h = np.array([[hii, hij], [hij, hjj]])
    if np.linalg.det(h) <= 0 or hii >= 0:
        return np.zeros(2)
    return np.clip(-np.linalg.solve(h, [gi, gj]), -1, 1)


# ---------------------------------------------------------------------------- helpers
def _check_table(table: dict) -> None:
    for key in ("frame", "x", "y"):
        if key not in table:
            raise ValueError(f"drift: the localization table has no '{key}' column")
    if len(table["x"]) < 50:
        raise ValueError(f"drift: {len(table['x'])} localizations are too few to estimate drift")


def _xy(table: dict):
    frame = np.asarray(table["frame"]).astype(int)
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    ok = np.isfinite(x) & np.isfinite(y)
    return frame[ok], x[ok], y[ok]
