"""Maximum-likelihood fit of a camera's background noise: the whole distribution, not moments.

A background pixel away from molecules holds ``b + Z + ε`` ADU: ``Z`` the photoelectrons'
signal — N ~ Poisson(λ) photoelectrons, each worth ``g`` ADU on an sCMOS or CCD, or
multiplied by the EM register into Gamma(N, g) on an EMCCD — and ``ε`` Gaussian read
noise (s ADU r.m.s.), rounded to whole ADU. For an EMCCD the density of ``Z`` has a closed
form (Basden et al. 2003, the EM register's output):

    p(z) = exp(-λ - z/g) · sqrt(λ / (g z)) · I1(2 sqrt(λ z / g))   for z > 0,  P(z = 0) = exp(-λ),

and for an sCMOS it is a lattice of Poisson weights at z = g·n. Either is put on a grid and
convolved with the Gaussian (scipy: there is no closed form for the convolution); its
cumulative distribution at the edges of whole-ADU bins gives each bin's probability, and
the background pixels' values (from one background level: ``estimate_camera`` picks them)
are fitted by maximum likelihood for gain, λ, baseline and, for an EMCCD, read noise.

Why a likelihood where the moments (``estimate_camera``'s first guess) are simple: the
moments cannot tell read noise from shot noise (κ2 holds both), so a dim EMCCD at a low
EM gain came out 25-28 % low; the shape of the distribution tells them apart, and it tells
an EMCCD at a low gain (0.6 ADU per photoelectron) from an sCMOS where the fourth moment
is too noisy to. The fit also leaves out the top of the distribution (``censor``), where
the wings of molecules too dim to be found sit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["NoiseFit", "fit_background_noise", "fit_emccd_with_baseline"]

GRID = 8192
# An EMCCD "without read noise" still has this much (ADU r.m.s.): none at all would put a
# cliff at the baseline that a few low values could not pass.
MIN_READ_ADU = 0.5
# A weak prior on the EMCCD read noise's share of the background variance, as a logit:
# centred on 2 % (e^-4), one unit of the logit's scale per 2 (so 0.03 % to 50 % within 2σ).
# Where the movie tells the read noise (dim backgrounds) it has no say; where it cannot
# (bright ones), it keeps the read noise from wandering and taking the gain with it.
READ_SHARE_PRIOR = (-4.0, 2.0)
# The fraction of the background values fitted; the rest, the top, only counts as "above"
# (there sit the wings of molecules too dim to be found). 0.95 against 0.98 on the camera
# grid (benchmarks/camera_estimate.py): the gain's excess at 200 photons/px fell in 6 of
# its 9 EMCCD movies (e.g. +4.8 -> +1.8 %, +7.1 -> +5.3 %), dim ones moved within their errors.
CENSOR = 0.95
# Below this many photoelectrons per pixel an EMCCD's read noise is fitted whenever it does
# not lower the likelihood: there the pixels with no photoelectron (e^-λ of them) and the
# lower edge are read noise alone, and a fit without it puts a hard edge where the baseline
# is. One movie, 60 frames of 64×64 at 9 photoelectrons and 60 ADU each, read noise 15 ADU:
# the read noise gained only 1 log-unit but moved the baseline from -8.6 to -2.3 ADU of the
# truth (bound ±2.9). On the camera grid (benchmarks/camera_estimate.py, 10 photons/px)
# every baseline came within 3.4 ADU; always fitted, bright backgrounds went wrong.
DIM_LAMBDA = 20.0
# Nelder–Mead runs per fit at most (each restarted from the last one's optimum).
RESTARTS = 6


@dataclass
class NoiseFit:
    """A fitted background: ``gain`` ADU per photoelectron, ``lam`` photoelectrons per
    pixel, ``baseline`` (ADU), ``read_adu`` the Gaussian read noise's r.m.s. (ADU; 0 where it
    was not fitted), ``nll`` the negative log-likelihood at the optimum, ``cov`` the
    covariance of (gain, baseline) from the curvature of the likelihood, and
    ``read_free`` whether the read noise was fitted."""

    kind: str
    gain: float
    lam: float
    baseline: float
    read_adu: float
    nll: float
    cov: np.ndarray
    read_free: bool
    n: int

    def errors(self) -> tuple[float, float]:
        """1-σ errors of the gain and of the baseline (from the likelihood's curvature)."""
        if not np.all(np.isfinite(self.cov)):
            return float("nan"), float("nan")
        return float(np.sqrt(max(self.cov[0, 0], 0.0))), float(np.sqrt(max(self.cov[1, 1], 0.0)))


def _spread(values, weights, lo, h, n):
    """Point masses at ``values`` put on the grid ``lo + i·h`` by linear interpolation."""
    out = np.zeros(n)
    pos = (np.asarray(values, float) - lo) / h
    j = np.floor(pos).astype(int)
    frac = pos - j
    ok = (j >= 0) & (j + 1 < n)
    np.add.at(out, j[ok], weights[ok] * (1 - frac[ok]))
    np.add.at(out, j[ok] + 1, weights[ok] * frac[ok])
    return out


def _span(kind: str, g: float, lam: float, s: float) -> tuple[float, float]:
    """The range of Z + ε that holds all but a negligible share of its probability."""
    shape = 2.0 if kind == "emccd" else 1.0  # excess noise factor F²
    return -8.0 * s - 2.0 * g, lam * g + 12.0 * np.sqrt(shape * lam + 1.0) * g + 10.0 * g + 8.0 * s


def _density(kind: str, g: float, lam: float, s: float, span: Optional[tuple[float, float]] = None):
    """Density of Z + ε on a grid over ``span`` (default: :func:`_span`): (grid origin,
    spacing, density values)."""
    from scipy import signal, special

    lo, hi = span if span is not None else _span(kind, g, lam, s)
    h = (hi - lo) / GRID
    z = lo + h * np.arange(GRID)
    if kind == "emccd":
        zp = np.maximum(z, 1e-300)
        u = 2.0 * np.sqrt(lam * zp / g)
        with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
            logp = -lam - zp / g + 0.5 * np.log(lam / (g * zp)) + np.log(special.ive(1, u)) + u
        p = np.where(z > 0, np.exp(logp), 0.0) * h
        p += _spread([0.0], np.array([np.exp(-lam)]), lo, h, GRID)  # no photoelectron: the atom at 0
    else:
        k = np.arange(max(0, int(lam - 12 * np.sqrt(lam) - 10)), int(lam + 12 * np.sqrt(lam) + 12))
        weights = np.exp(k * np.log(lam) - lam - special.gammaln(k + 1))
        p = _spread(g * k, weights, lo, h, GRID)
    radius = int(np.ceil(8.0 * s / h))
    if radius >= 1:
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) * h / s) ** 2)
        p = signal.fftconvolve(p, kernel / kernel.sum(), mode="same")
    return lo, h, np.maximum(p / h, 1e-300)


class _Histogram:
    """Whole-ADU values as a histogram of bins of whole ADU between two quantiles; what lies
    outside counts only as 'below' / 'above' (censored), so a few molecule wings or hot
    pixels cannot pull the fit."""

    def __init__(self, adu: np.ndarray, censor: float, bins: int = 4000):
        lo, hi = np.floor(np.quantile(adu, [1e-4, censor])).astype(np.int64)
        hi = max(hi, lo + 2)
        width = max(1, int(np.ceil((hi - lo) / bins)))
        self.edges = lo - 0.5 + width * np.arange((hi - lo) // width + 2)  # bins of whole ADU
        self.counts, _ = np.histogram(adu, bins=self.edges)
        self.counts = self.counts.astype(np.float64)
        self.below = float((adu < self.edges[0]).sum())
        self.above = float((adu >= self.edges[-1]).sum())
        self.n = int(adu.size)


def _cdf(kind: str, g: float, lam: float, b: float, s: float, edges: np.ndarray,
         span: Optional[tuple[float, float]] = None) -> np.ndarray:
    """The model's cumulative distribution of the ADU values at ``edges``."""
    lo, h, p = _density(kind, g, lam, s, span)
    cdf = np.concatenate([[0.0], np.cumsum(p) * h])
    grid = lo + h * np.arange(GRID + 1) - 0.5 * h  # the CDF at the cells' edges
    return np.interp(edges - b, grid, cdf, left=0.0, right=1.0)


def _nll(kind: str, g: float, lam: float, b: float, s: float, hist: _Histogram) -> float:
    f = _cdf(kind, g, lam, b, s, hist.edges)
    prob = np.maximum(np.diff(f), 1e-300)
    total = -(hist.counts * np.log(prob)).sum()
    if hist.below:
        total -= hist.below * np.log(max(f[0], 1e-300))
    if hist.above:
        total -= hist.above * np.log(max(1.0 - f[-1], 1e-300))
    return float(total)


def fit_background_noise(adu: np.ndarray, kind: str, gain0: float, lam0: float,
                         read_e_scmos: float = 1.5, censor: float = CENSOR,
                         read_noise_lr: float = 5.0, read_free: Optional[bool] = None,
                         with_errors: bool = True) -> Optional[NoiseFit]:
    """Fit background pixels' values ``adu`` (whole ADU, away from molecules, from one
    background level) as ``kind``: ADU = round(baseline + Z + ε).

    ``gain0`` and ``lam0`` (from the moments) start the search, with the values' mean
    and variance. sCMOS: read
    noise fixed at ``read_e_scmos`` e⁻ (it is not identifiable beside shot noise). EMCCD:
    fitted without read noise and with it, and the read noise is kept where it improves the
    log-likelihood by more than ``read_noise_lr`` or, on a dim background (fewer than
    ``DIM_LAMBDA`` photoelectrons per pixel), at all (on bright backgrounds it cannot be
    told from shot noise and would wander, taking the gain with it). ``read_free`` True or
    False fits only that variant; without ``with_errors`` the covariance (most of the time
    of a fit) is not computed (NaN). None if the fit fails.
    """
    force_read_free = read_free  # the caller's choice; read_free below is the fit's
    adu = np.asarray(adu, np.float64)
    if adu.size < 1000 or not all(np.isfinite([gain0, lam0])) or gain0 <= 0 or lam0 <= 0:
        return None
    hist = _Histogram(adu, censor)
    mean, sd = float(adu.mean()), float(np.std(adu)) or 1.0
    shape = 2.0 if kind == "emccd" else 1.0  # excess noise factor F²

    # Searched in nearly independent coordinates — log gain, the mean (b + λg, in units of the
    # values' r.m.s.), log of the variance (F²λg² + s²) and, for an EMCCD's read noise, the
    # logit of its share of the variance — so that the search converges and the curvature's
    # inverse (the errors) is well conditioned; gain, λ and baseline are strongly correlated.
    def unpack(theta, read_free):
        g, m, v = np.exp(theta[0]), mean + theta[1] * sd, np.exp(theta[2]) * sd * sd
        if kind == "scmos":
            s2 = (read_e_scmos * g) ** 2
        elif read_free:
            s2 = v / (1.0 + np.exp(-theta[3]))
        else:
            s2 = MIN_READ_ADU ** 2
        lam = (v - s2) / (shape * g * g)
        return g, lam, m - lam * g, np.sqrt(max(s2, 1e-6))

    def objective(theta, read_free):
        g, lam, b, s = unpack(theta, read_free)
        if not (1e-4 < g < 1e5 and 1e-3 < lam < 1e5):
            return 1e300
        prior = 0.5 * ((theta[3] - READ_SHARE_PRIOR[0]) / READ_SHARE_PRIOR[1]) ** 2 if read_free else 0.0
        return _nll(kind, g, lam, b, s, hist) + prior

    def run(theta0, read_free):
        return _restarted_nelder_mead(lambda t: objective(t, read_free), theta0)

    lam0 = float(np.clip(lam0, 0.05, 5e4))
    v0 = shape * lam0 * gain0 ** 2 + (read_e_scmos * gain0) ** 2 * (kind == "scmos")
    start = np.array([np.log(gain0), 0.0, np.log(v0 / sd ** 2)])
    theta, nll = run(start, False) if not force_read_free else (None, np.inf)
    read_free = False
    if kind == "emccd" and force_read_free is not False:
        # from the moments' start, not from the fit without read noise: on a dim background
        # that one has a hard lower edge at the baseline, which drags it off
        theta_r, nll_r = run(np.append(start, READ_SHARE_PRIOR[0]), True)
        dim = unpack(theta_r, True)[1] < DIM_LAMBDA
        if force_read_free or nll_r < nll - read_noise_lr or (dim and nll_r <= nll):
            theta, nll, read_free = theta_r, nll_r, True
    if not np.isfinite(nll) or nll >= 1e299:
        return None
    g, lam, b, s = unpack(theta, read_free)

    def errors(at, free):
        """Covariance of (gain, baseline = m - λg): the curvature's inverse by the delta method."""
        cov = _covariance(lambda t: objective(t, free), at, np.array([0.02, 0.01, 0.01, 0.1])[:len(at)])
        jac = np.zeros((2, len(at)))
        jac[0, 0] = unpack(at, free)[0]
        eps = 1e-6
        for i in range(len(at)):
            d = np.eye(len(at))[i] * eps
            jac[1, i] = (unpack(at + d, free)[2] - unpack(at - d, free)[2]) / (2 * eps)
        return jac @ cov @ jac.T if np.all(np.isfinite(cov)) else np.full((2, 2), np.nan)

    # An EMCCD's read noise is unknown even where the fit without it is kept: the errors are
    # those of the fit with it (its prior is weak), else they would claim a knowledge of the
    # read noise that nothing gave — on the camera grid the baseline's stated error was a
    # tenth of its true one at 50 photons/px and EM gain 30 (±2 ADU, -17 ADU off).
    if not with_errors:
        cov_gb = np.full((2, 2), np.nan)
    else:
        cov_gb = errors(theta_r, True) if kind == "emccd" and force_read_free is None else errors(theta, read_free)
        if not np.all(np.isfinite(cov_gb)) and kind == "emccd" and not read_free:
            cov_gb = errors(theta, False)
    return NoiseFit(kind=kind, gain=float(g), lam=float(lam), baseline=float(b), read_adu=float(s) if read_free else 0.0,
                    nll=nll, cov=cov_gb, read_free=read_free, n=hist.n)


def fit_emccd_with_baseline(adu: np.ndarray, baseline: float, gain0: float, censor: float = CENSOR) -> Optional[NoiseFit]:
    """Fit an EMCCD's background values ``adu`` (whole ADU, one background level) for gain,
    λ and read noise with the ``baseline`` given; None if the fit fails.

    The baseline known, the values' location gives λ·gain and their shape the gain and the
    read noise, with no prior on it. The moments with the baseline given (κ2 / 2(κ1 − b))
    take the read noise for shot noise instead: on the camera grid's 200-frame movies at EM
    gain 30, +33 % at 10 photons/px and +7 % at 50, where this fit was within 1.5 % (scratch
    ``bfix13.py``, ``given13.py``). ``estimate_camera`` uses it on dim backgrounds only: on
    bright ones the shape alone tells the read noise, and on the foreign gradient movie it
    read 21.5 ADU of it (true 2.5)."""
    adu = np.asarray(adu, np.float64)
    above = float(adu.mean()) - baseline
    if adu.size < 1000 or not (np.isfinite(gain0) and gain0 > 0 and above > 0):
        return None
    hist = _Histogram(adu, censor)

    # log gain, log λ and the logit of the read noise's share of the variance
    def unpack(theta):
        g, lam = np.exp(theta[0]), np.exp(theta[1])
        share = 1.0 / (1.0 + np.exp(-theta[2]))
        return g, lam, max(np.sqrt(share / (1.0 - share) * 2.0 * lam * g * g), MIN_READ_ADU)

    def objective(theta):
        g, lam, s = unpack(theta)
        if not (1e-4 < g < 1e5 and 1e-3 < lam < 1e5):
            return 1e300
        return _nll("emccd", g, lam, baseline, s, hist)

    # From a read noise of 5 % of the variance, in runs of at most 1,000 steps: from 0.2 % one
    # crept along the valley for 2 × 3,000 steps (110 s) to the optimum that 5 % and 27 %
    # reached in ~200.
    theta, nll = _restarted_nelder_mead(objective, [np.log(gain0), np.log(above / gain0), -3.0], maxiter=1000)
    if not np.isfinite(nll) or nll >= 1e299:
        return None
    g, lam, s = unpack(theta)
    cov = _covariance(objective, theta, np.array([0.01, 0.01, 0.1]))
    gain_var = g * g * cov[0, 0] if np.all(np.isfinite(cov)) else np.nan
    return NoiseFit(kind="emccd", gain=float(g), lam=float(lam), baseline=float(baseline), read_adu=float(s), nll=nll,
                    cov=np.array([[gain_var, 0.0], [0.0, 0.0]]), read_free=True, n=hist.n)


def _restarted_nelder_mead(f, theta0, maxiter: int = 3000):
    """Minimise ``f`` by Nelder–Mead restarted from where it stopped until a restart gains
    < 0.01 (at most RESTARTS runs): in four dimensions its simplex collapses in this
    likelihood's narrow valley (gain, λ and read noise trade against each other) and stalled
    17 log-units short of the truth's likelihood on a dim EMCCD, with the gain 2.3 % low and
    the baseline 11 ADU off. Returns the best point and its value."""
    from scipy import optimize

    theta, fun = np.asarray(theta0, float), np.inf
    for _ in range(RESTARTS):
        simplex = theta + np.vstack([np.zeros(len(theta)), 0.05 * np.eye(len(theta))])
        res = optimize.minimize(f, theta, method="Nelder-Mead",
                                options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-2, "maxiter": maxiter})
        gained = fun - float(res.fun)
        if res.fun < fun:
            theta, fun = res.x, float(res.fun)
        if gained < 0.01:
            break
    return theta, fun


def _covariance(f, theta, steps) -> np.ndarray:
    """Inverse of the numerical Hessian of ``f`` at ``theta`` (central differences, ``steps``
    per coordinate: wide, because the likelihood on a grid is not smooth at the 1e-6 level)."""
    k = len(theta)
    hess = np.zeros((k, k))
    f0 = f(theta)
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * steps[i], np.eye(k)[j] * steps[j]
            if i == j:
                hess[i, i] = (f(theta + ei) - 2 * f0 + f(theta - ei)) / steps[i] ** 2
            else:
                hess[i, j] = hess[j, i] = (f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej)
                                           + f(theta - ei - ej)) / (4 * steps[i] * steps[j])
    try:
        cov = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return np.full((k, k), np.nan)
    return cov if np.all(np.diag(cov) > 0) else np.full((k, k), np.nan)


def cramer_rao(kind: str, gain: float, lam: float, baseline: float, read_adu: float, n: int,
               read_free: bool = True) -> tuple[float, float]:
    """The Cramér–Rao bound on the errors (1 σ) of the ADU per photoelectron and of the
    baseline that ``n`` background values of one level allow, everything else unknown too:
    no unbiased estimate from those values does better. For benchmarks: it tells an
    estimator's error from what the movie cannot say (on a bright EMCCD background the
    baseline is the mean less λ·gain, so a 1 % error in the gain is λ·gain/100 ADU).

    Parameters (gain, λ, baseline and, for an EMCCD with ``read_free``, the read noise;
    an sCMOS's read noise is a fixed number of photoelectrons, as in the fit): the
    expected Fisher information of the whole-ADU histogram, Σ (∂p/∂θ)(∂p/∂θ)ᵀ / p over
    its bins, by central differences of the model that the fit uses."""
    read_e = read_adu / gain if gain > 0 else 0.0

    def probs(theta, edges):
        g, lm, b = theta[:3]
        s = theta[3] if len(theta) > 3 else (read_e * g if kind == "scmos" else max(read_adu, MIN_READ_ADU))
        # one grid for every θ of the differences: a grid that moved with θ would put its
        # own discretisation into the derivatives
        return np.diff(_cdf(kind, g, lm, b, max(s, MIN_READ_ADU), edges, span))

    theta = [gain, lam, baseline] + ([max(read_adu, MIN_READ_ADU)] if kind == "emccd" and read_free else [])
    theta = np.asarray(theta, float)
    lo, hi = _span(kind, gain, lam, max(read_adu, MIN_READ_ADU))
    span = (lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    shape = 2.0 if kind == "emccd" else 1.0
    sd = np.sqrt(shape * lam * gain ** 2 + max(read_adu, MIN_READ_ADU) ** 2)
    lo = np.floor(baseline - 8.0 * max(read_adu, MIN_READ_ADU) - 2 * gain)
    hi = np.ceil(baseline + lam * gain + 12.0 * sd + 10.0 * gain)
    edges = np.arange(lo, hi + 1) + 0.5
    p = probs(theta, edges)
    keep = p > 1e-12  # bins that (practically) never fill carry no information
    steps = np.array([1e-3 * gain, 1e-3 * max(lam, 0.1), 0.02 * sd / np.sqrt(shape), 1e-2 * theta[-1]])[:len(theta)]
    grads = []
    for i, step in enumerate(steps):
        d = np.zeros(len(theta))
        d[i] = step
        grads.append((probs(theta + d, edges) - probs(theta - d, edges)) / (2 * step))
    grads = np.array(grads)[:, keep]
    info = n * (grads / p[keep]) @ grads.T
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return float("nan"), float("nan")
    return float(np.sqrt(max(cov[0, 0], 0.0))), float(np.sqrt(max(cov[2, 2], 0.0)))
