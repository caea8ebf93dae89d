"""Diagnostics as pure functions: tensors in, numbers out (no Lightning, no models).

Shapes: N evaluation samples, k latent dims. Variances and KLs are per sample in nats.
"""
from __future__ import annotations

import torch

from vaelab.errors import ConfigError
from vaelab.models.gaussian import DiagonalGaussian


def check_threshold(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"{name}={value} must be > 0 (e.g. 0.1 for active dims, 0.01 for active units)")
    return float(value)


def mean_encoder_variance(var: torch.Tensor, prior_var: torch.Tensor | None = None) -> torch.Tensor:
    """E_x[sigma_j^2(x)] per dim, shape (k,), from encoder variances (N, k); with a learned prior the ratio
    E_x[sigma_j^2(x) / sigma_pj^2(x)] (prior_var broadcastable to (N, k))."""
    return (var if prior_var is None else var / prior_var).mean(0)


def active_dims(mean_var: torch.Tensor, threshold: float = 0.1) -> int:
    """Zheng et al.: dim j is active when its mean encoder variance (k,) is below `threshold` (inactive dims
    sit at the prior's variance 1, active ones go to O(gamma))."""
    return int((mean_var < check_threshold("threshold", threshold)).sum())


def posterior_mean_variance(mean: torch.Tensor) -> torch.Tensor:
    """Cov_x(E_q[z_j | x]) per dim, shape (k,), from posterior means (N, k)."""
    return mean.var(0, correction=1) if mean.shape[0] > 1 else torch.zeros(mean.shape[1])


def active_units(mean: torch.Tensor, threshold: float = 0.01) -> int:
    """Burda et al. (2015): unit j is active when Cov_x(E_q[z_j | x]) > `threshold`; mean (N, k)."""
    return int((posterior_mean_variance(mean) > check_threshold("threshold", threshold)).sum())


def kl_per_dim(posterior: DiagonalGaussian, prior: DiagonalGaussian | None = None) -> torch.Tensor:
    """E_x KL(q(z_j|x) || p(z_j)) per dim in nats, shape (k,); prior None = N(0, I)."""
    return posterior.kl_per_dim(prior).mean(0)


def recon_mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared reconstruction error per element (x and x_hat of equal shape)."""
    return float((x - x_hat).square().mean())
