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
