"""Evaluate a model on a whole split: posterior statistics, diagnostics and a one-sample ELBO."""
from __future__ import annotations

import torch

from vaelab import metrics
from vaelab.data.in_memory import Split
from vaelab.models.base import LatentVariableModel
from vaelab.models.gaussian import DiagonalGaussian


@torch.no_grad()
def collect_posterior(model: LatentVariableModel, split: Split, batch_size: int, seed: int = 0) -> dict:
    """Runs the model over `split` in chunks with the global RNG forked and seeded (training's random stream
    is untouched). Returns the posterior (N, k), the prior (or None), x_hat at the posterior mean, and the
    sample-averaged loss terms (nats per sample)."""
    device = next(model.parameters()).device
    n = len(split["x"])
    was_training = model.training
    model.eval()
    means, logvars, prior_means, prior_logvars, x_hats = [], [], [], [], []
    sums: dict[str, float] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            batch = {k: v[start:start + batch_size].to(device, non_blocking=True) for k, v in split.items()}
            q = model.encode(batch)
            p = model.prior(batch)
            means.append(q.mean)
            logvars.append(q.logvar)
            if p is not None:
                prior_means.append(p.mean.expand_as(q.mean))
                prior_logvars.append(p.logvar.expand_as(q.logvar))
            x_hats.append(model.reconstruction(model.decode(q.mean, batch)))
            for name, value in model.loss(batch).items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(batch["x"])
    model.train(was_training)
    cat = lambda ts: torch.cat(ts).cpu()  # noqa: E731
    prior = DiagonalGaussian(cat(prior_means), cat(prior_logvars)) if prior_means else None
    return {"posterior": DiagonalGaussian(cat(means), cat(logvars)), "prior": prior, "x_hat": cat(x_hats),
            "loss_terms": {name: total / n for name, total in sums.items()}}


def diagnose(model: LatentVariableModel, split: Split, batch_size: int, active_threshold: float = 0.1,
             au_threshold: float = 0.01, seed: int = 0, collected: dict | None = None) -> dict:
    """All diagnostics of one split as a flat dict of numbers and per-dim lists (JSON-ready); `collected` is
    collect_posterior's result when the caller already has it."""
    c = collected or collect_posterior(model, split, batch_size, seed)
    q, p = c["posterior"], c["prior"]
    enc_var = metrics.mean_encoder_variance(q.var, None if p is None else p.var)
    kl_dims = metrics.kl_per_dim(q, p)
    return {
        "active_dims": metrics.active_dims(enc_var, active_threshold),
        "active_units": metrics.active_units(q.mean, au_threshold),
        "kl": float(kl_dims.sum()),
        "recon_mse": metrics.recon_mse(split["x"], c["x_hat"]),
        "elbo": -c["loss_terms"]["loss"],
        **{name: value for name, value in c["loss_terms"].items() if name not in ("loss", "kl")},
        **model.scalars(),
        "per_dim_encoder_var": enc_var.tolist(),
        "per_dim_kl": kl_dims.tolist(),
        "per_dim_posterior_mean_var": metrics.posterior_mean_variance(q.mean).tolist(),
    }
