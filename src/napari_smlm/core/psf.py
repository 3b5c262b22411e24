"""Point-spread functions.

A PSF renders emitters into frames. Emitters come as padded per-frame tensors of
shape ``(F, N)`` (x and y in *pixels*, with the top-left corner of the frame at
0 and pixel centres at ``i + 0.5``; z in nm, 0 at the focal plane and positive
away from the coverslip; photons, 0 for padding). PSFs subclass :class:`PSF` and
register themselves by name; nothing else in the package needs to change.

- ``gaussian``: the pixel-integrated 2D Gaussian (z is ignored).
- ``astigmatic``: the pixel-integrated elliptical Gaussian whose widths follow
  σx(z), σy(z) of Huang et al., Science 2008 — smooth and quick.
- ``spline``: a cubic B-spline of a measured (averaged) bead stack, as SMAP's
  calibration (Li et al., Nat. Methods 2018) — captures a PSF that is not a
  Gaussian. Rendered in batches of small ROIs scattered into the frames, in torch,
  on whichever device the emitters are.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

import torch

from .config import PSFConfig

__all__ = ["PSF", "GaussianPSF", "AstigmaticPSF", "SplinePSF", "build_psf", "PSF_REGISTRY", "astigmatic_sigma_nm"]

if TYPE_CHECKING:
    from .calibration import Calibration

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
        return self._separable(px, py, photons)

    @staticmethod
    def _separable(px: torch.Tensor, py: torch.Tensor, photons: torch.Tensor) -> torch.Tensor:
        """Separable PSF: frame = Py^T diag(photons) Px, one batched matmul for all frames."""
        return torch.bmm((py * photons.unsqueeze(-1)).transpose(1, 2), px)


def astigmatic_sigma_nm(z_nm, sigma0_nm, gamma_nm, d_nm, a=0.0, b=0.0):
    """Huang et al. (Science 2008): σ(z) = σ0·sqrt(1 + u² + A·u³ + B·u⁴), u = (z − γ)/d.

    Works on numpy arrays and torch tensors alike. The polynomial is floored at
    0.05 so that a fitted A, B far outside the calibrated range cannot make σ
    imaginary."""
    u = (z_nm - gamma_nm) / d_nm
    poly = 1.0 + u * u + a * u ** 3 + b * u ** 4
    if isinstance(poly, torch.Tensor):
        return sigma0_nm * poly.clamp_min(0.05).sqrt()
    import numpy as np

    return sigma0_nm * np.sqrt(np.maximum(poly, 0.05))


ASTIGMATIC_KEYS = ("sigma0_x_nm", "gamma_x_nm", "d_x_nm", "A_x", "B_x",
                   "sigma0_y_nm", "gamma_y_nm", "d_y_nm", "A_y", "B_y")


@register_psf("astigmatic")
class AstigmaticPSF(PSF):
    """Pixel-integrated elliptical Gaussian with σx(z), σy(z) (Huang et al. 2008).

    ``params`` holds :data:`ASTIGMATIC_KEYS` (nm for σ0, γ, d; A and B unitless).
    z outside ``z_range_nm`` is clamped: the model is only known where it was
    calibrated."""

    def __init__(self, params: dict, pixel_size_nm: float = 100.0, z_range_nm=(-1000.0, 1000.0)):
        missing = [k for k in ASTIGMATIC_KEYS if k not in params]
        if missing:
            raise ValueError(f"simulation.psf.astigmatism: missing {', '.join(missing)}")
        self.params = {k: float(params[k]) for k in ASTIGMATIC_KEYS}
        self.pixel_size_nm = float(pixel_size_nm)
        self.z_range_nm = (float(z_range_nm[0]), float(z_range_nm[1]))

    def sigmas_px(self, z_nm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        z = z_nm.clamp(*self.z_range_nm)
        sx = astigmatic_sigma_nm(z, p["sigma0_x_nm"], p["gamma_x_nm"], p["d_x_nm"], p["A_x"], p["B_x"])
        sy = astigmatic_sigma_nm(z, p["sigma0_y_nm"], p["gamma_y_nm"], p["d_y_nm"], p["A_y"], p["B_y"])
        return sx / self.pixel_size_nm, sy / self.pixel_size_nm

    def render(self, x_px, y_px, z_nm, photons, shape, **_):
        h, w = shape
        sx, sy = self.sigmas_px(z_nm)
        px = GaussianPSF._integrated_1d(x_px, sx, w)
        py = GaussianPSF._integrated_1d(y_px, sy, h)
        return GaussianPSF._separable(px, py, photons)


def _bspline_weights(t: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline weights of the four taps around a point, (..., ) -> (..., 4)."""
    t2, t3 = t * t, t * t * t
    return torch.stack([(1 - t) ** 3, 3 * t3 - 6 * t2 + 4, -3 * t3 + 3 * t2 + 3 * t + 1, t3], -1) / 6.0


@register_psf("spline")
class SplinePSF(PSF):
    """Cubic B-spline of an averaged bead stack on the camera's pixel grid.

    ``coefficients`` (Z, H, W): B-spline coefficients (``scipy.ndimage.spline_filter``
    of the normalised stack, each plane summing to 1), padded by ``pad`` planes /
    pixels on every side; the bead sits at the centre of pixel (H//2, W//2) of the
    unpadded stack, plane k at z = ``z0_nm`` + k·``dz_nm``. Because the spline's grid
    is the camera pixel, every pixel of an emitter's ROI has the same sub-pixel
    phase: the four taps' weights are computed once per emitter and axis, and the
    ROI is a small tensor contraction. z outside the stack is clamped.
    """

    def __init__(self, coefficients: torch.Tensor, z0_nm: float, dz_nm: float, pad: int = 2,
                 pixel_size_nm: float = 100.0):
        self.coefficients = torch.as_tensor(coefficients, dtype=torch.float32)
        self.z0_nm, self.dz_nm, self.pad = float(z0_nm), float(dz_nm), int(pad)
        nz, h, w = self.coefficients.shape
        self.n_planes = nz - 2 * self.pad
        self.roi = min(h, w) - 2 * self.pad
        if self.roi % 2 == 0:
            self.roi -= 1
        self.pixel_size_nm = float(pixel_size_nm)
        self._cache: dict = {}

    @classmethod
    def from_calibration(cls, calibration: "Calibration", pixel_size_nm: Optional[float] = None) -> "SplinePSF":
        if pixel_size_nm is not None and abs(calibration.pixel_size_nm - pixel_size_nm) > 1e-3 * pixel_size_nm:
            raise ValueError(
                f"PSF calibration {calibration.path or ''}: made with {calibration.pixel_size_nm:g} nm pixels, "
                f"but simulation.pixel_size_nm is {pixel_size_nm:g}; calibrate with beads on this camera")
        coeff, pad = calibration.spline_coefficients()
        return cls(coeff, calibration.z_min_nm, calibration.z_step_nm, pad, calibration.pixel_size_nm)

    @property
    def z_range_nm(self) -> tuple[float, float]:
        return self.z0_nm, self.z0_nm + (self.n_planes - 1) * self.dz_nm

    def _coefficients_on(self, device, dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._cache:
            self._cache[key] = self.coefficients.to(device=device, dtype=dtype)
        return self._cache[key]

    def roi_images(self, x_px: torch.Tensor, y_px: torch.Tensor, z_nm: torch.Tensor):
        """(n,) emitters -> PSF on each emitter's R×R ROI (n, R, R) (sums ≈ 1) and the
        frame row/column of the ROI's top-left pixel (n,), (n,). Differentiable in x, y, z."""
        c = self._coefficients_on(x_px.device, x_px.dtype)
        _, h, w = c.shape
        r, k = self.roi // 2, self.roi
        col, row = torch.floor(x_px), torch.floor(y_px)
        # Position in the stack's grid of ROI pixel u: centre + u - (x - col - 0.5).
        sx = col + 0.5 - x_px  # in (-0.5, 0.5]
        sy = row + 0.5 - y_px
        ix, iy = torch.floor(sx), torch.floor(sy)
        wx, wy = _bspline_weights(sx - ix), _bspline_weights(sy - iy)
        gz = ((z_nm - self.z0_nm) / self.dz_nm).clamp(0, self.n_planes - 1 - 1e-4) + self.pad
        iz = torch.floor(gz)
        wz = _bspline_weights(gz - iz)
        taps = torch.arange(4, device=x_px.device)
        span = torch.arange(k + 3, device=x_px.device)
        zi = iz.long().unsqueeze(1) - 1 + taps  # (n, 4)
        yi = (h // 2 - r - 1 + iy.long()).unsqueeze(1) + span  # (n, k+3)
        xi = (w // 2 - r - 1 + ix.long()).unsqueeze(1) + span
        flat = (zi[:, :, None, None] * h + yi[:, None, :, None]) * w + xi[:, None, None, :]
        block = torch.take(c, flat)  # (n, 4, k+3, k+3)
        # Elementwise sums of shifted slices: einsum over unfolded views copies per emitter.
        plane = (block * wz[:, :, None, None]).sum(1)
        rows = sum(wy[:, b, None, None] * plane[:, b: b + k, :] for b in range(4))  # (n, k, k+3)
        roi = sum(wx[:, b, None, None] * rows[:, :, b: b + k] for b in range(4))  # (n, k, k)
        return roi, row.long() - r, col.long() - r

    def render(self, x_px, y_px, z_nm, photons, shape, **_):
        h, w = shape
        f, m = x_px.shape
        on = photons > 0
        if not bool(on.any()):
            return x_px.new_zeros(f, h, w)
        fi = torch.arange(f, device=x_px.device).unsqueeze(1).expand(f, m)[on]
        roi, top, left = self.roi_images(x_px[on], y_px[on], z_nm[on])
        roi = roi * photons[on].view(-1, 1, 1)
        k = self.roi
        rr = top.view(-1, 1, 1) + torch.arange(k, device=x_px.device).view(1, k, 1)
        cc = left.view(-1, 1, 1) + torch.arange(k, device=x_px.device).view(1, 1, k)
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        # Pixels outside the frame go to one spare slot at the end (no boolean
        # indexing: it costs more than the rendering).
        flat = torch.where(inside, (fi.view(-1, 1, 1) * h + rr) * w + cc, f * h * w)
        out = x_px.new_zeros(f * h * w + 1)
        out.index_add_(0, flat.reshape(-1), roi.reshape(-1))
        return out[:-1].view(f, h, w)


def build_psf(cfg: PSFConfig, pixel_size_nm: float) -> PSF:
    if cfg.kind not in PSF_REGISTRY:
        raise ValueError(f"simulation.psf.kind: unknown PSF {cfg.kind!r}; known: {sorted(PSF_REGISTRY)}")
    if cfg.kind == "gaussian":
        return GaussianPSF(sigma_nm=cfg.sigma_nm, pixel_size_nm=pixel_size_nm)
    calibration = None
    if cfg.calibration:
        from .calibration import load_calibration

        calibration = load_calibration(cfg.calibration)
    if cfg.kind == "spline":
        if calibration is None:
            raise ValueError("simulation.psf.calibration: the spline PSF needs a calibration file "
                             "(napari-smlm calibrate BEADS.tif ... --out PSF.h5, or a SMAP *_3dcal.mat)")
        return SplinePSF.from_calibration(calibration, pixel_size_nm)
    if calibration is not None:
        if calibration.astigmatic is None:
            raise ValueError(f"simulation.psf.calibration {cfg.calibration}: holds no astigmatic Gaussian fit; "
                             "use simulation.psf.kind=spline")
        return AstigmaticPSF(calibration.astigmatic, pixel_size_nm, calibration.z_range_nm)
    a = cfg.astigmatism
    return AstigmaticPSF({k: getattr(a, k) for k in ASTIGMATIC_KEYS}, pixel_size_nm, tuple(a.z_range_nm))
