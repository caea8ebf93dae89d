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


# Per-group active dims (manifold dimensions with CVAEs, issue 3): active dims within each class or group of a
# union of manifolds (never pooled over groups), and active dims by the gates of a gated decoder.

def group_mean(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean of values (N, k) over the samples of each group (groups (N,) ints in 0..n_groups-1), shape
    (n_groups, k); NaN rows for groups without samples."""
    sums = values.new_zeros(n_groups, values.shape[1]).index_add_(0, groups, values)
    return sums / torch.bincount(groups, minlength=n_groups).unsqueeze(1).to(values.dtype)


def group_mean_encoder_variance(var: torch.Tensor, groups: torch.Tensor, n_groups: int,
                                prior_var: torch.Tensor | None = None) -> torch.Tensor:
    """E_x[sigma_j^2(x)] within each group, shape (n_groups, k), from encoder variances (N, k); with a learned
    prior the ratio E_x[sigma_j^2(x) / sigma_pj^2(x)] (as mean_encoder_variance, group by group)."""
    return group_mean(var if prior_var is None else var / prior_var.expand_as(var), groups, n_groups)


def group_active_dims(group_mean_var: torch.Tensor, threshold: float = 0.1) -> list[int | None]:
    """Active dims of each group from its mean encoder variances (n_groups, k); None for an empty group."""
    return [None if torch.isnan(row).all() else active_dims(row, threshold) for row in group_mean_var]


def group_recon_mse(x: torch.Tensor, x_hat: torch.Tensor, groups: torch.Tensor, n_groups: int) -> list[float | None]:
    """Mean squared reconstruction error per element within each group (x, x_hat (N, ...)); None when empty."""
    per_sample = (x - x_hat).square().flatten(1).mean(1, keepdim=True)
    return [None if torch.isnan(v) else float(v) for v in group_mean(per_sample, groups, n_groups)[:, 0]]


def active_dims_by_gate(mean_gate: torch.Tensor, threshold: float = 0.1) -> int:
    """Gated decoders (x = f(g(c) * z, c)): dims whose mean gate (k,) exceeds `threshold` (the paper: 0.1)."""
    return int((mean_gate > check_threshold("gate threshold", threshold)).sum())


def active_dims_map(var: torch.Tensor, groups: torch.Tensor, threshold: float = 0.1,
                    prior_var: torch.Tensor | None = None, per_group: int = 32) -> tuple[torch.Tensor, list[int]]:
    """Which dims each sample uses, as a (rows, k) map of 0/1 (1: sigma_j^2(x) (/ sigma_pj^2) < threshold):
    the first `per_group` samples of each group, groups in increasing order. Returns the map and the group of
    each row."""
    ratio = var if prior_var is None else var / prior_var.expand_as(var)
    rows = torch.cat([torch.nonzero(groups == g).flatten()[:per_group] for g in groups.unique().sort().values])
    return (ratio[rows] < check_threshold("threshold", threshold)).float(), groups[rows].tolist()
