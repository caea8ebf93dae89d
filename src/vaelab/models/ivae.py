"""iVAE (Khemakhem et al. 2020) and its baselines as options of one model.

- prior="conditional": p(z|u) = N(m(u), diag exp(l(u))), l (and m, with ``prior_mean``) an MLP of the auxiliary
  variable u; prior="standard": N(0, I).
- sizes that follow the data: ``latent_dim=None`` is the data's number of sources (``ground_truth["n_sources"]``);
  ``prior_mean="auto"`` learns m(u) iff the data's segments have means (``ground_truth["segment_means"]``).
  An explicit value that contradicts the data is used as given, with one warning line naming both.
- encoder q(z|x,u) (``encoder_uses_u``) or q(z|x): N(g, diag exp(v)) from one MLP.
- decoder N(f(z), sigma^2 I), sigma^2 = ``decoder_var`` fixed (default 0.1) or learnable.

iVAE = conditional prior + encoder on (x, u); VAE = standard prior + encoder on x; beta-VAE = VAE with
``beta`` > 1. ``objective="elbo"`` minimises recon_nll + beta * KL (the negative ELBO when beta = 1);
``objective="weighted"`` minimises the reference's decomposition with weights (a, beta b, beta c, beta d),
-E[a log p(x|z) - b (log q(z|x,u) - log q(z)) - c (log q(z) - sum_i log q(z_i))
   - d (sum_i log q(z_i) - log p(z|u))],
with q(z) and q(z_i) estimated by minibatch-weighted sampling over the batch (up to the constant log N, N the
training set size, which changes no gradient). Whatever is minimised, ``neg_elbo`` reports the true
negative ELBO (nats per sample) and evaluation reports the ELBO from it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError
from vaelab.models.base import Batch, LatentVariableModel, check_real_valued
from vaelab.models.gaussian import LOG_2PI, DiagonalGaussian
from vaelab.models.networks import mlp

PRIORS = ("conditional", "standard")
EVAL_CHUNK = 256  # points per minibatch-weighted estimate of the weighted objective outside training
OBJECTIVES = ("elbo", "weighted")

log = logging.getLogger("vaelab")


def resolve_latent_dim(latent_dim: int | None, data: DataSpec) -> int:
    """``latent_dim``, or the data's number of sources when it is None; warns once when they differ."""
    n_sources = data.ground_truth.get("n_sources")
    if latent_dim is None:
        if n_sources is None:
            raise ConfigError(
                f"model.latent_dim=null follows data.n_sources, and data={data.name} has no number of "
                "sources; set model.latent_dim (e.g. model.latent_dim=5) or use data=nonlinear_ica"
            )
        return int(n_sources)
    if n_sources is not None and latent_dim != n_sources:
        log.warning(
            "vaelab: model.latent_dim=%d but data.n_sources=%d: the model fits %d latents to %d sources; "
            "leave model.latent_dim unset (null) to follow the data",
            latent_dim,
            n_sources,
            latent_dim,
            n_sources,
        )
    return latent_dim


def resolve_prior_mean(prior_mean: Any, data: DataSpec, prior: str) -> bool:
    """``prior_mean``, or ``auto``: a learned prior mean iff the data's segments have means; warns once when
    an explicit false meets segment means under the conditional prior (the only prior it changes)."""
    segment_means = bool(data.ground_truth.get("segment_means", False))
    if prior_mean == "auto":
        return segment_means
    if prior_mean is False and segment_means and prior == "conditional":
        log.warning(
            "vaelab: model.prior_mean=false but data.centred=false: the segments have means that p(z|u) "
            "cannot follow; leave model.prior_mean=auto to follow the data"
        )
    return prior_mean


def _log_normal(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mean, exp(logvar)) (broadcasting). Multiplies by exp(-logvar): a variance that
    overflows to inf (logvar > 88, reached by a prior network kicked by lr 1e-2) gives a zero gradient, where
    dividing by exp(logvar) gives 0 * inf = NaN in backward and ends the run as diverged."""
    return -0.5 * (LOG_2PI + logvar + (z - mean).square() * (-logvar).exp())


# Arguments of exp below about -87 (float32 underflow) leave the CPU kernel's vectorised path: measured 16-38x
# slower per element. Terms this far below the maximum of a log-sum-exp (< 2e-35 of it) change no float32 sum.
LOGSUMEXP_FLOOR = -80.0


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """torch.logsumexp(x, dim) with the shifted terms clamped at LOGSUMEXP_FLOOR: the same float32 values and
    gradients, without the slow path that the minibatch-weighted estimates hit (most pairs of points lie
    hundreds of nats apart under a narrow posterior)."""
    top = x.detach().amax(dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return (x - top).clamp_min(LOGSUMEXP_FLOOR).exp().sum(dim).log() + top.squeeze(dim)


def weighted_objective(
    weights: Sequence[float],
    beta: float,
    z: torch.Tensor,
    posterior: DiagonalGaussian,
    prior: DiagonalGaussian | None,
    recon_nll: torch.Tensor,
    log_q_zx: torch.Tensor,
) -> torch.Tensor:
    """The reference iVAE's a/b/c/d objective (b, c, d the three parts of the KL, scaled by beta) on one sample
    per point, averaged over the batch. z and the posterior/prior parameters (..., B, k); recon_nll and log_q_zx
    = log q(z | x, u) (..., B); returns shape (...). The minibatch-weighted estimates of q(z) and q(z_i) pair
    each point with the points of its own batch (the same leading index): the seed-parallel loss passes
    (S, B, k) for S members at once."""
    a, b, c, d = weights
    b, c, d = beta * b, beta * c, beta * d
    batch_size = z.shape[-2]
    # log q(z_i | x_j, u_j) for every pair (i, j) of a batch: (..., B, B, k)
    pairwise = _log_normal(z.unsqueeze(-2), posterior.mean.unsqueeze(-3), posterior.logvar.unsqueeze(-3))
    log_q_z = logsumexp(pairwise.sum(-1), dim=-1) - math.log(batch_size)
    log_q_zi = (logsumexp(pairwise, dim=-2) - math.log(batch_size)).sum(-1)
    log_p_z = (
        _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        if prior is None
        else _log_normal(z, prior.mean, prior.logvar)
    ).sum(-1)
    objective = -a * recon_nll - b * (log_q_zx - log_q_z) - c * (log_q_z - log_q_zi) - d * (log_q_zi - log_p_z)
    return -objective.mean(-1)


class IdentifiableVAE(LatentVariableModel):
    """x (B, d) and u (B, aux_dim) -> q(z|x[,u]) over latent_dim dims -> x_hat = f(z) (B, d)."""

    def __init__(
        self,
        data: DataSpec,
        latent_dim: int | None = None,
        hidden: Sequence[int] = (100, 100),
        activation: str = "leaky_relu",
        prior: str = "conditional",
        prior_mean: bool | str = "auto",
        encoder_uses_u: bool = True,
        decoder_var: float = 0.1,
        learn_decoder_var: bool = False,
        beta: float = 1.0,
        objective: str = "elbo",
        objective_weights: Sequence[float] = (100.0, 1.0, 0.0, 10.0),
    ):
        super().__init__()
        check_real_valued(data, "ivae (or vae_ica)")
        if latent_dim is not None and latent_dim < 1:
            raise ConfigError(f"model.latent_dim={latent_dim} must be >= 1")
        for key, value, options in (("prior", prior, PRIORS), ("objective", objective, OBJECTIVES)):
            if value not in options:
                raise ConfigError(f"model.{key}={value!r} is unknown; choose one of {list(options)}")
        if not (isinstance(prior_mean, bool) or prior_mean == "auto"):
            raise ConfigError(f"model.prior_mean={prior_mean!r} is unknown; choose one of auto, true, false")
        needs_u = [
            k
            for k, on in (("prior=conditional", prior == "conditional"), ("encoder_uses_u=true", encoder_uses_u))
            if on
        ]
        if needs_u and data.aux_dim == 0:
            raise ConfigError(
                f"model.{' and model.'.join(needs_u)} need an auxiliary variable u, and "
                f"data={data.name} has none; use data=nonlinear_ica (or another dataset with u), or "
                "the plain VAE: model.prior=standard model.encoder_uses_u=false"
            )
        if not decoder_var > 0:
            raise ConfigError(f"model.decoder_var={decoder_var} must be > 0 (e.g. 0.1)")
        if not beta > 0:
            raise ConfigError(f"model.beta={beta} must be > 0 (1 = the ELBO)")
        if len(objective_weights) != 4 or min(objective_weights) < 0:
            raise ConfigError(
                f"model.objective_weights={list(objective_weights)} must be four numbers >= 0 (a, b, c, d)"
            )
        latent_dim = resolve_latent_dim(latent_dim, data)
        prior_mean = resolve_prior_mean(prior_mean, data, prior)
        # the resolved values (what null / auto became)
        self.latent_dim, self.prior_mean = latent_dim, prior_mean and prior == "conditional"
        self.x_shape, self.x_dim = data.x_shape, data.x_dim
        self.encoder_uses_u, self.beta, self.objective = encoder_uses_u, float(beta), objective
        self.objective_weights = tuple(float(w) for w in objective_weights)
        in_dim = self.x_dim + (data.aux_dim if encoder_uses_u else 0)
        self.encoder = mlp(in_dim, hidden, 2 * latent_dim, activation)
        self.decoder = mlp(latent_dim, hidden, self.x_dim, activation)
        self.prior_net = (
            mlp(data.aux_dim, hidden, (2 if self.prior_mean else 1) * latent_dim, activation)
            if prior == "conditional"
            else None
        )
        log_var = torch.tensor(math.log(decoder_var))
        if learn_decoder_var:
            self.log_decoder_var = nn.Parameter(log_var)
        else:
            self.register_buffer("log_decoder_var", log_var)

    def encode(self, batch: Batch) -> DiagonalGaussian:
        inputs = batch["x"].flatten(1)
        if self.encoder_uses_u:
            inputs = torch.cat([inputs, batch["u"]], dim=-1)
        mean, logvar = self.encoder(inputs).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def prior(self, batch: Batch) -> DiagonalGaussian | None:
        if self.prior_net is None:
            return None
        out = self.prior_net(batch["u"])
        if out.shape[-1] == self.latent_dim:
            return DiagonalGaussian(torch.zeros_like(out), out)
        mean, logvar = out.chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.x_shape)

    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        sq_err = (x - decoded).square().flatten(1).sum(-1)
        return 0.5 * (sq_err / self.log_decoder_var.exp() + self.x_dim * (self.log_decoder_var + LOG_2PI))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss`` (what is minimised), ``recon_nll``, ``kl`` (analytic KL(q || p)) and ``neg_elbo``,
        each averaged over the batch (nats per sample)."""
        posterior, prior = self.encode(batch), self.prior(batch)
        z = posterior.rsample()
        recon_nll = self.reconstruction_nll(batch["x"], self.decode(z, batch))
        kl = posterior.kl_per_dim(prior).sum(-1)
        terms = {"recon_nll": recon_nll.mean(), "kl": kl.mean(), "neg_elbo": (recon_nll + kl).mean()}
        if self.objective == "elbo":
            terms["loss"] = terms["recon_nll"] + self.beta * terms["kl"]
        else:
            terms["loss"] = self._weighted_objective(z, posterior, prior, recon_nll)
        return terms

    def _weighted_objective(
        self, z: torch.Tensor, posterior: DiagonalGaussian, prior: DiagonalGaussian | None, recon_nll: torch.Tensor
    ) -> torch.Tensor:
        """The reference's a/b/c/d objective on one sample z (B, k) per point, averaged over the batch. Outside
        training, over chunks of EVAL_CHUNK points (the minibatch-weighted estimates pair every point of a
        chunk: O(B^2); an evaluation batch of 8192 would pair 67M)."""
        log_q_zx = posterior.log_prob(z)
        if self.training or len(z) <= EVAL_CHUNK:  # one estimate over the batch: no per-step slicing
            return weighted_objective(self.objective_weights, self.beta, z, posterior, prior, recon_nll, log_q_zx)
        chunk = EVAL_CHUNK
        total = z.new_zeros(())
        for start in range(0, len(z), chunk):
            rows = slice(start, start + chunk)
            part = weighted_objective(
                self.objective_weights,
                self.beta,
                z[rows],
                DiagonalGaussian(posterior.mean[rows], posterior.logvar[rows]),
                None if prior is None else DiagonalGaussian(prior.mean[rows], prior.logvar[rows]),
                recon_nll[rows],
                log_q_zx[rows],
            )
            total = total + part * len(z[rows])
        return total / len(z)

    def scalars(self) -> dict[str, float]:
        return {"decoder_var": float(self.log_decoder_var.detach().exp())}
