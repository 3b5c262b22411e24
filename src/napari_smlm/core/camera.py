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

    def __post_init__(self):
        # The one camera validator (config.camera_config) for every way a camera is made:
        # YAML, flags, the widgets, a checkpoint, and code that builds a Camera directly.
        from .config import camera_config

        camera_config(self.to_dict(), required=False)

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


# sCMOS read noise is not identifiable from a movie's background (it adds to the
# variance like shot noise of a constant); 1.5 e- r.m.s. is typical of current sensors.
SCMOS_READ_NOISE_E = 1.5
# Background samples handed to the likelihood fit (at most; chosen at random over the groups).
ML_SAMPLES = 1_000_000
# The log-likelihood difference between the EMCCD and the sCMOS fit that decides the kind
# (~e^10: far beyond chance); closer, the older rules decide (_camera_kind).
KIND_LIKELIHOOD_RATIO = 10.0
# An sCMOS's gain from the likelihood of the background values with their top fifth
# censored, instead of the moments, where the background is bright and the sample large.
# The moments' κ3/κ2 takes up the signal of molecules no mask finds (dim partial blinks,
# far wings): +15 to +22 % at 200 photons/px on the camera grid with the mask at 4σ (+5 to
# +17 % at 3.5σ), growing with the background. The censored fit leaves that tail out
# (+3.7 to +10 % there, at 4σ), but it scatters more (on
# 120-frame 64×64 movies 9 % against the moments' 5 %) and wanders on dim backgrounds (up
# to +48 % at 10 photons/px): measured in docs/camera.md.
SCMOS_FIT_MIN_LAMBDA = 30.0  # photoelectrons per pixel
SCMOS_FIT_MIN_SAMPLES = 500_000  # background values in the fit's band
SCMOS_FIT_CENSOR = 0.8
# The molecule mask's thresholds (σ of the smoothed background noise; _background_sums). The
# estimate's shift when read from what the mask at the second keeps measures what molecules
# too dim to be masked leave in the sample, and is added to the stated ± (docs/camera.md).
MASK_THRESHOLD = 3.5
MASK_ALT_THRESHOLD = 4.0
# Bright spots (above this, σ) also mask the frame before and after them: a molecule switches
# on and off during those frames, and its partial blinks there are too dim to be found in
# them. Where that keeps at least NEIGHBOUR_KEEP of the samples the mask keeps without it (a
# sparse movie), the estimate reads what it keeps. On the 400-frame 128×128 camera grid it took
# the twelve EMCCDs at EM gain 100-300 on 200 photons/px from +3.2 to +6.4 % (mean +4.6) to
# -2.9 to +4.4 % (mean +0.8), and on the 200-frame grid the six sCMOS on 200 photons/px from
# +4.9 to +17.1 % to -3.7 to +11.2 %; on crowded movies it leaves too few samples (forced on
# the foreign 160 nm EMCCD: 4 % of the pixel-frames left instead of 9 %, the gain -3 → -23 %),
# which the share keeps it from (docs/camera.md, "The frames beside bright spots").
NEIGHBOUR_THRESHOLD = 6.0
NEIGHBOUR_KEEP = 0.7


def estimate_camera(
    movie,
    kind: Optional[str] = None,
    em_gain: Optional[float] = None,
    qe: float = 1.0,
    baseline: Optional[float] = None,
    max_frames: int = 400,
    chunk: int = 20,
    max_side: int = 256,
) -> tuple["Camera", dict]:
    """Estimate the camera (kind, baseline, ADU per photoelectron) from a movie.

    It reads the noise of the background, away from molecules, which needs no
    gradient in the illumination and no dark frames. Per pixel the background is a
    compound Poisson process: N ~ Poisson(λ) photoelectrons, each worth k ADU
    (sCMOS, CCD) or an exponential multiplication with mean G ADU (EMCCD: the EM
    register's Gamma(N, G)), plus Gaussian read noise and the baseline. Its
    cumulants are κ1 = b + λ·G, κ2 = 2λG² (+ read noise), κ3 = 6λG³ for an EMCCD and
    κ1 = b + λk, κ2 = λk² + σ², κ3 = λk³ otherwise, so κ3/κ2 gives the gain (3G or
    k) whatever the background level, and κ1 - κ2/(2G) (or - (κ2 - σ²)/k) the
    baseline. The kind is told apart by the fourth cumulant (κ2κ4/κ3² is 4/3 for
    an EMCCD, 1 otherwise) where the background is dim enough for it to be
    measured, else by which reading of the movie is a physically possible camera.
    The moments then start a likelihood fit of the whole distribution
    (:mod:`.camera_likelihood`) as an EMCCD and as an sCMOS: their likelihoods decide
    the kind where they differ clearly, and for an EMCCD the fit's gain, baseline and
    read noise replace the moments' (which take read noise for shot noise).

    Molecules are masked before the moments are taken: frames are searched for spots
    at the PSF's scale and at 2.5 times it (the dim wings of bright molecules), in two
    passes (the second with the first's background level and noise), and the
    neighbourhood of each is left out; that of a bright spot also from the frame before and
    the frame after it, where that keeps enough of the samples (``NEIGHBOUR_KEEP``). Local
    background levels (gradients, cells) are removed with a smooth map over groups of
    ``chunk`` consecutive frames. Up to
    ``max_frames`` frames (in groups spread over the movie) of a central
    ``max_side``² crop are read. ``kind``, ``baseline``, ``em_gain`` and ``qe`` may be
    given; photons are photoelectrons / ``qe``.

    Returns the camera and a report for the user: ``kind``, ``kind_reason``, ``read_noise_adu``
    (EMCCD, where the movie shows it, else 0),
    ``baseline`` and ``baseline_err`` (NaN where the baseline was given), ``adu_per_e`` and
    ``adu_per_e_err`` (1-σ: an EMCCD's likelihood fit, the larger of its curvature and the
    Cramér–Rao bound with the read noise unknown (with the baseline given, its curvature); the
    censored sCMOS fit, the larger of its curvature and the moments' jackknife; the
    moments, the jackknife over the frame groups and image quadrants; each with the
    ``mask_shift`` added in quadrature), ``e_per_adu``, ``em_gain``, ``qe``, ``method``,
    ``source``, ``n_pixels`` (background samples used), ``background_fraction`` and
    ``mask_shift``: how far (gain, baseline) move when the same method reads the values the
    molecule mask keeps at 4σ instead of 3.5σ — what molecules too dim to be masked leave in
    the sample, which no error from the noise covers (NaN where it could not be measured);
    ``neighbour_frames``: the share of the frame groups where the bright spots' neighbouring
    frames were masked.
    """
    import numpy as np

    t = len(movie)
    if t < 3:
        raise ValueError(f"camera estimation needs at least 3 frames (the movie has {t}); give the camera "
                         "(baseline, e-/ADU, EM gain) instead")
    if kind is not None and kind not in ("emccd", "scmos"):
        raise ValueError(f"camera estimation: kind must be 'emccd' or 'scmos', got {kind!r}")
    n_groups = len(_group_starts(t, max_frames, chunk))
    masks = (MASK_THRESHOLD, MASK_ALT_THRESHOLD)
    rngs = {m: np.random.default_rng(k) for k, m in enumerate(masks)}  # each mask's random subsample
    read = {m: ([], [], []) for m in masks}  # rows, values, levels
    n_read, n_neighbours = 0, 0
    measured = _in_threads(lambda f: (f.size, *_background_sums(f, threshold=MASK_THRESHOLD,
                                                                alt_threshold=MASK_ALT_THRESHOLD,
                                                                bright_threshold=NEIGHBOUR_THRESHOLD,
                                                                neighbour_keep=NEIGHBOUR_KEEP)),
                           _frame_groups(movie, max_frames, chunk, max_side))

    def some(values, level, r):
        """At most ML_SAMPLES / groups of them: enough for the likelihood, and bounded memory."""
        if values.size > ML_SAMPLES // n_groups:
            pick = r.choice(values.size, ML_SAMPLES // n_groups, replace=False)
            values, level = values[pick], level[pick]
        return values, level

    for size, group, neighbours in measured:
        n_neighbours += neighbours
        for m in masks:
            rows, values, level = group[m]
            values, level = some(values, level, rngs[m])
            read[m][0].extend(rows)
            read[m][1].append(values)
            read[m][2].append(level)
        n_read += size
    # one row per (frame group, image quadrant): n, Σx, Σy², Σy³, Σ(y⁴ - 3v²)
    sums, sums_alt = (np.asarray(read[m][0]).reshape(-1, 5) for m in masks)
    total, total_alt = sums.sum(0), sums_alt.sum(0)
    (adus, adus_alt), (levels, levels_alt) = ([np.concatenate(read[m][j]) for m in masks] for j in (1, 2))
    if total[0] < 2000:
        raise ValueError(
            "camera estimation: too few background pixels away from molecules (the movie is too small or too "
            "crowded); give the camera (baseline, e-/ADU, EM gain) instead"
        )

    @np.errstate(divide="ignore", invalid="ignore")  # a noiseless movie gives NaN, refused below
    def solve(s, kind):
        n, s1, s2, s3, s4 = s
        mean, k2, k3 = s1 / n, s2 / n, s3 / n
        if baseline is not None:  # κ2 = F²·k·(κ1 - b), F² = 2 for an EMCCD; read noise neglected beside shot noise
            return k2 / ((2.0 if kind == "emccd" else 1.0) * (mean - baseline)), float(baseline)
        if kind == "emccd":
            # ADU per photoelectron. Read noise adds to κ2 and lowers this where the gain is
            # low and the background dim; κ4/(4κ3) would be free of it, but the wings of
            # molecules left in the sample inflate κ4 far more than κ3 (tried: 70 % off).
            gain = k3 / (3.0 * k2)
            return gain, mean - k2 / (2.0 * gain)
        gain = k3 / k2
        for _ in range(20):  # κ3 / (κ2 - σ²), σ in ADU = read noise · k
            shot = k2 - (SCMOS_READ_NOISE_E * gain) ** 2
            if shot < 0.5 * k2:  # read noise that large is no sCMOS: keep the last gain
                break
            gain = k3 / shot
        return gain, mean - max(k2 - (SCMOS_READ_NOISE_E * gain) ** 2, 0.0) / gain

    @np.errstate(invalid="ignore")  # a noiseless movie's infinite gains: refused below, not warned of
    def with_errors(kind):
        """(gain, baseline) and their 1-σ errors by the jackknife over the groups."""
        est = np.array(solve(total, kind))
        m = len(sums)
        if m < 4:
            return est, np.full(2, np.nan)
        loo = np.array([solve(total - row, kind) for row in sums])
        return est, np.sqrt((m - 1) / m * ((loo - loo.mean(0)) ** 2).sum(0))

    mean = total[1] / total[0]
    fits = {}
    band = _level_band(levels, total, solve)  # the background values of one level, for the likelihood fits
    if baseline is None:  # the likelihood of the whole distribution (camera_likelihood.py) refines the moments
        for k in ((kind,) if kind is not None else ("emccd", "scmos")) if band is not None else ():
            fits[k] = _likelihood_fit(adus[band], k, total, solve)

    def estimate(k):
        """(gain, baseline) as kind ``k``, as it would be reported: an EMCCD's likelihood fit
        where it worked, else the moments'."""
        if k == "emccd" and fits.get(k) is not None:
            return fits[k].gain, fits[k].baseline
        return solve(total, k)

    reason = "given"
    if kind is None:
        lr = (fits["scmos"].nll - fits["emccd"].nll
              if fits.get("emccd") is not None and fits.get("scmos") is not None else 0.0)
        if abs(lr) > KIND_LIKELIHOOD_RATIO:
            kind = "emccd" if lr > 0 else "scmos"
            reason = (f"background noise shape: log-likelihood {abs(lr):.0f} higher as an "
                      f"{'EMCCD' if kind == 'emccd' else 'sCMOS'}")
        else:
            kind, reason = _camera_kind(total, with_errors)
        other = "scmos" if kind == "emccd" else "emccd"

        def possible(k):
            gain, b = estimate(k)
            return bool(np.isfinite(gain) and gain > 0 and b < mean)

        if not possible(kind) and possible(other):
            reason = f"as an {'EMCCD' if kind == 'emccd' else 'sCMOS'} its baseline would lie above its background"
            kind = other
    read_adu = 0.0
    scmos_fit = None
    if kind == "scmos" and baseline is None and band is not None and int(band.sum()) >= SCMOS_FIT_MIN_SAMPLES:
        gain0, b0 = solve(total, "scmos")
        lam0 = (mean - b0) / gain0 if np.isfinite(gain0) and gain0 > 0 else 0.0
        if lam0 >= SCMOS_FIT_MIN_LAMBDA:
            from .camera_likelihood import fit_background_noise

            scmos_fit = fit_background_noise(adus[band], "scmos", float(gain0), float(lam0), censor=SCMOS_FIT_CENSOR)
    given_fit = None
    if kind == "emccd" and baseline is not None:
        # The likelihood with the baseline fixed (see its docstring) on a dim background, where
        # the pixels with no photoelectron show the read noise that the moments take for shot
        # noise (+33 % at EM gain 30, 10 photons/px). On bright ones the moments stay: there the
        # read noise is a small share of the variance, and the fit, reading it from the shape
        # alone, found 21.5 ADU of it (true 2.5) on the foreign gradient movie, gain +6.7 %
        # against the moments' +0.9 %.
        from .camera_likelihood import DIM_LAMBDA, fit_emccd_with_baseline

        gain0 = float(solve(total, "emccd")[0])
        if band is not None and np.isfinite(gain0) and gain0 > 0 and (mean - baseline) / gain0 < DIM_LAMBDA:
            given_fit = fit_emccd_with_baseline(adus[band], float(baseline), gain0)
    if given_fit is not None and np.isfinite(given_fit.errors()[0]):
        gain, b = given_fit.gain, float(baseline)
        gain_err, b_err = given_fit.errors()[0], float("nan")  # the baseline given: no ± (as below)
        read_adu = given_fit.read_adu
        method, refit = "background noise likelihood (baseline given)", "given"
    elif scmos_fit is not None and all(np.isfinite(scmos_fit.errors())):
        gain, b = scmos_fit.gain, scmos_fit.baseline
        # the curvature knows the noise, not what molecules leave in the sample: the larger
        # of its errors and the moments' jackknife over the frame groups is what is stated
        gain_err, b_err = np.maximum(scmos_fit.errors(), with_errors(kind)[1])
        method, refit = "background noise likelihood (top fifth censored)", "censored"
    elif kind == "emccd" and fits.get(kind) is not None:  # sCMOS: the moments (see _likelihood_fit)
        fit = fits[kind]
        gain, b = fit.gain, fit.baseline
        gain_err, b_err = fit.errors()
        if not (np.isfinite(gain_err) and np.isfinite(b_err)):  # a flat or odd likelihood: the moments' jackknife
            gain_err, b_err = with_errors(kind)[1]
        read_adu = fit.read_adu if fit.read_free else 0.0
        method, refit = "background noise likelihood", "fit"
        # What the values allow with the read noise unknown (Cramér–Rao, at the fit): the
        # curvature leans on the read noise's prior where the values cannot tell it from
        # shot noise (bright backgrounds at a low EM gain) and claimed far too little there:
        # EM gain 30, 5 e-/ADU, 45 photoelectrons/px, 200 frames of 64×64: ±7.6 ADU stated,
        # 36 ADU off; now ±35.
        from .camera_likelihood import MIN_READ_ADU, cramer_rao

        bound = cramer_rao("emccd", gain, fit.lam, b, max(fit.read_adu, MIN_READ_ADU), fit.n, read_free=True)
        gain_err, b_err = np.fmax([gain_err, b_err], bound)
    else:
        (gain, b), (gain_err, b_err) = with_errors(kind)
        method, refit = "background noise statistics", "moments"
    # What molecules too dim to be masked leave in the sample is no noise, and no ± from
    # the noise covers it: the same estimate from the values the mask keeps at 4σ measures
    # it, and the shift is added to the stated ± (in quadrature).
    start = {"given": given_fit, "censored": scmos_fit, "fit": fits.get(kind)}.get(refit)
    alt = _alt_estimate(refit, kind, adus_alt, levels_alt, total_alt, solve, baseline, start)
    shift = np.subtract(alt, (gain, b)) if alt is not None else np.full(2, np.nan)
    if np.all(np.isfinite(shift)):
        gain_err, b_err = float(np.hypot(gain_err, shift[0])), float(np.hypot(b_err, shift[1]))
    if not np.isfinite(gain) or gain <= 0:
        raise ValueError(
            "camera estimation: the background's noise does not fit a camera model (no positive gain); give the "
            "camera (baseline, e-/ADU, EM gain) instead"
        )
    if b >= mean:
        raise ValueError(
            f"camera estimation: the movie's background level ({mean:.1f} ADU) is not above the baseline "
            f"({b:.1f} ADU) as a{'n EMCCD' if kind == 'emccd' else 'n sCMOS'}; give the camera kind "
            f"(--camera-kind) or the whole camera (baseline, e-/ADU, EM gain) instead"
        )
    if b < 0 and adus.size and adus.min() < 0:
        raise ValueError(
            f"camera estimation: the movie holds negative values and its baseline would be {b:.1f} ADU, which no "
            f"camera has: an offset was taken off it (a background-subtracted movie?). Add the offset back, or "
            f"give --photons if it is in photons already"
        )
    b = max(float(b), 0.0)  # ADU are never negative: a baseline estimated a little below 0 is 0
    if baseline is not None:
        b_err = float("nan")  # given, not estimated: no ± to print
    gain_e = float(em_gain) if em_gain is not None else (100.0 if kind == "emccd" else 1.0)
    cam = Camera(baseline=float(b), e_per_adu=gain_e / float(gain), em_gain=gain_e, qe=float(qe),
                 read_noise_e=read_adu * gain_e / float(gain) if kind == "emccd" else SCMOS_READ_NOISE_E, kind=kind)
    report = {
        "method": method, "kind": kind, "kind_reason": reason, "read_noise_adu": float(read_adu),
        "baseline": float(b), "baseline_err": float(b_err), "adu_per_e": float(gain), "adu_per_e_err": float(gain_err),
        "e_per_adu": float(gain_e / gain), "em_gain": gain_e, "qe": float(qe), "n_pixels": int(total[0]),
        "source": "estimated from the movie's background noise" + (" (baseline given)" if baseline is not None else ""),
        "background_fraction": float(total[0] / n_read),
        "mask_shift": [float(v) for v in shift],
        "neighbour_frames": n_neighbours / n_groups,
    }
    return cam, report


def _level_band(levels, total, solve):
    """The background samples whose local level is within ±5 % (at most ±10 %, to find
    20,000 of them) of the photoelectron signal (λ·gain) from the median level, or None:
    the likelihood fits one λ, and on a gradient the levels differ (the moments need no
    band: they add up over levels). Widened until it held 50,000 samples, the band reached
    ±38 % of λ·gain on the foreign gradient movie, and the fit of that mixture of λ read
    3.5 times the gain."""
    import numpy as np

    n, s1, s2 = total[:3]
    spans = [s2 / n / ((2.0 if k == "emccd" else 1.0) * g) for k in ("emccd", "scmos")
             for g in [solve(total, k)[0]] if np.isfinite(g) and g > 0]
    if not spans:
        return None
    med = float(np.median(levels))
    for half in (0.05 * min(spans), 0.1 * min(spans)):
        band = np.abs(levels - med) <= half
        if band.sum() >= 20_000:
            return band
    return None


def _alt_estimate(refit, kind, adus, levels, total, solve, baseline, start=None):
    """(gain, baseline) from another mask's samples and moment sums, or None, by the method
    that made the estimate: ``refit`` "moments", or the likelihood fit ``start`` ("given":
    the baseline given; "censored": the censored sCMOS fit; "fit"), refitted from its optimum
    (the two masks' samples differ little)."""
    if total[0] < 2000:
        return None
    if refit == "moments":
        return solve(total, kind)
    band = _level_band(levels, total, solve)
    if band is None or start is None:
        return None
    from .camera_likelihood import fit_background_noise, fit_emccd_with_baseline

    if refit == "given":
        fit = fit_emccd_with_baseline(adus[band], float(baseline), start.gain)
        return None if fit is None else (fit.gain, float(baseline))
    censor = {"censor": SCMOS_FIT_CENSOR} if refit == "censored" else {}
    fit = fit_background_noise(adus[band], kind, start.gain, start.lam, read_free=start.read_free if kind == "emccd"
                               else None, with_errors=False, **censor)
    return None if fit is None else (fit.gain, fit.baseline)


def _likelihood_fit(adu, kind, total, solve):
    """The likelihood fit (``camera_likelihood``) of background values ``adu`` as ``kind``,
    started from the moments' estimate; None where it fails.

    For an sCMOS only its likelihood is used (to tell the kind): with the read noise a fixed
    number of photoelectrons, the fit trades gain against photoelectrons along a valley on dim
    backgrounds (+45 % on one movie at 10 photons/px), where the moments do well."""
    import numpy as np

    from .camera_likelihood import fit_background_noise

    gain0, _ = solve(total, kind)
    var = float(np.var(adu))
    if not (np.isfinite(gain0) and gain0 > 0):
        gain0 = np.sqrt(var) / 5.0 or 1.0  # anything positive: the search does the rest
    lam0 = var / ((2.0 if kind == "emccd" else 1.0) * gain0 ** 2)
    return fit_background_noise(adu, kind, float(gain0), float(lam0))


def camera_from_metadata(metadata: Optional[dict]) -> Optional["Camera"]:
    """The camera a file's metadata (:func:`napari_smlm.core.io.metadata.read_movie_metadata`)
    states in full — kind, baseline, conversion and, for an EMCCD, the EM gain — else None."""
    meta = {k: v for k, v in (metadata or {}).items() if v is not None}
    full = ("kind", "baseline", "e_per_adu") + (("em_gain",) if meta.get("kind") == "emccd" else ())
    if not all(k in meta for k in full):
        return None
    em_gain = float(meta.get("em_gain", 1.0)) if meta["kind"] == "emccd" else 1.0
    return Camera(baseline=float(meta["baseline"]), e_per_adu=float(meta["e_per_adu"]), em_gain=em_gain,
                  qe=float(meta.get("qe", 1.0)), read_noise_e=float(meta.get("read_noise_e", 0.0)), kind=meta["kind"])


def camera_for_movie(movie, metadata: Optional[dict] = None, **given) -> tuple["Camera", dict]:
    """The camera of a movie: from its file's metadata where that states the whole
    camera, else estimated from the movie with what the user gave (``given``: kind,
    baseline, em_gain, qe) and, after that, what the metadata states fixed.

    ``metadata`` is :func:`napari_smlm.core.io.metadata.read_movie_metadata`'s dict.
    Returns the camera and a report as :func:`estimate_camera`'s, whose ``source``
    says where the camera came from.
    """
    meta = {k: v for k, v in (metadata or {}).items() if v is not None}
    given = {k: v for k, v in given.items() if v is not None}
    where = meta.get("source", "metadata")
    cam = camera_from_metadata(meta)
    if cam is not None and not given:
        nan = float("nan")
        report = {"method": "file metadata", "kind": cam.kind, "kind_reason": f"the file's {where} metadata",
                  "baseline": cam.baseline, "baseline_err": nan, "adu_per_e": cam.em_gain / cam.e_per_adu,
                  "adu_per_e_err": nan, "e_per_adu": cam.e_per_adu, "em_gain": cam.em_gain, "qe": cam.qe,
                  "source": f"the file's {where} metadata"}
        return cam, report
    fixed = {k: meta[k] for k in ("kind", "baseline", "em_gain", "qe") if k in meta and k not in given}
    kwargs = {**fixed, **given}
    cam, report = estimate_camera(movie, **kwargs)
    if fixed:
        report["source"] += f"; {', '.join(sorted(fixed))} from the file's {where} metadata"
        if "kind" in fixed:
            report["kind_reason"] = f"the file's {where} metadata"
    return cam, report


CAMERA_YAML_MARK = "# napari-smlm camera"
# A baseline less certain than this (1σ, ADU) is said, with the advice to give it: issue 10's
# target for an EMCCD's baseline is 3 ADU.
BASELINE_ASK_ADU = 3.0
# ... and the ADU per photoelectron less certain than this (relative, 1σ): the estimate may
# well be off by more than issue 10's 10 %.
GAIN_ASK_REL = 0.10


def check_camera_yaml_target(path) -> None:
    """Refuse (``WriteError``) a camera YAML's name where a file napari-smlm did not write
    lies: its first line is not ``CAMERA_YAML_MARK``."""
    from pathlib import Path

    from .utils import WriteError, check_writable

    path = Path(path)
    check_writable(path, "camera file")
    if path.is_file():
        with open(path, "rb") as fh:
            first = fh.readline().decode("utf-8", "replace")
        if not first.startswith(CAMERA_YAML_MARK):
            raise WriteError(f"{path}: exists and is not a camera file written by napari-smlm; not replaced "
                             f"(choose another name, or remove it)")


def write_camera_yaml(path, camera: "Camera", report: Optional[dict] = None, movie_name: str = "") -> None:
    """The camera as a YAML that ``localize --camera`` reads (the keys of
    ``simulation.camera``), with where it came from and its uncertainties as comments,
    written atomically. A file of that name that napari-smlm did not write (its first
    line is not ``CAMERA_YAML_MARK``) is refused, never replaced."""
    from pathlib import Path

    import yaml

    from .utils import atomic_write

    path = Path(path)
    check_camera_yaml_target(path)
    lines = [f"{CAMERA_YAML_MARK}{' of ' + movie_name if movie_name else ''}"]
    if report:
        lines.append(f"# {report.get('source', '')}")
        lines.append(f"# {describe_estimate(report)}")
    lines.append("# correct what you know better, then: napari-smlm localize MOVIE --camera THIS_FILE ...")
    values = {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in camera.to_dict().items()}
    text = "\n".join(lines) + "\n" + yaml.safe_dump(values, sort_keys=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def describe_estimate(report: dict) -> str:
    """One line for the user: the estimated camera with its uncertainties."""
    import math

    def pm(v, e, fmt):
        return f"{v:{fmt}}" + (f" ± {e:{fmt}}" if math.isfinite(e) else "")

    rel_gain = report.get("adu_per_e_err", math.nan) / report["adu_per_e"]
    rel_gain = rel_gain if math.isfinite(rel_gain) else 0.0

    return (f"{report['kind']} ({report['kind_reason']}), baseline {pm(report['baseline'], report['baseline_err'], '.1f')} ADU, "
            f"{pm(report['adu_per_e'], report['adu_per_e_err'], '.3g')} ADU per photoelectron"
            + (f" (EM gain {report['em_gain']:g} assumed: {report['e_per_adu']:.3g} e-/ADU)" if report["kind"] == "emccd" else "")
            + (f", read noise {report['read_noise_adu']:.3g} ADU" if report.get("read_noise_adu") else "")
            + f", QE {report['qe']:g}"
            + (f"; {report['source']}" if "metadata" in report.get("source", "") else "")
            # the one number that often cannot come from the noise (a bright EMCCD background)
            # and that users can read off their camera's settings
            + (f"; this movie leaves the baseline ±{report['baseline_err']:.0f} ADU: give it if you know it"
               if math.isfinite(report.get("baseline_err", math.nan)) and report["baseline_err"] > BASELINE_ASK_ADU else "")
            # and the gain, where its ± is beyond issue 10's 10 %: bright sCMOS backgrounds on
            # short movies (molecules too dim to mask), an EMCCD at low gain on a bright one
            + (f"; this movie leaves the ADU per photoelectron ±{100 * rel_gain:.0f} %: give the camera's e-/ADU"
               f"{' and EM gain' if report['kind'] == 'emccd' else ''} if you know "
               f"{'them' if report['kind'] == 'emccd' else 'it'}" if rel_gain > GAIN_ASK_REL else ""))


def _group_starts(t: int, max_frames: int, chunk: int):
    """First frames of the groups of ``chunk`` frames spread over a movie of ``t``."""
    import numpy as np

    chunk = min(chunk, t)
    n = max(1, min(max_frames // chunk, t // chunk))
    return np.unique(np.linspace(0, t - chunk, n).astype(int))


def _frame_groups(movie, max_frames: int, chunk: int, max_side: int):
    """Groups of ``chunk`` consecutive frames spread over the movie, as float32."""
    import numpy as np

    chunk = min(chunk, len(movie))
    for s in _group_starts(len(movie), max_frames, chunk):
        frames = np.asarray(movie[int(s):int(s) + chunk])
        h, w = frames.shape[-2:]
        y0, x0 = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
        # the crop converted (a copy): a view would keep the whole frames alive — groups of
        # 2048x2048 frames held 7.1 GB where their crops need 100 MB (measured, 400 frames)
        yield frames[:, y0:y0 + max_side, x0:x0 + max_side].astype(np.float32)


def _in_threads(fn, items):
    """``fn(item)`` for each of ``items``, in order, on the cores free now (scipy.ndimage
    and numpy release the GIL: 400 frames of 256×256, 10.6 → 4.8 s on 2 cores). Items
    are taken from the iterator in this thread, no more ahead than there are workers."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from .inference.runner import free_cores

    workers = free_cores()
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _background_sums(x, psf_px: float = 1.0, threshold: float = MASK_THRESHOLD, radius: int = 3,
                     alt_threshold: Optional[float] = None, bright_threshold: Optional[float] = None,
                     neighbour_keep: float = NEIGHBOUR_KEEP) -> tuple[dict, bool]:
    """Background pixels of a group of frames ``x``, away from molecules, for each mask:
    ``{threshold: (rows, values, levels)}``, and whether the bright spots' neighbouring
    frames were masked. ``rows`` are the moment sums for each image quadrant: n, Σx, Σy²,
    Σy³ and Σ(y⁴ - 3v²), with y the deviation from the local level and v the local variance
    (for whole-number ADU, less the rounding's share: n/12 and -n/120); ``values`` and
    ``levels`` those pixels' values and local levels (float32 arrays), for the likelihood fit.

    A pixel-frame is background unless a spot (smoothed excess over the local level
    above ``threshold`` σ, at the PSF's scale or 2.5× it, for the wings of bright
    molecules) lies within ``radius`` px. Deviations are taken from a local level:
    a plane fitted to the background samples of a 7×7 neighbourhood over the group.
    The masks: at ``threshold`` and, if given, at ``alt_threshold`` (from the same pass:
    the same level and noise, only the spots' cut differs). Where ``bright_threshold`` is
    given, the frame before and the frame after a spot above it (at the PSF's scale) are
    masked as well if that keeps at least ``neighbour_keep`` of the samples (the level
    is then taken from what is kept: a level from other samples than those read moves
    their mean, and κ3 with it by 3κ2 times that shift, -17 % at 200 photons/px).
    """
    import numpy as np
    from scipy import ndimage

    # Two passes: the first from the median level and a robust σ, which molecules still
    # inflate where they are dense; the second from the first's background level and σ.
    level = ndimage.median_filter(np.median(x, axis=0), 5, mode="nearest")
    sigma = 1.4826 * float(np.median(np.abs(x - level)))
    # The two halves of a checkerboard are masked from each other: a mask that sees a
    # pixel's own value drops its upward noise and biases κ3 low (-17 % on an sCMOS
    # movie). So a lower threshold costs samples, not truncation, and leaves fewer dim
    # partial blinks and far wings of molecules in (they add to κ3: gain high). Measured
    # on the 200-frame camera grid (benchmarks/camera_estimate.py, 54 movies; gain within
    # 10 %) and the 3 movies of another simulator: at 4σ, 45 of 54, sCMOS at 200 photons/px
    # +9 to +22 %, foreign +0 / +1 / +4 %; at 3.5σ, 50 of 54, +5 to +17 %, foreign -3 / -1 /
    # -0.4 %; at 3σ, 49, the foreign sCMOS -11 %; the mask also kept over the next and the
    # previous frame for spots at 2-2.5σ (partial blinks), 48-50, the errors on dim
    # backgrounds doubled (for bright spots only, see NEIGHBOUR_THRESHOLD). At 5σ up to +60 %
    # on dense movies; one pass at 3σ without the checkerboard, +113 %.
    h, w = x.shape[-2:]
    black = np.add.outer(np.arange(h), np.arange(w)) % 2 == 0
    box = (1, 2 * radius + 1, 2 * radius + 1)
    for second in (False, True):
        excess = x - level
        thresholds = (threshold, alt_threshold) if second and alt_threshold is not None else (threshold,)
        keeps = [np.zeros(x.shape, bool) for _ in thresholds]
        # not beside a bright spot in the frame before or after (looked for in the second pass)
        away = np.ones(x.shape, bool) if second and bright_threshold is not None else None
        for half in (black, ~black):
            mols = [np.zeros(x.shape, bool) for _ in thresholds]
            bright = None
            for s in (psf_px, 2.5 * psf_px):
                # normalised convolution over this half: white noise of σ smoothed by a
                # normalised Gaussian of width s over half the pixels has σ·√2 / (2 √π s)
                weight = ndimage.gaussian_filter(half.astype(np.float32), s, mode="nearest")
                smooth = ndimage.gaussian_filter(excess * half, (0, s, s), mode="nearest") / weight
                noise = sigma * np.sqrt(2) / (2 * np.sqrt(np.pi) * s)
                for mol, t in zip(mols, thresholds):
                    mol |= smooth > t * noise
                if away is not None and s == psf_px:
                    bright = smooth > bright_threshold * noise
            for keep, mol in zip(keeps, mols):
                # a dilation by a square, as a separable maximum (2.5x faster than binary_dilation)
                near = ndimage.maximum_filter(mol, size=box, mode="constant", cval=False)
                keep |= ~near & ~half  # the other half's pixels, judged without their own values
            if bright is not None:
                near = ndimage.maximum_filter(bright, size=(3,) + box[1:], mode="constant", cval=False)
                away &= ~(near & ~half)
        neighbours = away is not None and bool((keeps[0] & away).sum() >= neighbour_keep * keeps[0].sum())
        if neighbours:
            for k in keeps:
                k &= away
        keep = keeps[0]
        level, den = _local_plane(np.where(keep, x, 0).sum(0, dtype=np.float64), keep.sum(0).astype(np.float64))
        for k in keeps:
            k &= (den >= 20)[None]  # a level from at least 20 samples
        if not keep.any():
            break
        sigma = float(np.sqrt(np.mean((x - level)[keep] ** 2)))
    if not keep.any():
        none = np.zeros(0, np.float32)
        return {t: ([], none, none) for t in (threshold, alt_threshold) if t is not None}, False
    dev = (x - level[None]).astype(np.float64)
    # The fourth cumulant is taken against the local variance (a pooled κ4 over levels
    # that differ, as on a gradient, would hold their spread as excess kurtosis).
    var = ndimage.uniform_filter(np.where(keep, dev ** 2, 0).sum(0), 7, mode="constant") / np.maximum(
        ndimage.uniform_filter(keep.sum(0).astype(np.float64), 7, mode="constant"), 1e-12)
    # A camera's whole ADU: rounding adds its own noise, uniform over one ADU (Sheppard's
    # corrections: κ2 + 1/12, κ3 unchanged, κ4 - 1/120), which is taken out here. It
    # matters where the noise is a few ADU: an sCMOS at 3 e⁻/ADU on 10 photons/px has
    # κ2 = 1.4 ADU², and the 1/12 put its gain 9-12 % low (camera grid, 200 frames).
    whole = bool(np.array_equal(x, np.round(x)))
    q2, q4 = (1 / 12, -1 / 120) if whole else (0.0, 0.0)
    levels = np.broadcast_to(level, x.shape)

    def read(keep):
        rows = []
        for ys in (slice(0, h // 2), slice(h // 2, h)):
            for xs in (slice(0, w // 2), slice(w // 2, w)):
                k = keep[:, ys, xs]
                d = dev[:, ys, xs][k]
                v = np.broadcast_to(var[ys, xs], k.shape)[k]
                rows.append((d.size, float(x[:, ys, xs][k].sum(dtype=np.float64)), float((d ** 2).sum()) - q2 * d.size,
                             float((d ** 3).sum()), float((d ** 4 - 3 * v ** 2).sum()) - q4 * d.size))
        return [r for r in rows if r[0] > 0], x[keep].astype(np.float32), levels[keep].astype(np.float32)

    return {t: read(k) for t, k in zip(thresholds, keeps)}, neighbours


def _local_plane(total, count, size: int = 7):
    """The background level at each pixel: a plane fitted (least squares) to the kept
    samples of the ``size``×``size`` neighbourhood over the group's frames, from each
    pixel's ``total`` and ``count`` of kept samples. A plane, not a mean: on a gradient
    a mean over a neighbourhood that masks or the image's edge make one-sided is off
    by a constant, which pooled with the gradient's rising noise fakes skew (κ3).
    Returns the level and the number of samples behind it."""
    import numpy as np
    from scipy import ndimage

    h, w = total.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    def box(a):
        return ndimage.uniform_filter(a, size, mode="constant") * size * size

    n, ny, nx = box(count), box(count * yy), box(count * xx)
    nyy, nxy, nxx = box(count * yy * yy), box(count * xx * yy), box(count * xx * xx)
    s, sy, sx = box(total), box(total * yy), box(total * xx)
    # normal equations in coordinates relative to the pixel: level = a + b·dy + c·dx
    my, mx = ny - yy * n, nx - xx * n
    myy = nyy - 2 * yy * ny + yy * yy * n
    mxx = nxx - 2 * xx * nx + xx * xx * n
    mxy = nxy - xx * ny - yy * nx + xx * yy * n
    ry, rx = sy - yy * s, sx - xx * s
    a = np.stack([np.stack([n, my, mx], -1), np.stack([my, myy, mxy], -1), np.stack([mx, mxy, mxx], -1)], -2)
    rhs = np.stack([s, ry, rx], -1)
    ok = np.linalg.det(a) > 1e-6 * np.maximum(n, 1) ** 3
    sol = np.zeros_like(rhs)
    sol[ok] = np.linalg.solve(a[ok], rhs[ok][..., None])[..., 0]
    level = np.where(ok, sol[..., 0], s / np.maximum(n, 1e-12))
    return level.astype(np.float32), n


def _camera_kind(total, with_errors) -> tuple[str, str]:
    """EMCCD or sCMOS/CCD from the background's cumulants, with the reason.

    First what no sCMOS can be (more than 6 ADU per photoelectron), then the shape of
    the noise where it is measured well (κ2κ4/κ3² is 4/3 for an EMCCD, 1 otherwise; the
    masking of molecules trims the tails and lowers it a little), then which reading
    gives a negative baseline. Left ambiguous, sCMOS: an EMCCD would then run at an EM
    gain below a few ADU per photoelectron, which no one uses.
    """
    import numpy as np

    (g_em, b_em), (_, e_em) = with_errors("emccd")
    (g_s, b_s), (_, e_s) = with_errors("scmos")
    e_em, e_s = np.nan_to_num([e_em, e_s], nan=0.0)
    if g_s > 6.0:
        return "emccd", f"{g_s:.3g} ADU per photoelectron is beyond sCMOS cameras"
    n, s1, s2, s3, s4 = total
    k2, k3, k4 = s2 / n, s3 / n, s4 / n
    if k3 > 0:
        rho = k2 * k4 / k3 ** 2
        rho_err = np.sqrt(24.0 / n) * k2 ** 3 / k3 ** 2  # from the excess kurtosis' standard error, sqrt(24 / n)
        if rho_err < 0.05 and abs(rho - 7 / 6) > 2 * rho_err:
            kind = "emccd" if rho > 7 / 6 else "scmos"
            return kind, f"background noise shape, kurtosis ratio {rho:.2f} ± {rho_err:.2f} (EMCCD 1.33, sCMOS 1)"
    if b_em < -3 * e_em - 1 and b_s >= -3 * e_s - 1:
        return "scmos", f"as an EMCCD its baseline would be negative ({b_em:.0f} ± {e_em:.0f} ADU)"
    if b_s < -3 * e_s - 1 and b_em >= -3 * e_em - 1:
        return "emccd", f"as an sCMOS its baseline would be negative ({b_s:.0f} ± {e_s:.0f} ADU)"
    # Not silent: the kind changes the gain 2-3-fold, so the user is told to check it.
    return "scmos", (f"the noise cannot tell the kind here: taken as an sCMOS, {g_s:.3g} ADU per photoelectron; "
                     f"if it is an EMCCD, give the kind (it would be {g_em:.3g} ADU per photoelectron)")
