"""Importance-sampled log-likelihood of any LatentVariableModel (Burda et al. 2015).

log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K with z_k ~ q(z|x), using only the
model interface: ``-reconstruction_nll(x, decode(z, batch))``, ``prior(batch)`` (None = N(0, I)) and
``encode(batch)``. The noise of point n is drawn from its own generator seeded by (seed, n), so the estimate
of a point does not depend on the evaluation batch size or on which other points are evaluated.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vaelab.data.in_memory import Split
from vaelab.models.base import Batch, LatentVariableModel
from vaelab.models.gaussian import LOG_2PI


def _point_noise(indices: range, n_samples: int, latent_dim: int, seed: int) -> torch.Tensor:
    """Standard normal noise (K, B, k), point n's column from a generator seeded by (seed, n)."""
    g = torch.Generator()
    columns = []
    for n in indices:
        g.manual_seed(seed * 1_000_003 + n)
        columns.append(torch.randn(n_samples, latent_dim, generator=g))
    return torch.stack(columns, 1)


def log_importance_weights(model: LatentVariableModel, batch: Batch, eps: torch.Tensor) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k|x) in nats, shape (K, B), for z_k = mean + eps_k * std of q(z|x) and
    eps (K, B, k). The batch is repeated K times (every tensor along its first dim) for one decode call."""
    q = model.encode(batch)
    n_samples, size = eps.shape[:2]
    z = q.mean + eps.to(q.mean) * (0.5 * q.logvar).exp()  # (K, B, k)
    log_q = q.log_prob(z)
    prior = model.prior(batch)
    log_p_z = -0.5 * (LOG_2PI + z.square()).sum(-1) if prior is None else prior.log_prob(z)
    repeated = {name: value.repeat(n_samples, *[1] * (value.dim() - 1)) for name, value in batch.items()}
    recon_nll = model.reconstruction_nll(repeated["x"], model.decode(z.reshape(n_samples * size, -1), repeated))
    return -recon_nll.view(n_samples, size) + log_p_z - log_q


@torch.no_grad()
def importance_sampled_nll(
    model: LatentVariableModel,
    split: Split,
    n_samples: int = 500,
    n_points: int | None = None,
    max_rows: int = 20_000,
    seed: int = 0,
    progress: Any = None,
) -> torch.Tensor:
    """-log p(x) in nats per point, shape (n_points,), for the first ``n_points`` points of ``split`` (all when
    None), with ``n_samples`` (K) importance samples from the model's posterior.

    Work is chunked so that one decode call sees at most ``max_rows`` repeated rows (points x samples): the
    result does not depend on it. Runs with the model in eval mode (restored after). ``progress``: anything
    with ``update(points)`` (vaelab.diagnostics.base.Progress), told after each chunk of points.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples} must be >= 1")
    device = next(iter([*model.parameters(), *model.buffers()])).device
    total = len(split["x"])
    n = total if n_points is None else min(n_points, total)
    points_per_call = max(1, max_rows // n_samples)
    samples_per_call = min(n_samples, max_rows)
    was_training = model.training
    model.eval()
    nll = []
    for start in range(0, n, points_per_call):
        rows = range(start, min(start + points_per_call, n))
        batch = {k: v[rows.start : rows.stop].to(device) for k, v in split.items()}
        eps = _point_noise(rows, n_samples, model.latent_dim, seed)
        log_w = torch.cat(
            [
                log_importance_weights(model, batch, eps[s : s + samples_per_call])
                for s in range(0, n_samples, samples_per_call)
            ]
        )
        nll.append(-(log_w.double().logsumexp(0) - math.log(n_samples)).cpu())
        if progress is not None:
            progress.update(len(rows))
    model.train(was_training)
    return torch.cat(nll)
