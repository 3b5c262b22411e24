"""Camera models: expected photons -> noisy integer ADU, and ADU -> photons.

The network always sees photons; :meth:`Camera.to_photons` is applied once,
before it. Units: ``baseline`` in ADU, ``e_per_adu`` electrons per ADU (after EM
gain), ``read_noise_e`` in electrons (r.m.s.), ``qe`` the quantum efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .config import CameraConfig

__all__ = ["Camera"]


@dataclass(frozen=True)
class Camera:
    baseline: float = 100.0
    e_per_adu: float = 45.0
    em_gain: float = 100.0
    qe: float = 0.9
    read_noise_e: float = 74.4
    kind: str = "emccd"
    max_adu: int = 65535

    @classmethod
    def from_config(cls, cfg: CameraConfig) -> "Camera":
        return cls(
            baseline=cfg.baseline,
            e_per_adu=cfg.e_per_adu,
            em_gain=cfg.em_gain if cfg.kind == "emccd" else 1.0,
            qe=cfg.qe,
            read_noise_e=cfg.read_noise_e,
            kind=cfg.kind,
            max_adu=cfg.max_adu,
        )

    @classmethod
    def ideal(cls) -> "Camera":
        return cls(baseline=0.0, e_per_adu=1.0, em_gain=1.0, qe=1.0, read_noise_e=0.0, kind="ideal")

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "baseline": float(self.baseline),
            "e_per_adu": float(self.e_per_adu),
            "em_gain": float(self.em_gain),
            "qe": float(self.qe),
            "read_noise_e": float(self.read_noise_e),
            "max_adu": int(self.max_adu),
        }

    @property
    def excess_noise_factor(self) -> float:
        """Variance inflation of the EM register (F² = 2 for high gain, 1 without)."""
        return 2.0 if self.kind == "emccd" and self.em_gain > 1 else 1.0

    def forward(self, photons: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Expected photons per pixel -> noisy ADU (float tensor holding integers).

        EMCCD: Poisson(qe·photons) -> Gamma(n, gain) EM register -> Gaussian read noise
        -> electrons / e_per_adu -> + baseline -> rounded, clipped to [0, max_adu].
        sCMOS: Poisson(qe·photons) + Gaussian read noise. Ideal: Poisson only.
        """
        photons = photons.clamp_min(0)
        electrons = torch.poisson(photons * self.qe, generator=generator)
        if self.kind == "emccd" and self.em_gain > 1:
            # Gamma(k=n, θ=gain) is the standard continuous model of the EM register.
            electrons = _gamma(electrons, self.em_gain, generator)
        if self.read_noise_e > 0:
            noise = torch.randn(electrons.shape, generator=generator, device=electrons.device)
            electrons = electrons + noise * self.read_noise_e
        adu = electrons / self.e_per_adu + self.baseline
        return adu.round().clamp(0, self.max_adu)

    def to_photons(self, adu: torch.Tensor) -> torch.Tensor:
        """ADU -> photons (the inverse of the mean of :meth:`forward`)."""
        return (adu.float() - self.baseline) * (self.e_per_adu / (self.em_gain * self.qe))


def _gamma(n: torch.Tensor, gain: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Sample Gamma(shape=n, scale=gain), 0 where n == 0, from ``generator``.

    torch's own Gamma sampler takes no generator (so it could not be reproducible
    per simulator, nor resumed from a checkpoint) and runs serially on CPU; this is
    Marsaglia & Tsang's (2000) method, vectorised: shapes here are integers >= 1,
    and more than 95 % of proposals are accepted on the first pass.
    """
    positive = n > 0
    d = n.clamp_min(1.0) - 1.0 / 3.0
    c = torch.rsqrt(9.0 * d)

    def propose(dd, cc):
        x = torch.randn(dd.shape, generator=generator, device=dd.device)
        v = (1.0 + cc * x) ** 3
        u = torch.rand(dd.shape, generator=generator, device=dd.device)
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + dd * (1.0 - v + torch.log(v.clamp_min(1e-30))))
        return dd * v, ok

    out, ok = propose(d, c)  # whole tensor at once: the common case
    while not bool(ok.all()):  # redraw the few rejected samples
        idx = (~ok).nonzero(as_tuple=True)
        redo, redo_ok = propose(d[idx], c[idx])
        out[idx] = torch.where(redo_ok, redo, out[idx])
        ok[idx] = redo_ok
    return torch.where(positive, out * gain, torch.zeros_like(out))


def estimate_camera(
    movie,
    kind: str = "emccd",
    em_gain: Optional[float] = None,
    qe: float = 1.0,
    baseline: Optional[float] = None,
    n_pairs: int = 100,
    n_bins: int = 16,
    max_pixels: int = 65536,
) -> tuple["Camera", dict]:
    """Estimate baseline and ADU per photoelectron from a movie (mean-variance fit).

    Per pixel, over consecutive frame pairs (a, b): the median of (a + b) / 2 is its
    background level m, and (1.4826 · MAD(b - a))² / 2 its noise variance v. Medians
    ignore the few frames in which a molecule sits on the pixel, and differences
    remove the static background structure. With photoelectrons n, ADU = k·n +
    baseline and v = F² · k · (m - baseline) (+ read noise, neglected), where F² = 2
    for an EMCCD and 1 otherwise. Pixels binned by m give a line v = slope·m + c:
    ``k = slope / F²``, ``baseline = -c / slope``. That needs a range of background
    levels (illumination falls off towards the edges in most widefield movies);
    without it (or when ``baseline`` is given) the baseline is the dark level (the
    0.1 % quantile of m, or the given value) and k comes from the median pixel.
    Photons are photoelectrons / ``qe``.

    Returns the camera and a report (``baseline``, ``adu_per_e``, ``method``, ``r2``)
    to print for the user.
    """
    import numpy as np

    t = len(movie)
    if t < 3:
        raise ValueError("camera estimation needs at least 3 frames")
    starts = np.unique(np.linspace(0, t - 2, num=min(n_pairs, t - 1)).astype(int))
    h, w = np.asarray(movie[0:1]).shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    means, diffs = [], []
    for s in starts:
        pair = np.asarray(movie[s:s + 2], dtype=np.float32)[:, ::step, ::step]
        means.append(0.5 * (pair[0] + pair[1]))
        diffs.append(pair[1] - pair[0])
    mean, diff = np.stack(means), np.stack(diffs)
    m = np.median(mean, axis=0).ravel()
    v = (_clipped_std(diff) ** 2 / 2.0).ravel()
    f2 = 2.0 if kind == "emccd" else 1.0

    edges = np.unique(np.quantile(m, np.linspace(0.0, 1.0, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, len(edges) - 2)
    xs, ys, ns = [], [], []
    for i in range(len(edges) - 1):
        sel = which == i
        if sel.sum() >= 10:
            xs.append(np.median(m[sel]))
            ys.append(np.median(v[sel]))
            ns.append(sel.sum())
    xs, ys, ns = np.asarray(xs), np.asarray(ys), np.asarray(ns)
    method, r2 = "dark level", float("nan")
    if baseline is None and len(xs) >= 4 and np.ptp(xs) > 0:
        slope, intercept = np.polyfit(xs, ys, 1, w=np.sqrt(ns))
        fitted = slope * xs + intercept
        r2 = float(1.0 - np.sum((ys - fitted) ** 2) / max(np.sum((ys - ys.mean()) ** 2), 1e-12))
        b_fit = -intercept / slope if slope > 0 else np.inf
        # Trust the fit only over a real range of levels (well beyond the scatter of
        # the per-pixel medians), as a clear line with a physical baseline.
        scatter = 1.25 * np.sqrt(np.median(v)) / np.sqrt(len(starts))
        if slope > 0 and r2 > 0.9 and 0 <= b_fit < xs.min() and np.ptp(xs) > 10 * scatter:
            method, k, b = "mean-variance fit", slope / f2, float(b_fit)
    if method == "dark level":
        if baseline is None:
            raise ValueError(
                "camera estimation: the movie's background is too uniform to find the baseline from a "
                "mean-variance fit; give the baseline (the camera's dark level in ADU) or the whole camera"
            )
        b = float(baseline)
        centre = float(np.median(m))
        if centre - b <= 0:
            raise ValueError(
                f"camera estimation: the movie's median level ({centre:.1f} ADU) is not above the baseline "
                f"({b:.1f} ADU); give the camera (baseline, e/ADU, gain) instead"
            )
        k = float(np.median(v)) / (f2 * (centre - b))
    if not np.isfinite(k) or k <= 0:
        raise ValueError("camera estimation failed (no usable noise); give the camera instead")
    gain = float(em_gain) if em_gain is not None else (100.0 if kind == "emccd" else 1.0)
    cam = Camera(baseline=b, e_per_adu=gain / k, em_gain=gain, qe=float(qe), read_noise_e=0.0, kind=kind)
    report = {"method": method, "baseline": b, "adu_per_e": float(k), "r2": r2, "kind": kind,
              "e_per_adu": float(gain / k), "em_gain": gain, "qe": float(qe)}
    return cam, report


def _clipped_std(d, n_sigma: float = 3.0, iterations: int = 3):
    """Per-pixel standard deviation over axis 0, ignoring outliers (molecules).

    Starts from 1.4826 · MAD, then re-estimates from the values within ``n_sigma``,
    correcting for the truncation of a normal distribution (0.9733 of the variance
    lies within 3σ). Differences of frames with and without a molecule are far
    outside 3σ, so they drop out.
    """
    import numpy as np
    from scipy.special import erf

    centre = np.median(d, axis=0)
    sigma = 1.4826 * np.median(np.abs(d - centre), axis=0)
    a = n_sigma
    kept_var = 1.0 - 2 * a * np.exp(-a * a / 2) / np.sqrt(2 * np.pi) / erf(a / np.sqrt(2))
    for _ in range(iterations):
        inside = np.abs(d - centre) <= n_sigma * np.maximum(sigma, 1e-6)
        n = inside.sum(0).clip(min=2)
        centre = np.where(inside, d, 0).sum(0) / n
        var = (np.where(inside, (d - centre) ** 2, 0)).sum(0) / (n - 1)
        sigma = np.sqrt(var / kept_var)
    return sigma
