"""DECODE's Gaussian-mixture loss (Speiser et al. 2021).

Every pixel k is a mixture component with weight p_k / Σp and a Gaussian over
(x, y, z, photons) centred on the pixel centre + predicted offset, with the
predicted σ's. The loss is the negative log-likelihood of the true emitters
under that mixture, plus a count term: the number of emitters is compared with
a Gaussian approximation of the Poisson-binomial distribution of Σ Bernoulli(p_k)
(mean Σp, variance Σp(1-p)). No matching between predictions and emitters is
needed, and the σ's become calibrated uncertainties.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import LossTerm, register_loss

_LOG_2PI = math.log(2 * math.pi)


def mixture_log_likelihood(target: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                           log_weight: torch.Tensor) -> torch.Tensor:
    """log Σ_k w_k N(target_m | mu_k, diag(sigma_k²)) for targets (B, M, D), components
    mu, sigma (B, K, D) and log weights (B, K) -> (B, M), in float64.

    The squared distance Σ_d ((t_d - mu_d) / s_d)² expands into Σ_d t_d² a_d - 2 t_d mu_d a_d
    + mu_d² a_d with a = 1/s²: one batched matrix product, where the direct form builds
    (B, M, K, D) tensors forward and backward (on a CPU this loss took 70 % of a
    fast_2d training step). In float64 the expansion's cancellation costs nothing
    (terms reach ~1e7 at σ = 0.01 px in a 32 px frame; float64 keeps 1e-9 of that).
    """
    t = target.double()
    m = mu.double()
    a = sigma.double().pow(-2)
    lhs = torch.cat([t * t, -2.0 * t], dim=-1)  # (B, M, 2D)
    rhs = torch.cat([a, m * a], dim=-1)  # (B, K, 2D)
    quad = torch.bmm(lhs, rhs.transpose(1, 2)) + (m * m * a).sum(-1).unsqueeze(1)  # (B, M, K)
    d = target.shape[-1]
    log_norm = torch.log(sigma.double()).sum(-1) + 0.5 * d * _LOG_2PI  # (B, K)
    return torch.logsumexp(-0.5 * quad + (log_weight.double() - log_norm).unsqueeze(1), dim=-1)


@register_loss("gaussian_mm")
class GaussianMMLoss(LossTerm):
    """On a map finer than the camera grid (``s`` cells per camera pixel, from the
    map's and the frames' widths) positions and their σ's are in that map's cells,
    and the background is compared pooled back to the camera grid. A multi-scale
    model's ``{"scales": {s: map}}`` gets the sum over its scales."""

    required_channels = ("p", "photons", "x", "y", "z", "sigma_photons", "sigma_x", "sigma_y", "sigma_z")
    multi_scale = True

    def __init__(self, channels, scaling, count_weight: float = 1.0, bg_weight: float = 1.0,
                 sigma_floor: float = 1e-3, var_floor: float = 1e-4):
        super().__init__(channels, scaling)
        self.count_weight = float(count_weight)
        self.bg_weight = float(bg_weight)
        self.sigma_floor = float(sigma_floor)
        self.var_floor = float(var_floor)

    def forward(self, output, batch: dict) -> torch.Tensor:
        if isinstance(output, dict):
            return sum(self._one_scale(m, batch) for m in output["scales"].values())
        return self._one_scale(output, batch)

    def _one_scale(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        output = output.float()
        b, _, h, w = output.shape
        scale = max(1, w // batch["frames"].shape[-1]) if "frames" in batch else 1
        logits = self.ch(output, "p").reshape(b, -1)  # (B, K)
        p = torch.sigmoid(logits)
        mask = batch["mask"]
        n_true = mask.sum(-1).float()

        # Count term; DECODE weights it by the number of emitters. We use max(n, 1)
        # so that empty frames still penalise spurious probability mass.
        mean = p.sum(-1)
        var = (p - p * p).sum(-1).clamp_min(self.var_floor)
        count_nll = 0.5 * (n_true - mean) ** 2 / var + 0.5 * torch.log(var) + 0.5 * _LOG_2PI
        count_loss = count_nll * n_true.clamp_min(1)

        # Mixture term. Component means in pixels (x, y) and scaled units (z, photons).
        rows = torch.arange(h, device=output.device, dtype=output.dtype).view(h, 1).expand(h, w).reshape(-1) + 0.5
        cols = torch.arange(w, device=output.device, dtype=output.dtype).view(1, w).expand(h, w).reshape(-1) + 0.5
        mu = torch.stack(
            [
                self.ch(output, "x").reshape(b, -1) + cols,
                self.ch(output, "y").reshape(b, -1) + rows,
                self.ch(output, "z").reshape(b, -1),
                self.ch(output, "photons").reshape(b, -1),
            ],
            dim=-1,
        )  # (B, K, 4)
        sigma = torch.stack(
            [self.ch(output, n).reshape(b, -1) for n in ("sigma_x", "sigma_y", "sigma_z", "sigma_photons")], dim=-1
        ).clamp_min(self.sigma_floor)
        target = torch.stack(
            [batch["x_px"] * scale, batch["y_px"] * scale, batch["z_nm"] / self.scaling.z_nm, batch["photons"] / self.scaling.photons],
            dim=-1,
        ).float()  # (B, M, 4)
        log_weight = F.logsigmoid(logits) - torch.logsumexp(F.logsigmoid(logits), dim=-1, keepdim=True)  # (B, K)
        log_lik = mixture_log_likelihood(target, mu, sigma, log_weight).float()  # (B, M)
        gmm_loss = -(log_lik * mask).sum(-1)

        loss = gmm_loss + self.count_weight * count_loss
        if "bg" in self.channels and "background" in batch:
            bg_target = batch["background"].float() / self.scaling.background
            # Summed over pixels, as DECODE does, so it scales like the other terms.
            bg = self.ch(output, "bg")
            if scale > 1:
                bg = F.avg_pool2d(bg.unsqueeze(1), scale).squeeze(1)
            bg_sse = ((bg - bg_target) ** 2).reshape(b, -1).sum(-1)
            loss = loss + self.bg_weight * bg_sse
        return loss.mean()
