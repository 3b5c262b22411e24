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

__all__ = ["NoiseFit", "fit_background_noise"]

GRID = 8192
# An EMCCD "without read noise" still has this much (ADU r.m.s.): none at all would put a
# cliff at the baseline that a few low values could not pass.
MIN_READ_ADU = 0.5
# A weak prior on the EMCCD read noise's share of the background variance, as a logit:
# centred on 2 % (e^-4), one unit of the logit's scale per 2 (so 0.03 % to 50 % within 2σ).
# Where the movie tells the read noise (dim backgrounds) it has no say; where it cannot
# (bright ones), it keeps the read noise from wandering and taking the gain with it.
READ_SHARE_PRIOR = (-4.0, 2.0)
# The fraction of the background values fitted; the rest, the top, only counts as "above".
CENSOR = 0.98


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


def _density(kind: str, g: float, lam: float, s: float):
    """Density of Z + ε on a grid: (grid origin, spacing, density values)."""
    from scipy import signal, special

    shape = 2.0 if kind == "emccd" else 1.0  # excess noise factor F²
    hi = lam * g + 12.0 * np.sqrt(shape * lam + 1.0) * g + 10.0 * g + 8.0 * s
    lo = -8.0 * s - 2.0 * g
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


def _nll(kind: str, g: float, lam: float, b: float, s: float, hist: _Histogram) -> float:
    lo, h, p = _density(kind, g, lam, s)
    cdf = np.concatenate([[0.0], np.cumsum(p) * h])
    grid = lo + h * np.arange(GRID + 1) - 0.5 * h  # the CDF at the cells' edges
    f = np.interp(hist.edges - b, grid, cdf, left=0.0, right=1.0)
    prob = np.maximum(np.diff(f), 1e-300)
    total = -(hist.counts * np.log(prob)).sum()
    if hist.below:
        total -= hist.below * np.log(max(f[0], 1e-300))
    if hist.above:
        total -= hist.above * np.log(max(1.0 - f[-1], 1e-300))
    return float(total)


def fit_background_noise(adu: np.ndarray, kind: str, gain0: float, lam0: float,
                         read_e_scmos: float = 1.5, censor: float = CENSOR,
                         read_noise_lr: float = 5.0) -> Optional[NoiseFit]:
    """Fit background pixels' values ``adu`` (whole ADU, away from molecules, from one
    background level) as ``kind``: ADU = round(baseline + Z + ε).

    ``gain0`` and ``lam0`` (from the moments) start the search, with the values' mean
    and variance. sCMOS: read
    noise fixed at ``read_e_scmos`` e⁻ (it is not identifiable beside shot noise). EMCCD:
    fitted without read noise and with it, and the read noise is kept only where it improves
    the log-likelihood by more than ``read_noise_lr`` (on bright backgrounds it cannot be
    told from shot noise and would wander, taking the gain with it). None if the fit fails.
    """
    from scipy import optimize

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
        simplex = theta0 + np.vstack([np.zeros(len(theta0)), 0.05 * np.eye(len(theta0))])
        res = optimize.minimize(objective, theta0, args=(read_free,), method="Nelder-Mead",
                                options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-2, "maxiter": 3000})
        return res.x, float(res.fun)

    lam0 = float(np.clip(lam0, 0.05, 5e4))
    v0 = shape * lam0 * gain0 ** 2 + (read_e_scmos * gain0) ** 2 * (kind == "scmos")
    start = np.array([np.log(gain0), 0.0, np.log(v0 / sd ** 2)])
    theta, nll = run(start, False)
    read_free = False
    if kind == "emccd":
        # from the moments' start, not from the fit without read noise: on a dim background
        # that one has a hard lower edge at the baseline, which drags it off
        theta_r, nll_r = run(np.append(start, READ_SHARE_PRIOR[0]), True)
        if nll_r < nll - read_noise_lr:
            theta, nll, read_free = theta_r, nll_r, True
    if not np.isfinite(nll) or nll >= 1e299:
        return None
    g, lam, b, s = unpack(theta, read_free)
    cov = _covariance(lambda t: objective(t, read_free), theta, np.array([0.02, 0.01, 0.01, 0.1])[:len(theta)])
    # the errors of the gain and the baseline (= m - λg) by the delta method
    jac = np.zeros((2, len(theta)))
    jac[0, 0] = g
    eps = 1e-6
    for i in range(len(theta)):
        d = np.eye(len(theta))[i] * eps
        jac[1, i] = (unpack(theta + d, read_free)[2] - unpack(theta - d, read_free)[2]) / (2 * eps)
    cov_gb = jac @ cov @ jac.T if np.all(np.isfinite(cov)) else np.full((2, 2), np.nan)
    return NoiseFit(kind=kind, gain=float(g), lam=float(lam), baseline=float(b), read_adu=float(s) if read_free else 0.0,
                    nll=nll, cov=cov_gb, read_free=read_free, n=hist.n)


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
