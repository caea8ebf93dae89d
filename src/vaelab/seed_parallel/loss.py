"""The training loss of every member at once, with each member's reparameterisation noise given from outside.

Member s's terms are those its model's own ``loss`` computes on its batch (the same formulas, reduced over its
own rows), with ``rsample``'s ``randn_like`` replaced by the member's noise, so that a member drawing its noise
from its own random stream sees the numbers a single run with its seed sees.
"""

from __future__ import annotations

import torch

from vaelab.models.base import Batch
from vaelab.models.gaussian import DiagonalGaussian
from vaelab.models.ivae import IdentifiableVAE, weighted_objective
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
        log_q_zx = posterior.log_prob(z).view(members, batch_size)
        terms["loss"] = weighted_objective(
            model.objective_weights,
            model.beta,
            z.view(members, batch_size, -1),
            member_folded(posterior, members),
            None if prior is None else member_folded(prior, members),
            recon_nll,
            log_q_zx,
        )
    return {"loss": terms.pop("loss"), **terms}


def member_folded(gaussian: DiagonalGaussian, members: int) -> DiagonalGaussian:
    """Parameters (S * B, k) as (S, B, k): each member's minibatch along its own leading index."""
    return DiagonalGaussian(
        gaussian.mean.view(members, -1, gaussian.mean.shape[-1]),
        gaussian.logvar.view(members, -1, gaussian.logvar.shape[-1]),
    )
