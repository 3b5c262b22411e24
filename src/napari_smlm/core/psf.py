"""Point-spread functions.

A PSF renders emitters into frames. Emitters come as padded per-frame tensors of
shape ``(F, N)`` (x and y in *pixels*, with the top-left corner of the frame at
0 and pixel centres at ``i + 0.5``; z in nm; photons, 0 for padding). New PSFs
(astigmatic, spline) subclass :class:`PSF` and register themselves; nothing else
in the package needs to change.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .config import PSFConfig

__all__ = ["PSF", "GaussianPSF", "build_psf", "PSF_REGISTRY"]

PSF_REGISTRY: dict[str, Callable[..., "PSF"]] = {}


def register_psf(name: str):
    def deco(cls):
        PSF_REGISTRY[name] = cls
        return cls

    return deco


class PSF:
    """Interface: ``render(x_px, y_px, z_nm, photons, sigma_px, shape) -> (F, H, W)``."""

    def render(
        self,
        x_px: torch.Tensor,
        y_px: torch.Tensor,
        z_nm: torch.Tensor,
        photons: torch.Tensor,
        shape: tuple[int, int],
        **per_emitter: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    def sample_parameters(self, n_shape: tuple[int, ...], generator, device) -> dict[str, torch.Tensor]:
        """Per-emitter PSF parameters drawn for a simulation (e.g. a σ range)."""
        return {}


@register_psf("gaussian")
class GaussianPSF(PSF):
    """Pixel-integrated 2D Gaussian (erf form).

    ``sigma_nm`` is either a number or a ``[min, max]`` range sampled uniformly
    per emitter, so one model can cover a range of microscopes.
    """

    def __init__(self, sigma_nm=(130.0, 130.0), pixel_size_nm: float = 100.0):
        if isinstance(sigma_nm, (int, float)):
            sigma_nm = (float(sigma_nm), float(sigma_nm))
        self.sigma_nm = (float(sigma_nm[0]), float(sigma_nm[1]))
        self.pixel_size_nm = float(pixel_size_nm)

    def sample_parameters(self, n_shape, generator, device):
        lo, hi = self.sigma_nm
        u = torch.rand(n_shape, generator=generator, device=device)
        return {"sigma_px": (lo + (hi - lo) * u) / self.pixel_size_nm}

    @staticmethod
    def _integrated_1d(centre: torch.Tensor, sigma: torch.Tensor, n: int) -> torch.Tensor:
        """(F, N) centres -> (F, N, n) fraction of photons in each pixel along one axis."""
        edges = torch.arange(n + 1, device=centre.device, dtype=centre.dtype)
        # Padding slots carry sigma 0 and 0 photons; the floor keeps them finite.
        scale = 1.0 / (math.sqrt(2.0) * sigma.clamp_min(1e-3).unsqueeze(-1))
        cdf = torch.erf((edges - centre.unsqueeze(-1)) * scale)
        return 0.5 * (cdf[..., 1:] - cdf[..., :-1])

    def render(self, x_px, y_px, z_nm, photons, shape, sigma_px=None, **_):
        if sigma_px is None:
            sigma_px = torch.full_like(x_px, self.sigma_nm[0] / self.pixel_size_nm)
        h, w = shape
        px = self._integrated_1d(x_px, sigma_px, w)  # (F, N, W)
        py = self._integrated_1d(y_px, sigma_px, h)  # (F, N, H)
        # Separable PSF: frame = Py^T diag(photons) Px, one batched matmul for all frames.
        return torch.bmm((py * photons.unsqueeze(-1)).transpose(1, 2), px)


def build_psf(cfg: PSFConfig, pixel_size_nm: float) -> PSF:
    if cfg.kind not in PSF_REGISTRY:
        raise ValueError(f"simulation.psf.kind: unknown PSF {cfg.kind!r}; known: {sorted(PSF_REGISTRY)}")
    return PSF_REGISTRY[cfg.kind](sigma_nm=cfg.sigma_nm, pixel_size_nm=pixel_size_nm)
