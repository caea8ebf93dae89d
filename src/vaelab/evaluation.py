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
    is untouched). Returns the posterior (N, k), the prior (or None), x_hat at the posterior mean (None for
    token data), and the sample-averaged loss terms (nats per sample)."""
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
            if split["x"].is_floating_point():  # token ids (text) have no point reconstruction to compare
                x_hats.append(model.reconstruction(model.decode(q.mean, batch)))
            for name, value in model.loss(batch).items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(batch["x"])
    model.train(was_training)
    cat = lambda ts: torch.cat(ts).cpu()  # noqa: E731
    prior = DiagonalGaussian(cat(prior_means), cat(prior_logvars)) if prior_means else None
    return {"posterior": DiagonalGaussian(cat(means), cat(logvars)), "prior": prior,
            "x_hat": cat(x_hats) if x_hats else None,
            "loss_terms": {name: total / n for name, total in sums.items()}}


def diagnose(model: LatentVariableModel, split: Split, batch_size: int, active_threshold: float = 0.1,
             au_threshold: float = 0.01, seed: int = 0, collected: dict | None = None,
             mcc_method: str = "pearson", mcc_sample: bool = False) -> dict:
    """All diagnostics of one split as a flat dict of numbers and per-dim lists (JSON-ready); `collected` is
    collect_posterior's result when the caller already has it. A split with true latents (``z_true``) also
    gets the MCC (see identifiability)."""
    c = collected or collect_posterior(model, split, batch_size, seed)
    q, p = c["posterior"], c["prior"]
    enc_var = metrics.mean_encoder_variance(q.var, None if p is None else p.var)
    kl_dims = metrics.kl_per_dim(q, p)
    results = {
        "active_dims": metrics.active_dims(enc_var, active_threshold),
        "active_units": metrics.active_units(q.mean, au_threshold),
        "kl": float(kl_dims.sum()),
        "elbo": -c["loss_terms"].get("neg_elbo", c["loss_terms"]["loss"]),  # neg_elbo: when loss is not it
        **{name: value for name, value in c["loss_terms"].items() if name not in ("loss", "kl", "neg_elbo")},
        **model.scalars(),
        "per_dim_encoder_var": enc_var.tolist(),
        "per_dim_kl": kl_dims.tolist(),
        "per_dim_posterior_mean_var": metrics.posterior_mean_variance(q.mean).tolist(),
    }
    if c["x_hat"] is not None:
        results["recon_mse"] = metrics.recon_mse(split["x"], c["x_hat"])
    if "z_true" in split:
        results.update(identifiability(split["z_true"], q, mcc_method, mcc_sample, seed))
    if "y" in split:  # classes or groups: active dims within each (union of manifolds)
        results.update(group_diagnostics(split, q, p, c["x_hat"], active_threshold))
    if getattr(model, "gated", False):
        results.update(gate_diagnostics(model, split, batch_size))
    return results


def mcc_latents(q: DiagonalGaussian, sample: bool = False, seed: int = 0) -> torch.Tensor:
    """The estimates MCC is computed on: the posterior means (N, k), or one sample of each posterior."""
    if not sample:
        return q.mean
    return q.mean + q.var.sqrt() * torch.randn(q.mean.shape, generator=torch.Generator().manual_seed(seed))


def identifiability(z_true: torch.Tensor, q: DiagonalGaussian, method: str = "pearson", sample: bool = False,
                    seed: int = 0) -> dict:
    """MCC between the true latents (N, n) and the posterior means (N, k), or one posterior sample each
    (``sample``, drawn with `seed`): ``mcc``, ``mcc_per_source`` (matched |corr| of each source, 0 when
    unmatched) and ``mcc_latent_of_source`` (the matched latent dim, -1 when unmatched)."""
    value, details = metrics.mcc(z_true, mcc_latents(q, sample, seed), method)
    per_source, latent_of = [0.0] * z_true.shape[1], [-1] * z_true.shape[1]
    for i, j, m in zip(details["source"], details["latent"], details["matched"]):
        per_source[i], latent_of[i] = m, j
    return {"mcc": value, "mcc_per_source": per_source, "mcc_latent_of_source": latent_of}


@torch.no_grad()
def posterior_means(model: LatentVariableModel, split: Split, batch_size: int, seed: int = 0) -> torch.Tensor:
    """E_q[z | x] of every point of `split`, shape (N, k), on the CPU (encoder only; global RNG forked and
    seeded, for models whose encoder is stochastic, e.g. SemiAmortized's refinement)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    means = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(split["x"]), batch_size):
            batch = {k: v[start:start + batch_size].to(device) for k, v in split.items()}
            means.append(model.encode(batch).mean.cpu())
    model.train(was_training)
    return torch.cat(means)


def collapse_diagnostics(model: LatentVariableModel, split: Split, posterior: DiagonalGaussian, seed: int = 0,
                         mi_points: int = 0, mi_batch_size: int | None = None, iw_nll_samples: int = 0,
                         iw_nll_points: int = 1000, probe_train: tuple[torch.Tensor, torch.Tensor] | None = None,
                         iw_nll_max_rows: int = 20_000) -> dict:
    """Posterior-collapse diagnostics of one split (Skip-VAE), each only when asked for:

    - ``mi`` (nats): I_q(x; z) over the first ``mi_points`` posteriors (N(mean, logvar), (N, k)) with the
      whole-set aggregate posterior, or per batch of ``mi_batch_size`` (metrics.mutual_information);
    - ``iw_nll`` (nats per sample): importance-sampled -log p(x), ``iw_nll_samples`` samples, on the first
      ``iw_nll_points`` points; when the model counts tokens (``model.token_count``) also ``iw_nll_per_token``
      and ``iw_ppl`` = exp(total NLL / total tokens); a decode call sees at most ``iw_nll_max_rows`` rows
      (points x samples; memory only, the result does not depend on it);
    - ``probe_accuracy`` in [0, 1]: a logistic regression fitted on ``probe_train`` = (posterior means (N, k),
      labels (N,)) of the training split, tested on this split's posterior means and labels ``y``.
    """
    from vaelab.likelihood import importance_sampled_nll

    results: dict = {}
    if mi_points > 0:
        n = min(mi_points, len(posterior.mean))
        results["mi"] = metrics.mutual_information(
            DiagonalGaussian(posterior.mean[:n], posterior.logvar[:n]), batch_size=mi_batch_size,
            generator=torch.Generator().manual_seed(seed))
    if iw_nll_samples > 0:
        nll = importance_sampled_nll(model, split, iw_nll_samples, iw_nll_points, iw_nll_max_rows, seed)
        results["iw_nll"] = float(nll.mean())
        counts = [model.token_count({k: v[start:start + 4096] for k, v in split.items()})
                  for start in range(0, len(nll), 4096)]
        if counts[0] is not None:
            tokens = torch.cat([c.cpu() for c in counts])[:len(nll)]
            results["iw_nll_per_token"] = float(nll.sum() / tokens.sum())
            results["iw_ppl"] = metrics.perplexity(nll, tokens)
    if probe_train is not None and "y" in split:
        results["probe_accuracy"] = metrics.probe_accuracy(*probe_train, posterior.mean, split["y"])
    return results


def group_diagnostics(split: Split, q: DiagonalGaussian, p: DiagonalGaussian | None, x_hat: torch.Tensor,
                      active_threshold: float = 0.1) -> dict:
    """Per class/group (label ``y``, ints 0..G-1) of a split: ``group_sizes``, ``group_active_dims`` (computed
    within each group, by the variance ratio to a learned prior when there is one), ``group_recon_mse``,
    ``group_encoder_var`` (G lists of k mean variances), and the same numbers as flat keys
    ``group_<i>_active_dims`` / ``group_<i>_recon_mse`` (for tables over runs)."""
    groups = split["y"].long()
    n_groups = int(groups.max()) + 1
    group_var = metrics.group_mean_encoder_variance(q.var, groups, n_groups, None if p is None else p.var)
    results = {"group_sizes": torch.bincount(groups, minlength=n_groups).tolist(),
               "group_active_dims": metrics.group_active_dims(group_var, active_threshold),
               "group_recon_mse": metrics.group_recon_mse(split["x"], x_hat, groups, n_groups),
               "group_encoder_var": group_var.tolist()}
    return results | flat_group_keys(results, ("group_active_dims", "group_recon_mse"))


def flat_group_keys(results: dict, keys: tuple[str, ...]) -> dict:
    """``{"group_active_dims": [a, b]}`` -> ``{"group_0_active_dims": a, "group_1_active_dims": b}`` (empty
    groups left out)."""
    return {f"group_{i}_{key[len('group_'):]}": v for key in keys for i, v in enumerate(results[key])
            if v is not None}


@torch.no_grad()
def gate_diagnostics(model: LatentVariableModel, split: Split, batch_size: int, threshold: float = 0.1) -> dict:
    """Gated decoders (``model.gates(batch)`` -> (B, k) in (0, 1)): ``per_dim_mean_gate``, ``active_dims_by_gate``
    (mean gate > `threshold`) and, with labels ``y``, ``group_active_dims_by_gate`` (mean gate within each)."""
    device = next(model.parameters()).device
    gates = torch.cat([model.gates({k: v[start:start + batch_size].to(device) for k, v in split.items()}).cpu()
                       for start in range(0, len(split["x"]), batch_size)])
    mean_gate = gates.mean(0)
    results = {"per_dim_mean_gate": mean_gate.tolist(),
               "active_dims_by_gate": metrics.active_dims_by_gate(mean_gate, threshold)}
    if "y" in split:
        groups = split["y"].long()
        results["group_active_dims_by_gate"] = [
            None if torch.isnan(row).all() else metrics.active_dims_by_gate(row, threshold)
            for row in metrics.group_mean(gates, groups, int(groups.max()) + 1)]
        results |= flat_group_keys(results, ("group_active_dims_by_gate",))
    return results
