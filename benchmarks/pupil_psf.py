"""An astigmatic PSF that is not ours, for the 3D benchmark (issue 12): a scalar
pupil-function model, a simulated bead z-stack and astigmatic test movies.

Nothing here imports napari_smlm's PSF code: the point is that a calibration must
capture a PSF that is not a Gaussian and was not made by the code under test. Only
our ``Camera.forward`` draws the camera noise (EMCCD: Poisson, Gamma EM register,
read noise, ADU), so the noise model matches what ``localize`` inverts.

The optics
----------
Scalar pupil model: objective NA 1.49 with immersion oil n = 1.518, emitters (and
beads) in water (n_s = 1.33), emission wavelength 670 nm, 100 nm camera pixels. Light
from an emitter deeper than ~λ in water reaches the pupil only up to NA 1.33 (the
supercritical part is neglected), and depth-induced spherical aberration is neglected
(z is the emitter's distance from the focal plane, in water). In the pupil (lateral
spatial frequency f, |f| < n_s/λ; normalised radius ρ = |f|λ/NA of the objective's
pupil; θ the angle from the x axis = image columns)::

    P(f) = t(f) · exp(i·2π·z·sqrt((n_s/λ)² - |f|²)) · exp(i·2π·a·√6·ρ²·cos 2θ)

t is the mean of the Fresnel s- and p-transmission from water into glass (it falls to 0
at grazing angles, which keeps the defocused PSF compact, as in a real water sample); no
aplanatic or dipole factors. The first phase is the exact high-NA defocus of an emitter
at depth z, the second vertical astigmatism (Zernike Z(2,2), Noll 6) of rms amplitude
a = 0.19 waves, which puts the line foci (minimum Gaussian width) at z = ±280 nm; the
Gaussian fit's σ is 1.6 px in focus and about 1.4 x 5.5 px at |z| = 600 nm.

Imaging: the amplitude field E = IFFT(P) on a 12.8 µm field with 20 nm pixels (5x finer
than the camera; the pupil radius spans 25 samples); the intensity |E|² is normalised to
1, folded (periodic summation) onto a period of 64 camera pixels, and its Fourier series
at the camera's frequencies, times sinc(f·px) in x and y, is the exact pixel-integrated
PSF: the intensity is band-limited to 2·1.33/λ = 4.0 cycles/µm, below the camera's
Nyquist frequency of 5 cycles/µm, so sampling it at pixel centres loses nothing (more
oversampling changes nothing, to 1e-16), and sub-pixel positions are exact Fourier
phase ramps. The transfer functions are cached on a z grid of 10 nm (computed lazily,
plane by plane; those at -z are transposes of those at +z) and interpolated linearly
in z (relative error < 1e-4 of the peak).

Sign of z (DESIGN.md: z = 0 focal plane, positive away from the coverslip): an
emitter at z > 0 gives a spot **elongated along y** (image rows; σy > σx), with the
x line focus (narrowest in x) at z = +280 nm; at z < 0 the spot is elongated along x
(σx > σy), with the y line focus at z = -280 nm; at z = 0 it is round. This is the
common parametric form σx(z) = σ0·sqrt(1 + ((z - c)/d)²), σy with -c, c > 0. The
model is symmetric, PSF(x, y, -z) = PSF(y, x, z), and centrosymmetric at every z (no
lateral shift with z).

Photons. The PSF integrates to 1 over the plane: ``photons`` in the truth tables is the
molecule's total photon count. A 15x15 px ROI centred on the molecule holds 95 % of
them in focus, 89 % at |z| = 300 nm, 72 % at |z| = 600 nm and 62 % at 750 nm (a 33x33
ROI: 99 %, 95 %, 92 %; see :func:`fraction_in_roi`); the rest lies in the faint rings and
tails of the defocused spot.

Coordinates: positions in nm with the top-left corner of the top-left pixel at (0, 0);
pixel (row i, column j) spans x in [j, j+1)·px, y in [i, i+1)·px. Functions taking
``x_px, y_px`` use the same origin in pixel units (the centre of pixel j is j + 0.5).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

PIXEL_NM = 100.0
NA = 1.49
N_IMMERSION = 1.518
N_SAMPLE = 1.33  # emitters and beads in water
WAVELENGTH_NM = 670.0
ASTIG_WAVES = 0.19  # rms Zernike Z(2,2) amplitude [waves]: line foci at ±280 nm, z > 0 elongated along y

# The benchmark's camera: the same EMCCD as benchmarks/run.py (our Camera's defaults).
CAMERA = {"kind": "emccd", "baseline": 100.0, "e_per_adu": 45.0, "em_gain": 100.0, "qe": 0.9, "read_noise_e": 74.4}


@dataclass(frozen=True)
class PupilPSF:
    """Scalar pupil PSF; see the module docstring. ``astig_waves``: rms Zernike Z(2,2)
    amplitude (positive: z > 0 elongated along y). ``period_px``: the camera-pixel period
    onto which the intensity is folded (every rendered tile is period_px²);
    ``field_px``: side of the FFT field in camera pixels (a multiple of period_px)."""

    na: float = NA
    n: float = N_IMMERSION
    n_sample: float = N_SAMPLE
    wavelength_nm: float = WAVELENGTH_NM
    pixel_nm: float = PIXEL_NM
    astig_waves: float = ASTIG_WAVES
    oversample: int = 5
    period_px: int = 64
    field_px: int = 128
    z_step_nm: float = 10.0
    z_max_nm: float = 1000.0

    def __post_init__(self):
        if self.field_px % self.period_px:
            raise ValueError("field_px must be a multiple of period_px")
        if 2 * min(self.na, self.n_sample) / self.wavelength_nm >= 1.0 / (2 * self.pixel_nm):
            raise ValueError("the camera undersamples this PSF (2NA/λ above the pixels' Nyquist frequency)")
        n_z = int(round(2 * self.z_max_nm / self.z_step_nm)) + 1  # odd: z = 0 is a plane
        object.__setattr__(self, "_planes", np.zeros((n_z, self.period_px, self.period_px), np.complex128))
        object.__setattr__(self, "_done", np.zeros(n_z, bool))

    # -- transfer functions -------------------------------------------------------
    @property
    def z_grid(self) -> np.ndarray:
        return np.linspace(-self.z_max_nm, self.z_max_nm, len(self._done))

    def _pupil_parts(self):
        """The z-independent parts of the pupil, on the FFT layout of the fine grid: the
        mask of the aperture, and inside it the amplitude, the axial wave number
        (cycles/nm) and the astigmatic phase (radians)."""
        if getattr(self, "_parts", None) is None:
            n_fine = self.oversample * self.field_px
            f = np.fft.fftfreq(n_fine, d=self.pixel_nm / self.oversample)  # cycles / nm
            fx, fy = np.meshgrid(f, f)  # fx varies along columns (x), fy along rows (y)
            f2 = fx**2 + fy**2
            lam, ns, ni = self.wavelength_nm, self.n_sample, self.n
            inside = f2 < (min(self.na, ns) / lam) ** 2  # light that propagates in the sample
            fx, fy, f2 = fx[inside], fy[inside], f2[inside]
            rho2 = f2 / (self.na / lam) ** 2  # radius in the objective's pupil
            cos2t = np.where(f2 > 0, (fx**2 - fy**2) / np.where(f2 > 0, f2, 1.0), 0.0)
            cs = np.sqrt(1.0 - f2 * (lam / ns) ** 2)  # cos of the angle in the sample
            ci = np.sqrt(1.0 - f2 * (lam / ni) ** 2)  # ... in the glass
            ts = 2 * ns * cs / (ns * cs + ni * ci)
            tp = 2 * ns * cs / (ni * cs + ns * ci)
            astig = 2 * np.pi * self.astig_waves * math.sqrt(6.0) * rho2 * cos2t
            object.__setattr__(self, "_parts", (inside, 0.5 * (ts + tp), ns * cs / lam, astig))
        return self._parts

    def _pupil(self, z_nm: np.ndarray) -> np.ndarray:
        """Pupil functions (len(z), N, N) on the FFT layout of the fine grid."""
        inside, amp, kz, astig = self._pupil_parts()
        z = np.asarray(z_nm, float)
        out = np.zeros((len(z), *inside.shape), np.complex128)
        out[:, inside] = amp * np.exp(1j * (2 * np.pi * z[:, None] * kz + astig))
        return out

    def _compute(self, idx: np.ndarray) -> None:
        """Fill the cache's planes ``idx``. Planes at z >= 0 are computed, those at -z are
        their transposes (PSF(x, y, -z) = PSF(y, x, z), exact on the square grid)."""
        n_z = len(self._done)
        mirror = n_z - 1 - idx
        canon = np.unique(np.maximum(idx, mirror))
        todo = canon[~self._done[canon]]
        p, os_ = self.period_px, self.oversample
        fold = self.field_px // p
        kk = (np.fft.fftfreq(p) * p).astype(int)  # camera frequencies, in cycles per period
        sinc = np.sinc(kk / p)  # pixel integration: box of one pixel, f·px = k / p
        m = p * os_
        for start in range(0, len(todo), 8):
            part = todo[start:start + 8]
            field = np.fft.ifft2(self._pupil(self.z_grid[part]), axes=(-2, -1))
            inten = np.abs(field) ** 2
            inten /= inten.sum(axis=(-2, -1), keepdims=True)
            # fold onto the camera period (periodic summation), then its Fourier series
            folded = inten.reshape(len(part), fold, m, fold, m).sum(axis=(1, 3))
            otf = np.fft.fft2(folded, axes=(-2, -1))[:, kk % m][:, :, kk % m]
            self._planes[part] = otf * sinc[None, :, None] * sinc[None, None, :]
            self._done[part] = True
        low = idx[idx < n_z - 1 - idx]
        self._planes[low] = np.swapaxes(self._planes[n_z - 1 - low], -1, -2)
        self._done[low] = True

    def transfer(self, z_nm) -> np.ndarray:
        """Pixel-integrated transfer functions (len(z), P, P), FFT layout, linear in z."""
        z = np.atleast_1d(np.asarray(z_nm, float))
        if np.any(np.abs(z) > self.z_max_nm):
            raise ValueError(f"z beyond ±{self.z_max_nm:g} nm")
        t = (z + self.z_max_nm) / self.z_step_nm
        i0 = np.clip(np.floor(t).astype(int), 0, len(self._done) - 2)
        w = (t - i0)[:, None, None]
        need = np.unique(np.concatenate([i0, i0 + 1]))
        need = need[~self._done[need]]
        if len(need):
            self._compute(need)
        return (1 - w) * self._planes[i0] + w * self._planes[i0 + 1]

    # -- rendering -----------------------------------------------------------------
    def tiles(self, x_px, y_px, z_nm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each emitter's P x P image (expected fraction of its photons per pixel) and
        the tile's top-left pixel (row, column) in the frame; the emitter sits near the
        tile's centre."""
        x = np.atleast_1d(np.asarray(x_px, float))
        y = np.atleast_1d(np.asarray(y_px, float))
        p = self.period_px
        ox = np.floor(x).astype(int) - p // 2
        oy = np.floor(y).astype(int) - p // 2
        k = np.fft.fftfreq(p)  # cycles per pixel
        sx, sy = x - ox - 0.5, y - oy - 0.5  # sample j of the inverse DFT is at j + 0.5 - position
        ramp = np.exp(-2j * np.pi * (sy[:, None, None] * k[None, :, None] + sx[:, None, None] * k[None, None, :]))
        out = np.fft.ifft2(self.transfer(z_nm) * ramp, axes=(-2, -1)).real
        return np.clip(out, 0.0, None), oy, ox

    def render(self, x_px, y_px, z_nm, photons, shape, frame=None, n_frames: Optional[int] = None,
               chunk: int = 1024) -> np.ndarray:
        """Sum of emitters (expected photons per pixel) into (n_frames, H, W) frames
        (or one (H, W) image when ``frame`` is None); parts outside the frame are lost."""
        h, w = shape
        x = np.atleast_1d(np.asarray(x_px, float))
        y, z = np.atleast_1d(np.asarray(y_px, float)), np.atleast_1d(np.asarray(z_nm, float))
        ph = np.broadcast_to(np.asarray(photons, float), x.shape)
        fr = np.zeros(len(x), int) if frame is None else np.asarray(frame, int)
        nf = 1 if frame is None else (int(n_frames) if n_frames is not None else int(fr.max()) + 1 if len(fr) else 0)
        flat = np.zeros(nf * h * w)
        p = self.period_px
        ii, jj = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        for s in range(0, len(x), chunk):
            sl = slice(s, s + chunk)
            t, oy, ox = self.tiles(x[sl], y[sl], z[sl])
            rows, cols = oy[:, None, None] + ii, ox[:, None, None] + jj
            ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
            lin = (fr[sl][:, None, None] * h + rows) * w + cols
            flat += np.bincount(lin[ok], weights=(t * ph[sl][:, None, None])[ok], minlength=len(flat))
        img = flat.reshape(nf, h, w)
        return img[0] if frame is None else img


_DEFAULT: Optional[PupilPSF] = None


def default_psf() -> PupilPSF:
    """The benchmark's PSF (one per process: its transfer-function cache is shared)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PupilPSF()
    return _DEFAULT


def psf_images(x_px, y_px, z_nm, roi: int, psf: Optional[PupilPSF] = None) -> np.ndarray:
    """(n, roi, roi) images of unit-photon emitters at (x_px, y_px) in the ROI's pixel
    coordinates (pixel j spans [j, j+1)) and depth z_nm: expected photons per pixel."""
    psf = psf or default_psf()
    x = np.atleast_1d(np.asarray(x_px, float))
    y = np.atleast_1d(np.asarray(y_px, float))
    z = np.broadcast_to(np.asarray(z_nm, float), x.shape)
    return psf.render(x, y, z, 1.0, (roi, roi), frame=np.arange(len(x)), n_frames=len(x))


def fraction_in_roi(z_nm, roi: int = 15, psf: Optional[PupilPSF] = None) -> np.ndarray:
    """Fraction of a molecule's photons inside a roi x roi box centred on it."""
    z = np.atleast_1d(np.asarray(z_nm, float))
    c = roi / 2.0
    return psf_images(np.full(len(z), c), np.full(len(z), c), z, roi, psf).sum(axis=(1, 2))


def gaussian_widths(img: np.ndarray) -> tuple[float, float]:
    """σx, σy (pixels) of an elliptical Gaussian + offset fitted to a noise-free image
    (least squares): what a Gaussian fitter such as Picasso's reports."""
    from scipy.optimize import least_squares

    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    tot = img.sum()
    x0, y0 = (img * xx).sum() / tot, (img * yy).sum() / tot

    def model(p):
        a, mx, my, sx, sy, b = p
        return a * np.exp(-0.5 * (((xx - mx) / sx) ** 2 + ((yy - my) / sy) ** 2)) + b

    r = least_squares(lambda p: (model(p) - img).ravel(), [img.max(), x0, y0, 1.5, 1.5, 0.0],
                      bounds=([0, 0, 0, 0.3, 0.3, -np.inf], [np.inf, w, h, w, h, np.inf]))
    return float(r.x[3]), float(r.x[4])


# -- data sets ------------------------------------------------------------------------
def _camera():
    from napari_smlm.core.camera import Camera

    return Camera(**CAMERA)


def _noisy(expected: np.ndarray, seed: int, chunk: int = 200) -> np.ndarray:
    """Expected photons -> uint16 ADU through our EMCCD model, chunk by chunk."""
    import torch

    cam = _camera()
    gen = torch.Generator().manual_seed(int(seed))
    out = np.empty(expected.shape, np.uint16)
    for s in range(0, len(expected), chunk):
        out[s:s + chunk] = cam.forward(torch.from_numpy(expected[s:s + chunk]).float(), generator=gen).numpy().astype(np.uint16)
    return out


def _camera_json(extra: dict) -> dict:
    cam = CAMERA
    return {"camera": {"kind": cam["kind"], "baseline_adu": cam["baseline"], "e_per_adu": cam["e_per_adu"],
                       "em_gain": cam["em_gain"], "qe": cam["qe"], "read_noise_e": cam["read_noise_e"],
                       "adu_per_photoelectron": cam["em_gain"] / cam["e_per_adu"]},
            "pixel_size_nm": PIXEL_NM, "psf": "scalar pupil, astigmatic (benchmarks/pupil_psf.py)",
            "psf_parameters": {k: v for k, v in asdict(default_psf()).items()},
            "z_convention": "z = 0 focal plane, positive away from the coverslip; z > 0: spot elongated along y",
            **extra}


def bead_stack(out_dir, n_beads: int = 12, size: int = 128, z_from_nm: float = -750.0, z_to_nm: float = 750.0,
               z_step_nm: float = 10.0, photons: float = 20000.0, background: float = 20.0, seed: int = 1,
               spacing_px: float = 22.0, margin_px: float = 12.0, psf: Optional[PupilPSF] = None) -> dict:
    """A bead z-stack: ``beads.tif`` (uint16 ADU, frames x size x size) and
    ``beads.json`` (the truth) in ``out_dir``.

    The stage steps through focus: frame k (0-based) shows every bead at depth
    z = z_from + k·z_step (default -750 ... +750 nm in 10 nm steps, 151 frames), in the
    DESIGN.md convention (the bead lies z above the focal plane, away from the
    coverslip, i.e. the first frames are focused 750 nm beyond the beads). Beads are
    point sources at random sub-pixel positions, at least ``spacing_px`` apart in x or
    in y (so a 2 µm ROI around one holds no other) and ``margin_px`` from the edges,
    ``photons`` per frame each, on ``background`` photons/px; EMCCD noise.
    Returns the truth dict that is written to ``beads.json``.
    """
    psf = psf or default_psf()
    rng = np.random.default_rng(seed)
    pos = []
    for _ in range(100000):
        cand = rng.uniform(margin_px, size - margin_px, 2)
        if all(np.max(np.abs(cand - q)) >= spacing_px for q in pos):
            pos.append(cand)
        if len(pos) == n_beads:
            break
    else:
        raise ValueError(f"no room for {n_beads} beads {spacing_px:g} px apart in {size}x{size} px")
    pos = np.array(pos)
    n_z = int(round((z_to_nm - z_from_nm) / z_step_nm)) + 1
    z = z_from_nm + z_step_nm * np.arange(n_z)
    frame = np.repeat(np.arange(n_z), n_beads)
    x, y = np.tile(pos[:, 0], n_z), np.tile(pos[:, 1], n_z)
    expected = psf.render(x, y, np.repeat(z, n_beads), photons, (size, size), frame=frame, n_frames=n_z) + background
    stack = _noisy(expected, seed + 1000)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import tifffile

    tifffile.imwrite(out / "beads.tif", stack, photometric="minisblack")
    truth = _camera_json({
        "frames": n_z, "size_px": size, "z_step_nm": z_step_nm,
        "frame_z_rule": f"frame k (0-based) at z = {z_from_nm:g} + {z_step_nm:g}·k nm",
        "z_nm": [float(v) for v in z],
        "beads": [{"x_nm": float(a * PIXEL_NM), "y_nm": float(b * PIXEL_NM)} for a, b in pos],
        "photons_per_bead_per_frame": photons, "background_photons_per_px": background, "seed": seed,
    })
    (out / "beads.json").write_text(json.dumps(truth, indent=1))
    return truth


def movie(out_dir, frames: int = 2000, size: int = 64, density_per_um2: float = 0.2,
          photons: tuple[float, float] = (1000.0, 6000.0), background: float = 50.0,
          z_range_nm: tuple[float, float] = (-600.0, 600.0), seed: int = 2, psf: Optional[PupilPSF] = None,
          mean_on_frames: float = 1.5) -> dict:
    """An astigmatic test movie (issue 12): ``movie.tif`` (uint16 ADU), ``emitters.csv``
    (ground truth: ``frame`` from 1, ``x_nm``, ``y_nm``, ``z_nm``, ``photons``,
    ``fluorophore_id``) and ``camera.json``, in ``out_dir``.

    Blinking as in a real acquisition: a molecule switches on at the start of a frame
    and stays on for a whole number of frames, geometric with mean ``mean_on_frames``
    (1.5: half of them a single frame; 1 makes every molecule independent of the
    others, one frame each), at one position and with one brightness. The starts are
    Poisson, so that ``density_per_um2`` molecules are on in a frame on average,
    uniform over the whole field (some sit at the edges); photons uniform in
    ``photons`` per frame (the molecule's total, see the module docstring for the share
    in a 15x15 ROI), z uniform in ``z_range_nm``; ``background`` photons/px; EMCCD
    noise (our Camera, the settings in CAMERA). One truth row per molecule and frame,
    ``fluorophore_id`` the molecule. Returns the dict written to camera.json.
    """
    psf = psf or default_psf()
    rng = np.random.default_rng(seed)
    area_um2 = (size * PIXEL_NM / 1000.0) ** 2
    mean_on = max(float(mean_on_frames), 1.0)
    lead = int(np.ceil(10 * mean_on))  # molecules that switched on before frame 0
    starts = rng.poisson(density_per_um2 * area_um2 / mean_on, frames + lead)
    n_mol = int(starts.sum())
    start = np.repeat(np.arange(frames + lead), starts) - lead
    length = rng.geometric(1.0 / mean_on, n_mol)
    mx, my = rng.uniform(0, size, n_mol), rng.uniform(0, size, n_mol)
    mz, mph = rng.uniform(*z_range_nm, n_mol), rng.uniform(*photons, n_mol)
    mol = np.repeat(np.arange(n_mol), length)
    frame = start[mol] + (np.arange(len(mol)) - np.repeat(np.cumsum(length) - length, length))
    keep = (frame >= 0) & (frame < frames)
    mol, frame = mol[keep], frame[keep]
    order = np.argsort(frame, kind="stable")
    mol, frame = mol[order], frame[order]
    n = len(mol)
    x, y, z, ph = mx[mol], my[mol], mz[mol], mph[mol]
    expected = np.empty((frames, size, size), np.float32)
    step = 250
    for s in range(0, frames, step):  # bounded memory for long movies
        sel = (frame >= s) & (frame < s + step)
        expected[s:s + step] = psf.render(x[sel], y[sel], z[sel], ph[sel], (size, size), frame=frame[sel] - s,
                                          n_frames=min(step, frames - s)) + background
    mov = _noisy(expected, seed + 1000)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import tifffile

    tifffile.imwrite(out / "movie.tif", mov, photometric="minisblack")
    with open(out / "emitters.csv", "w") as fh:
        fh.write("frame,x_nm,y_nm,z_nm,photons,fluorophore_id\n")
        for i in range(n):
            fh.write(f"{frame[i] + 1},{x[i] * PIXEL_NM:.3f},{y[i] * PIXEL_NM:.3f},{z[i]:.3f},{ph[i]:.2f},{mol[i] + 1}\n")
    meta = _camera_json({
        "frames": frames, "size_px": size, "density_per_um2": density_per_um2,
        "photons_per_molecule": list(map(float, photons)), "photons_note": "total photons of the molecule (whole plane)",
        "background_photons_per_px": background, "z_range_nm": list(map(float, z_range_nm)),
        "blinking": f"on for whole frames, geometric with mean {mean_on:g} frames", "gt_rows": n, "seed": seed,
    })
    (out / "camera.json").write_text(json.dumps(meta, indent=1))
    return meta


def read_truth(out_dir) -> dict:
    """A movie's emitters.csv as our evaluate's ground-truth dict (frame 0-based, nm)."""
    d = np.loadtxt(Path(out_dir) / "emitters.csv", delimiter=",", skiprows=1, ndmin=2)
    return {"frame": d[:, 0].astype(int) - 1, "x": d[:, 1], "y": d[:, 2], "z": d[:, 3], "photons": d[:, 4]}
