"""PSF calibration: a bead z-stack -> a 3D PSF model (cubic spline + astigmatic Gaussian).

The stage steps through focus while fluorescent beads on the coverslip are imaged.
:func:`calibrate_beads` finds the beads, fits every bead and plane with an
elliptical Gaussian (σx, σy, x, y), aligns the beads to each other in x, y (their
centre near focus) and z (where σx = σy, the astigmatic "focus"; the sharpest
plane for a PSF without astigmatism), averages them, and fits σx(z), σy(z) of the
average with Huang et al.'s model. The result, a :class:`Calibration`, is saved as
one HDF5 file (DESIGN.md, "PSF calibration file") and turned into a PSF by
:func:`napari_smlm.core.psf.build_psf`.

**Direction of z.** Plane k of the stack is taken to show a molecule at
z = (k − k_focus)·z_step (the convention of Picasso's z calibration and of SMAP's
Gaussian z fit; SMAP's spline fitter and DECODE report z with the opposite sign,
and SMAP ``*_3dcal.mat`` files are imported in theirs, see :mod:`.smap`, so that z
means what those tools say for the same file). With z positive away
from the coverslip, that is right when each step brings the focal plane closer to
the coverslip (the beads, which sit on the coverslip, end up ever further on the
"positive" side of focus). If your stage stepped the focal plane into the sample,
give a negative ``z_step_nm``: the stack is then read backwards. The stage step is
taken as the molecules' z; the focal shift from a refractive-index mismatch
(oil objective, molecules in water: about ×0.8) is not corrected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from scipy import ndimage, optimize

from .psf import ASTIGMATIC_KEYS, astigmatic_sigma_nm

__all__ = ["Calibration", "CalibrationError", "CalibrationCancelled", "calibrate_beads", "calibrate_file", "load_calibration", "save_calibration",
           "fit_astigmatic", "fit_gaussians", "default_roi_px", "use_calibration", "plot_calibration",
           "is_calibration_file"]

FORMAT = "napari-smlm psf calibration"
VERSION = 1


class CalibrationError(ValueError):
    """A bead stack or calibration file cannot be used; the message says why."""


class CalibrationCancelled(Exception):
    """The caller's ``cancelled()`` said stop (the Calibrate widget's Cancel)."""


def _check(cancelled) -> None:
    if cancelled is not None and cancelled():
        raise CalibrationCancelled("PSF calibration cancelled")


@dataclass
class Calibration:
    """A measured 3D PSF.

    ``stack`` (Z, H, W) float32: the averaged, background-free bead image, each plane
    summing to 1, the bead at the centre of pixel (H//2, W//2), plane k at
    z = (k − ``focus_index``)·``z_step_nm``. ``astigmatic``: σx(z), σy(z) parameters
    (:data:`napari_smlm.core.psf.ASTIGMATIC_KEYS`) or None. ``curves``: the measured
    σx, σy (nm) of the average per plane, for plots. ``beads``: one row per bead found
    (x_px, y_px, focus_nm, used, residual) and ``reasons`` why a bead was left out.
    """

    stack: np.ndarray
    z_step_nm: float
    focus_index: float
    pixel_size_nm: float
    astigmatic: Optional[dict] = None
    curves: dict = field(default_factory=dict)
    beads: dict = field(default_factory=dict)
    camera: Optional[dict] = None
    source: str = ""
    path: Optional[str] = None

    @property
    def z_min_nm(self) -> float:
        return -self.focus_index * self.z_step_nm

    @property
    def z_range_nm(self) -> tuple[float, float]:
        return self.z_min_nm, self.z_min_nm + (self.stack.shape[0] - 1) * self.z_step_nm

    @property
    def z_nm(self) -> np.ndarray:
        return self.z_min_nm + self.z_step_nm * np.arange(self.stack.shape[0])

    def spline_coefficients(self, pad: int = 2) -> tuple[np.ndarray, int]:
        """Cubic B-spline coefficients of the stack padded by ``pad`` on every side
        (zeros around the bead, the first/last plane repeated in z)."""
        s = np.pad(self.stack.astype(np.float64), ((pad, pad), (0, 0), (0, 0)), mode="edge")
        s = np.pad(s, ((0, 0), (pad, pad), (pad, pad)))
        return ndimage.spline_filter(s, order=3, mode="mirror").astype(np.float32), pad

    def summary(self) -> str:
        lo, hi = self.z_range_nm
        used = int(np.sum(self.beads.get("used", []))) if self.beads else 0
        found = len(self.beads.get("used", [])) if self.beads else 0
        text = (f"PSF {self.stack.shape[2]}x{self.stack.shape[1]} px x {self.stack.shape[0]} planes, "
                f"z {lo:.0f}..{hi:.0f} nm in {self.z_step_nm:g} nm steps, {self.pixel_size_nm:g} nm pixels")
        if found:
            text += f"; {used} of {found} beads averaged"
        if self.astigmatic:
            a = self.astigmatic
            text += (f"; astigmatic fit: x focus {a['gamma_x_nm']:.0f} nm, y focus {a['gamma_y_nm']:.0f} nm, "
                     f"depth of field {a['d_x_nm']:.0f}/{a['d_y_nm']:.0f} nm")
            if "rms_nm" in a:
                text += f", residual {a['rms_nm']:.1f} nm"
        return text


# ----------------------------------------------------------------------------- Gaussian fits


def fit_gaussians(rois: np.ndarray, iterations: int = 30, cancelled=None) -> dict[str, np.ndarray]:
    """Least-squares fit of a pixel-integrated elliptical Gaussian to each ROI.

    ``rois`` (n, R, R) in photons. Returns per ROI ``x``, ``y`` (px, relative to the
    ROI's top-left corner, pixel centres at i + 0.5), ``sigma_x``, ``sigma_y`` (px),
    ``photons``, ``bg`` and ``ok``. Batched Levenberg–Marquardt in torch (scipy's
    fitters go one ROI at a time, too slow for a few thousand bead planes)."""
    d = torch.as_tensor(np.asarray(rois, np.float64))
    n, r, _ = d.shape
    if n == 0:
        return {k: np.zeros(0) for k in ("x", "y", "sigma_x", "sigma_y", "photons", "bg", "ok")}
    edges = torch.arange(r + 1, dtype=d.dtype)
    bg0 = torch.quantile(d.reshape(n, -1), 0.1, dim=1)
    w = (d - bg0.view(-1, 1, 1)).clamp_min(0)
    tot = w.sum((1, 2)).clamp_min(1e-9)
    c = torch.arange(r, dtype=d.dtype) + 0.5
    x0 = (w.sum(1) * c).sum(1) / tot
    y0 = (w.sum(2) * c).sum(1) / tot
    sx0 = ((w.sum(1) * (c - x0[:, None]) ** 2).sum(1) / tot).sqrt().clamp(0.7, r / 3)
    sy0 = ((w.sum(2) * (c - y0[:, None]) ** 2).sum(1) / tot).sqrt().clamp(0.7, r / 3)
    theta = torch.stack([x0, y0, sx0.log(), sy0.log(), tot.clamp_min(1.0).log(), bg0], 1)

    def model(t: torch.Tensor) -> torch.Tensor:
        x, y, sx, sy, nph, b = t[0], t[1], t[2].exp(), t[3].exp(), t[4].exp(), t[5]
        px = 0.5 * torch.diff(torch.erf((edges - x) / (math.sqrt(2) * sx)))
        py = 0.5 * torch.diff(torch.erf((edges - y) / (math.sqrt(2) * sy)))
        return nph * py[:, None] * px[None, :] + b

    jac = torch.func.vmap(torch.func.jacfwd(model))
    batched = torch.func.vmap(model)
    lam = torch.full((n,), 1e-2, dtype=d.dtype)
    res = (batched(theta) - d).reshape(n, -1)
    cost = (res ** 2).sum(1)
    eye = torch.eye(6, dtype=d.dtype)
    for _ in range(iterations):
        _check(cancelled)
        j = jac(theta).reshape(n, -1, 6)
        jtj = j.transpose(1, 2) @ j
        g = (j.transpose(1, 2) @ res.unsqueeze(-1)).squeeze(-1)
        damp = jtj + lam.view(-1, 1, 1) * torch.diag_embed(torch.diagonal(jtj, dim1=1, dim2=2)) + 1e-9 * eye
        step = torch.linalg.solve(damp, -g)
        trial = theta + step
        trial[:, 2:4] = trial[:, 2:4].clamp(math.log(0.3), math.log(r))
        new_res = (batched(trial) - d).reshape(n, -1)
        new_cost = (new_res ** 2).sum(1)
        better = new_cost < cost
        theta = torch.where(better[:, None], trial, theta)
        res = torch.where(better[:, None], new_res, res)
        cost = torch.where(better, new_cost, cost)
        lam = torch.where(better, lam / 3, lam * 4).clamp(1e-7, 1e7)
    t = theta.numpy()
    ok = np.isfinite(t).all(1) & (t[:, 0] > 0) & (t[:, 0] < r) & (t[:, 1] > 0) & (t[:, 1] < r)
    return {"x": t[:, 0], "y": t[:, 1], "sigma_x": np.exp(t[:, 2]), "sigma_y": np.exp(t[:, 3]),
            "photons": np.exp(t[:, 4]), "bg": t[:, 5], "ok": ok}


def fit_astigmatic(z_nm: np.ndarray, sigma_x_nm: np.ndarray, sigma_y_nm: np.ndarray) -> dict:
    """Huang et al.'s σ(z) = σ0·sqrt(1 + u² + A·u³ + B·u⁴), u = (z − γ)/d, fitted to
    each axis; returns :data:`ASTIGMATIC_KEYS` plus ``rms_nm`` (residual of both)."""
    out, rms = {}, []
    for axis, s in (("x", np.asarray(sigma_x_nm, float)), ("y", np.asarray(sigma_y_nm, float))):
        good = np.isfinite(s)
        z, s = np.asarray(z_nm, float)[good], s[good]
        if len(z) < 8:
            raise CalibrationError(f"astigmatic fit: only {len(z)} planes with a usable σ{axis}")
        i = int(np.argmin(s))
        p0 = [s[i], z[i], max(0.25 * (z.max() - z.min()), 50.0), 0.0, 0.0]

        def f(zz, s0, g, dd, a, b):
            return astigmatic_sigma_nm(zz, s0, g, dd, a, b)

        try:
            p, _ = optimize.curve_fit(f, z, s, p0=p0, maxfev=20000,
                                      bounds=([1.0, z.min() - 2000, 10.0, -5, -5], [5000, z.max() + 2000, 1e5, 5, 5]))
        except (RuntimeError, ValueError) as exc:
            raise CalibrationError(f"astigmatic fit of σ{axis}(z) failed: {exc}") from None
        out.update({f"sigma0_{axis}_nm": p[0], f"gamma_{axis}_nm": p[1], f"d_{axis}_nm": p[2],
                    f"A_{axis}": p[3], f"B_{axis}": p[4]})
        rms.append(np.sqrt(np.mean((f(z, *p) - s) ** 2)))
    out = {k: float(out[k]) for k in ASTIGMATIC_KEYS}
    out["rms_nm"] = float(np.sqrt(np.mean(np.square(rms))))
    return out


# ----------------------------------------------------------------------------- bead stacks


def default_roi_px(pixel_size_nm: float) -> int:
    """An odd ROI about 2 µm wide: holds a defocused PSF at ±750 nm."""
    return int(2 * round(1000.0 / pixel_size_nm) + 1)


def _find_beads(stack: np.ndarray, roi: int, min_snr: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of the stack's mean (smoothed) brighter than ``min_snr`` robust
    noise levels; (n, 2) row/col and their peak values."""
    mean = ndimage.gaussian_filter(stack.mean(0), 1.5)
    level = np.median(mean)
    noise = 1.4826 * np.median(np.abs(mean - level)) + 1e-9
    peaks = (mean == ndimage.maximum_filter(mean, size=max(3, roi // 2))) & (mean > level + min_snr * noise)
    rc = np.argwhere(peaks)
    values = mean[peaks] - level
    if len(values):
        keep = values > 0.2 * np.median(values)  # dim specks, not beads
        rc, values = rc[keep], values[keep]
    return rc, values


def _focus_index(sx: np.ndarray, sy: np.ndarray) -> float:
    """Plane (fractional) where σx = σy near the middle, or the sharpest plane when
    the PSF has no astigmatism."""
    diff = sx - sy
    s = sx + sy
    good = np.isfinite(diff)
    idx = np.arange(len(sx))
    crossings = [i + diff[i] / (diff[i] - diff[i + 1]) for i in idx[:-1]
                 if good[i] and good[i + 1] and np.sign(diff[i]) != np.sign(diff[i + 1]) and diff[i] != diff[i + 1]]
    amplitude = np.nanmax(np.abs(diff)) if good.any() else 0.0
    if crossings and amplitude > 0.3 * np.nanmin(s):
        sharp = np.nanargmin(s)
        return float(min(crossings, key=lambda c: abs(c - sharp)))
    i = int(np.nanargmin(s))
    lo, hi = max(i - 5, 0), min(i + 6, len(s))
    zz, ss = idx[lo:hi], s[lo:hi]
    ok = np.isfinite(ss)
    if ok.sum() >= 3:
        a, b, _ = np.polyfit(zz[ok], ss[ok], 2)
        if a > 0:
            return float(np.clip(-b / (2 * a), lo, hi - 1))
    return float(i)


def calibrate_beads(
    stack_photons: np.ndarray,
    z_step_nm: float,
    pixel_size_nm: float,
    roi_px: Optional[int] = None,
    exclude: Sequence[int] = (),
    min_snr: float = 10.0,
    camera: Optional[dict] = None,
    source: str = "",
    z_smooth_nm: float = 30.0,
    cancelled=None,
) -> Calibration:
    """Bead z-stack (Z, H, W) in photons -> :class:`Calibration`.

    ``exclude``: indices (in the order of ``calibration.beads``, as found) of beads
    the user does not want averaged. A negative ``z_step_nm`` reads the stack
    backwards (see the module docstring). Raises :class:`CalibrationError` when
    no usable bead is found. ``cancelled``: a callable checked between the fit's
    iterations; when it returns True, :class:`CalibrationCancelled` is raised.
    """
    stack = np.asarray(stack_photons, np.float64)
    if stack.ndim != 3 or stack.shape[0] < 10:
        raise CalibrationError(f"bead stack {source}: expected a z-stack of at least 10 planes (Z, Y, X), "
                               f"got shape {stack.shape}")
    if not math.isfinite(z_step_nm) or z_step_nm == 0:
        raise CalibrationError(f"--z-step: expected a non-zero step in nm, got {z_step_nm}")
    if z_step_nm < 0:
        stack, z_step_nm = stack[::-1], -z_step_nm
    roi = int(roi_px or default_roi_px(pixel_size_nm))
    roi += 1 - roi % 2
    r = roi // 2
    nz, h, w = stack.shape
    if min(h, w) < roi:
        raise CalibrationError(f"bead stack {source}: frames of {w}x{h} px are smaller than the {roi} px ROI")
    background = np.median(stack.reshape(nz, -1), axis=1)  # beads are sparse: the median is background
    clean = stack - background[:, None, None]
    rc, _ = _find_beads(clean, roi, min_snr)
    if len(rc) == 0:
        raise CalibrationError(f"bead stack {source}: no beads found (nothing {min_snr:g}x above the noise)")
    n = len(rc)
    reasons = [""] * n
    for i, (row, col) in enumerate(rc):
        if row < r or col < r or row + r >= h or col + r >= w:
            reasons[i] = "too close to the edge"
        others = np.delete(rc, i, axis=0)
        if len(others) and np.min(np.max(np.abs(others - rc[i]), axis=1)) < roi:
            reasons[i] = reasons[i] or "a neighbour inside its ROI"
    for i in exclude:
        if 0 <= int(i) < n:
            reasons[int(i)] = "excluded by the user"
    usable = [i for i in range(n) if not reasons[i]]
    if not usable:
        raise CalibrationError(f"bead stack {source}: {n} bead(s) found, none usable "
                               f"({'; '.join(sorted(set(reasons)))})")

    rois = np.stack([clean[:, rc[i, 0] - r: rc[i, 0] + r + 1, rc[i, 1] - r: rc[i, 1] + r + 1] for i in usable])
    fits = fit_gaussians(rois.reshape(-1, roi, roi), cancelled=cancelled)
    fits = {k: v.reshape(len(usable), nz) for k, v in fits.items()}
    focus = np.zeros(len(usable))
    centre = np.zeros((len(usable), 2))
    for j in range(len(usable)):
        sx = np.where(fits["ok"][j], fits["sigma_x"][j], np.nan)
        sy = np.where(fits["ok"][j], fits["sigma_y"][j], np.nan)
        focus[j] = _focus_index(sx, sy)
        near = np.abs(np.arange(nz) - focus[j]) <= max(2, 300.0 / z_step_nm)
        near &= fits["ok"][j]
        centre[j] = (np.median(fits["x"][j][near]), np.median(fits["y"][j][near])) if near.any() else (r + 0.5, r + 0.5)

    ref = float(np.median(focus))
    aligned = []
    for j in range(len(usable)):
        shift = (ref - focus[j], (r + 0.5) - centre[j, 1], (r + 0.5) - centre[j, 0])
        moved = ndimage.shift(rois[j], shift, order=3, mode="nearest")
        # Each bead weighs the same: normalise by its light near focus.
        k = int(round(ref))
        moved /= max(moved[max(k - 2, 0): k + 3].sum((1, 2)).mean(), 1e-9)
        aligned.append(moved)
    aligned = np.stack(aligned)
    # Planes a shift pulled in from beyond the stack's ends are not data: crop them.
    cut = int(math.ceil(np.max(np.abs(ref - focus)))) if len(focus) else 0
    keep = slice(cut, nz - cut)
    aligned = aligned[:, keep]
    average = aligned.mean(0)
    residual = np.sqrt(((aligned - average) ** 2).mean((1, 2, 3))) / max(np.abs(average).max(), 1e-12)
    # Smooth along z (σ = z_smooth_nm): the beads' photon noise differs from plane to
    # plane, and a spline through it would carry z "information" that is only noise
    # (its Cramér–Rao bound in z came out 3x too optimistic on a simulated stack). The
    # PSF itself changes over hundreds of nm, so 30 nm smoothing leaves it intact.
    if z_smooth_nm > 0:
        average = ndimage.gaussian_filter1d(average, z_smooth_nm / z_step_nm, axis=0, mode="nearest")
    sums = average.sum((1, 2), keepdims=True)
    if np.any(sums <= 0):
        raise CalibrationError(f"bead stack {source}: the averaged bead has no light in some planes")
    average = (average / sums).astype(np.float32)

    _check(cancelled)
    fit = fit_gaussians(average.reshape(-1, roi, roi) * 1e4, cancelled=cancelled)
    sx = np.where(fit["ok"], fit["sigma_x"], np.nan) * pixel_size_nm
    sy = np.where(fit["ok"], fit["sigma_y"], np.nan) * pixel_size_nm
    focus_avg = _focus_index(sx, sy)
    z = (np.arange(average.shape[0]) - focus_avg) * z_step_nm
    try:
        astig = fit_astigmatic(z, sx, sy)
    except CalibrationError:
        astig = None

    used = np.zeros(n, bool)
    used[usable] = True
    focus_all = np.full(n, np.nan)
    focus_all[usable] = (focus - ref) * z_step_nm
    res_all = np.full(n, np.nan)
    res_all[usable] = residual
    beads = {"x_px": rc[:, 1] + 0.5, "y_px": rc[:, 0] + 0.5, "focus_nm": focus_all, "used": used,
             "residual": res_all, "reason": np.array(reasons, dtype=object)}
    curves = {"z_nm": z, "sigma_x_nm": sx, "sigma_y_nm": sy}
    return Calibration(average, float(z_step_nm), float(focus_avg), float(pixel_size_nm), astig, curves, beads,
                       camera, source)


def calibrate_file(
    path: Union[str, Path],
    z_step_nm: float,
    pixel_size_nm: Optional[float] = None,
    camera=None,
    roi_px: Optional[int] = None,
    exclude: Sequence[int] = (),
) -> Calibration:
    """A bead z-stack file (any TIFF our reader opens) -> :class:`Calibration`.

    ``camera``: a :class:`~napari_smlm.core.camera.Camera` or None. The PSF's shape
    does not need the camera (each plane's background is measured and the PSF is
    normalised), so without one the stack is used in ADU. ``pixel_size_nm``: given,
    else the file's metadata, else an error (the spline's grid is the camera pixel)."""
    from .io import open_movie
    from .io.metadata import read_movie_metadata

    movie = open_movie(path)
    if len(movie.shape) != 3:
        raise CalibrationError(f"bead stack {path}: expected (Z, Y, X) frames, got shape {movie.shape}")
    meta = read_movie_metadata(path)
    px = pixel_size_nm or meta.get("pixel_size_nm")
    if not px:
        raise CalibrationError(f"bead stack {path}: its metadata does not state the pixel size; give --pixel-size NM")
    stack = np.asarray(movie[:], np.float64)
    cam = None
    if camera is not None:
        stack = camera.to_photons(torch.from_numpy(stack)).numpy()
        cam = camera.to_dict()
    cal = calibrate_beads(stack, z_step_nm, float(px), roi_px=roi_px, exclude=exclude, camera=cam, source=str(path))
    return cal


def use_calibration(cfg, path: Union[str, Path], kind: Optional[str] = None) -> str:
    """Point a training config at a PSF calibration (``train --psf``, the Train widget).

    Sets ``simulation.psf.calibration`` (absolute path), the PSF kind (``kind``, by
    default the ``spline``: it captures what a Gaussian does not), the camera pixel size to the
    calibration's, and draws z over the calibrated range less two z steps at each
    end (or over the config's range where that is narrower and not just 0).
    Returns what it did, in words."""
    cal = load_calibration(path)
    psf = cfg.simulation.psf
    psf.calibration = str(Path(path).resolve())
    psf.kind = kind or "spline"
    if psf.kind == "astigmatic" and cal.astigmatic is None:
        raise CalibrationError(f"PSF calibration {path}: has no astigmatic Gaussian fit; use the spline PSF")
    said = [f"PSF: {psf.kind} from {path} ({cal.summary()})"]
    if abs(cfg.simulation.pixel_size_nm - cal.pixel_size_nm) > 1e-6:
        said.append(f"simulation.pixel_size_nm: {cfg.simulation.pixel_size_nm:g} -> {cal.pixel_size_nm:g} "
                    "(the calibration's camera pixel)")
        cfg.simulation.pixel_size_nm = cal.pixel_size_nm
    lo, hi = cal.z_range_nm
    margin = 2 * cal.z_step_nm
    lo, hi = lo + margin, hi - margin
    want = cfg.simulation.emitters.z_range_nm
    if want[1] > want[0]:
        lo, hi = max(lo, want[0]), min(hi, want[1])
    cfg.simulation.emitters.z_range_nm = [float(lo), float(hi)]
    said.append(f"z drawn uniformly in [{lo:.0f}, {hi:.0f}] nm")
    return "; ".join(said)


# ----------------------------------------------------------------------------- files


def save_calibration(cal: Calibration, path: Union[str, Path]) -> None:
    """Write the calibration as one HDF5 file, atomically (DESIGN.md)."""
    import json

    import h5py

    from .utils import atomic_write

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["pixel_size_nm"] = cal.pixel_size_nm
            f.attrs["z_step_nm"] = cal.z_step_nm
            f.attrs["focus_index"] = cal.focus_index
            f.attrs["z_min_nm"] = cal.z_min_nm
            f.attrs["source"] = cal.source
            f.attrs["camera"] = json.dumps(cal.camera or {})
            f.create_dataset("stack", data=cal.stack.astype(np.float32), compression="gzip")
            coeff, pad = cal.spline_coefficients()
            d = f.create_dataset("spline/coefficients", data=coeff, compression="gzip")
            d.attrs["pad"] = pad
            d.attrs["grid"] = "camera pixels in x, y; z_step_nm in z; padded by `pad` on every side"
            if cal.astigmatic:
                g = f.create_group("astigmatic")
                for k, v in cal.astigmatic.items():
                    g.attrs[k] = v
            for k, v in cal.curves.items():
                f.create_dataset(f"curves/{k}", data=np.asarray(v, float))
            for k, v in cal.beads.items():
                data = np.asarray(v).astype("S") if np.asarray(v).dtype == object else np.asarray(v)
                f.create_dataset(f"beads/{k}", data=data)

    atomic_write(path, write)


def is_calibration_file(path: Union[str, Path]) -> bool:
    """True for an HDF5 file napari-smlm wrote as a PSF calibration: the only kind of
    existing file ``calibrate`` and the Calibrate widget may replace."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


def load_calibration(path: Union[str, Path]) -> Calibration:
    """Read a PSF calibration: our HDF5 (``napari-smlm calibrate``) or SMAP's
    ``*_3dcal.mat``. Errors name the file and what is missing."""
    import json

    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"PSF calibration {path}: no such file")
    if path.suffix.lower() == ".mat":
        from .smap import read_smap_3dcal

        d = read_smap_3dcal(path)
        stack = np.asarray(d["stack"], np.float64)
        stack = np.clip(stack, 0, None)
        stack = (stack / stack.sum((1, 2), keepdims=True)).astype(np.float32)
        if d.get("pixel_size_nm") is None:
            raise CalibrationError(f"PSF calibration {path}: the SMAP file does not say its pixel size")
        return Calibration(stack, float(d["z_step_nm"]), float(d["focus_index"]), float(d["pixel_size_nm"]),
                           d.get("astigmatic"), source=d.get("source", str(path)), path=str(path))
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CalibrationError(f"PSF calibration {path}: not a napari-smlm calibration "
                                       f"(expected the attribute format = {FORMAT!r}; make one with napari-smlm calibrate)")
            astig = dict(f["astigmatic"].attrs) if "astigmatic" in f else None
            curves = {k: f["curves"][k][()] for k in f["curves"]} if "curves" in f else {}
            beads = {k: f["beads"][k][()] for k in f["beads"]} if "beads" in f else {}
            if "reason" in beads:
                beads["reason"] = np.array([b.decode() for b in beads["reason"]], dtype=object)
            return Calibration(
                f["stack"][()].astype(np.float32), float(f.attrs["z_step_nm"]), float(f.attrs["focus_index"]),
                float(f.attrs["pixel_size_nm"]), {k: float(v) for k, v in astig.items()} if astig else None,
                curves, beads, json.loads(f.attrs.get("camera", "{}")) or None, str(f.attrs.get("source", "")),
                str(path))
    except CalibrationError:
        raise
    except (OSError, KeyError) as exc:
        raise CalibrationError(f"PSF calibration {path}: cannot read it ({exc})") from None


def plot_calibration(cal: Calibration, path: Union[str, Path]) -> None:
    """σx(z), σy(z) measured and fitted, the averaged PSF at five depths, and each
    bead's residual against the average (a PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from .utils import atomic_write

    fig = Figure(figsize=(10, 6.5), layout="constrained")
    grid = fig.add_gridspec(2, 5)
    ax = fig.add_subplot(grid[0, :3])
    z = np.asarray(cal.curves.get("z_nm", cal.z_nm))
    if "sigma_x_nm" in cal.curves:
        ax.plot(z, cal.curves["sigma_x_nm"], ".", ms=3, color="tab:blue", label="σx measured")
        ax.plot(z, cal.curves["sigma_y_nm"], ".", ms=3, color="tab:orange", label="σy measured")
    if cal.astigmatic:
        a = cal.astigmatic
        ax.plot(z, astigmatic_sigma_nm(z, a["sigma0_x_nm"], a["gamma_x_nm"], a["d_x_nm"], a["A_x"], a["B_x"]),
                color="tab:blue", label="σx fit")
        ax.plot(z, astigmatic_sigma_nm(z, a["sigma0_y_nm"], a["gamma_y_nm"], a["d_y_nm"], a["A_y"], a["B_y"]),
                color="tab:orange", label="σy fit")
    ax.set_xlabel("z [nm] (positive away from the coverslip)")
    ax.set_ylabel("σ [nm]")
    ax.legend(fontsize=8)
    ax.set_title("PSF width versus z")
    ax2 = fig.add_subplot(grid[0, 3:])
    if cal.beads:
        res = np.asarray(cal.beads["residual"], float)
        used = np.asarray(cal.beads["used"], bool)
        idx = np.arange(1, len(res) + 1)
        ax2.bar(idx[used], res[used], color="tab:green")
        ax2.set_xticks(idx)
        ax2.set_xlabel("bead")
        ax2.set_ylabel("rms residual / peak")
        ax2.set_title("beads against the average")
    for j, zz in enumerate(np.linspace(*cal.z_range_nm, 7)[1:-1]):
        k = int(round((zz - cal.z_min_nm) / cal.z_step_nm))
        a = fig.add_subplot(grid[1, j])
        a.imshow(cal.stack[k], cmap="magma")
        a.set_title(f"z = {zz:+.0f} nm", fontsize=9)
        a.set_axis_off()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
