"""The kappa-simple VAE of Zheng et al. (2022): MLP encoder, Gaussian decoder N(f(z), gamma I), prior N(0, I).

gamma is one learnable scalar, gamma = exp(log_gamma) + gamma_floor: the floor keeps log gamma finite as
gamma -> 0 (the objective contains (d - r) log gamma) without clamping (the gradient on log_gamma fades
smoothly once exp(log_gamma) is below the floor); ``gamma_at_floor`` in ``scalars()`` reports when it binds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError
from vaelab.models.base import Batch, LatentVariableModel, check_real_valued
from vaelab.models.gaussian import LOG_2PI, DiagonalGaussian
from vaelab.models.networks import mlp


class LearnableGammaModel(LatentVariableModel):
    """The Gaussian likelihood N(f(z), gamma I) with one learnable scalar gamma, shared by the kappa-simple
    VAE and the CVAEs: subclasses call ``init_gamma`` and set ``x_dim`` (elements per sample)."""

    x_dim: int

    def init_gamma(self, log_gamma_init: float, learn_gamma: bool, gamma_floor: float) -> None:
        if gamma_floor <= 0:
            raise ConfigError(f"model.gamma_floor={gamma_floor} must be > 0 (e.g. 1e-8)")
        self.gamma_floor = gamma_floor
        log_gamma = torch.tensor(float(log_gamma_init))
        if learn_gamma:
            self.log_gamma = nn.Parameter(log_gamma)
        else:
            self.register_buffer("log_gamma", log_gamma)

    @property
    def gamma(self) -> torch.Tensor:
        return self.log_gamma.exp() + self.gamma_floor

    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma
        sq_err = (x - decoded).square().flatten(1).sum(-1)
        return 0.5 * (sq_err / gamma + self.x_dim * (gamma.log() + LOG_2PI))

    def scalars(self) -> dict[str, float]:
        gamma = self.gamma.item()
        return {
            "gamma": gamma,
            "log_gamma": math.log(gamma),
            "gamma_at_floor": float(self.log_gamma.exp().item() <= self.gamma_floor),
        }


class GaussianVAE(LearnableGammaModel):
    """x (B, d) -> q(z|x) = N(mu, diag sigma^2) over latent_dim (kappa) dims -> x_hat = f(z) (B, d)."""

    def __init__(
        self,
        data: DataSpec,
        latent_dim: int = 20,
        encoder_hidden: Sequence[int] = (64,),
        decoder_hidden: Sequence[int] = (64,),
        activation: str = "relu",
        log_gamma_init: float = 0.0,
        learn_gamma: bool = True,
        gamma_floor: float = 1e-8,
    ):
        super().__init__()
        check_real_valued(data, "vae")
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim={latent_dim} must be >= 1")
        manifold_dim = data.ground_truth.get("manifold_dim")
        if manifold_dim is not None and latent_dim < manifold_dim:
            raise ConfigError(
                f"model.latent_dim={latent_dim} is below data.manifold_dim={manifold_dim}: the VAE "
                f"cannot represent the manifold; set model.latent_dim >= {manifold_dim}"
            )
        self.latent_dim = latent_dim
        self.x_shape = data.x_shape
        self.x_dim = data.x_dim
        self.encoder = mlp(self.x_dim, encoder_hidden, 2 * latent_dim, activation)
        self.decoder = mlp(latent_dim, decoder_hidden, self.x_dim, activation)
        self.init_gamma(log_gamma_init, learn_gamma, gamma_floor)

    def encode(self, batch: Batch) -> DiagonalGaussian:
        mean, logvar = self.encoder(batch["x"].flatten(1)).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.x_shape)
