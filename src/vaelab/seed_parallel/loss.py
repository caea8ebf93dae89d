"""The training loss of every member at once, with each member's reparameterisation noise given from outside.

Member s's terms are those its model's own ``loss`` computes on its batch (the same formulas, reduced over its
own rows), with ``rsample``'s ``randn_like`` replaced by the member's noise, so that a member drawing its noise
from its own random stream sees the numbers a single run with its seed sees.
"""

from __future__ import annotations

import math

import torch

from vaelab.models.base import Batch
from vaelab.models.gaussian import DiagonalGaussian
from vaelab.models.ivae import IdentifiableVAE, _log_normal
from vaelab.seed_parallel.stacking import StackedModel


def member_terms(stacked: StackedModel, batch: Batch, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss terms per member, each of shape (S,), nats per sample (``loss``, ``recon_nll``, ``kl``, and for
    the iVAE family ``neg_elbo``).

    batch: member-folded, every tensor (S * B, ...) with member s's minibatch in rows [s * B, (s + 1) * B);
    noise: standard normal draws, (S * B, latent_dim), member s's in the same rows."""
    members, model = stacked.members, stacked.template
    batch_size = len(batch["x"]) // members
    stacked.bind(batch_size)
    posterior = model.encode(batch)
    z = posterior.mean + noise * (0.5 * posterior.logvar).exp()
    prior = model.prior(batch)
    recon_nll = model.reconstruction_nll(batch["x"], model.decode(z, batch)).view(members, batch_size)
    kl = posterior.kl_per_dim(prior).sum(-1).view(members, batch_size)
    terms = {"recon_nll": recon_nll.mean(1), "kl": kl.mean(1)}
    if not isinstance(model, IdentifiableVAE):
        return {"loss": terms["recon_nll"] + terms["kl"], **terms}
    terms["neg_elbo"] = (recon_nll + kl).mean(1)
    if model.objective == "elbo":
        terms["loss"] = terms["recon_nll"] + model.beta * terms["kl"]
    else:
        terms["loss"] = weighted_objective(model, z, posterior, prior, recon_nll)
    return {"loss": terms.pop("loss"), **terms}


def weighted_objective(
    model: IdentifiableVAE,
    z: torch.Tensor,
    posterior: DiagonalGaussian,
    prior: DiagonalGaussian | None,
    recon_nll: torch.Tensor,
) -> torch.Tensor:
    """``IdentifiableVAE._weighted_objective`` of every member at once, shape (S,): z, posterior and prior
    member-folded (S * B, k), recon_nll (S, B). The minibatch-weighted estimates of q(z) and q(z_i) pair each
    point only with the points of its own member's minibatch."""
    a, b, c, d = model.objective_weights
    b, c, d = model.beta * b, model.beta * c, model.beta * d
    members, batch_size = recon_nll.shape
    folded = lambda t: t.view(members, batch_size, -1)  # noqa: E731
    log_q_zx = posterior.log_prob(z).view(members, batch_size)
    # log q(z_i | x_j, u_j) for every pair (i, j) of a member's minibatch: (S, B, B, k)
    pairwise = _log_normal(
        folded(z).unsqueeze(2), folded(posterior.mean).unsqueeze(1), folded(posterior.logvar).unsqueeze(1)
    )
    log_q_z = torch.logsumexp(pairwise.sum(-1), dim=2) - math.log(batch_size)
    log_q_zi = (torch.logsumexp(pairwise, dim=2) - math.log(batch_size)).sum(-1)
    log_p_z = (
        (
            _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
            if prior is None
            else _log_normal(z, prior.mean, prior.logvar)
        )
        .sum(-1)
        .view(members, batch_size)
    )
    objective = -a * recon_nll - b * (log_q_zx - log_q_z) - c * (log_q_z - log_q_zi) - d * (log_q_zi - log_p_z)
    return -objective.mean(1)
