"""Diagonal Gaussians as plain tensors: the posterior and prior parameters every model passes around."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)


@dataclass
class DiagonalGaussian:
    """N(mean, diag(exp(logvar))); both tensors of shape (batch, latent_dim)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def var(self) -> torch.Tensor:
        return self.logvar.exp()

    def rsample(self) -> torch.Tensor:
        """One reparameterised sample, shape (batch, latent_dim)."""
        return self.mean + torch.randn_like(self.mean) * (0.5 * self.logvar).exp()

    def kl_per_dim(self, prior: DiagonalGaussian | None = None) -> torch.Tensor:
        """KL(self || prior) per latent dim in nats, shape (batch, latent_dim); prior None = N(0, I). Squared
        distances are multiplied by exp(-logvar), never divided by exp(logvar): a variance that overflows to inf
        then gives a zero gradient, where the division's backward gives 0 * inf = NaN."""
        if prior is None:
            return 0.5 * (self.logvar.exp() + self.mean.square() - 1.0 - self.logvar)
        var_ratio = (self.logvar - prior.logvar).exp()
        return 0.5 * (
            var_ratio + (self.mean - prior.mean).square() * (-prior.logvar).exp() - 1.0 - (self.logvar - prior.logvar)
        )

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mean, var) summed over the last dim, shape (batch,)."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mean).square() * (-self.logvar).exp()).sum(-1)
