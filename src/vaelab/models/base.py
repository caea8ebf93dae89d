"""The interface shared by every vaelab model (one training module trains them all).

A batch is a dict of tensors: ``x`` (data, batch-first) and, depending on the dataset, ``c`` (condition),
``u`` (auxiliary variable), ``y`` (label) and ``z_true`` (true latents, never seen by the model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from vaelab.errors import ConfigError
from vaelab.models.gaussian import DiagonalGaussian

Batch = dict[str, torch.Tensor]


class LatentVariableModel(nn.Module, ABC):
    """encode -> q(z|x), prior -> p(z), decode -> likelihood parameters, loss -> named terms (nats/sample)."""

    latent_dim: int

    @abstractmethod
    def encode(self, batch: Batch) -> DiagonalGaussian:
        """Posterior q(z | batch), parameters of shape (B, latent_dim)."""

    def prior(self, batch: Batch) -> DiagonalGaussian | None:
        """Prior p(z | batch); None means the standard normal N(0, I)."""
        return None

    @abstractmethod
    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Likelihood parameters for x given z of shape (B, latent_dim), e.g. the mean, shape like x."""

    @abstractmethod
    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) in nats, shape (B,)."""

    def reconstruction(self, decoded: torch.Tensor) -> torch.Tensor:
        """The point reconstruction (expected x) from decode's output; the mean parameter by default."""
        return decoded

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Negative ELBO with one reparameterised sample, averaged over the batch (nats per sample).

        Returns ``loss`` (= recon_nll + kl, what is minimised), ``recon_nll`` and ``kl``.
        """
        posterior = self.encode(batch)
        z = posterior.rsample()
        recon_nll = self.reconstruction_nll(batch["x"], self.decode(z, batch)).mean()
        kl = posterior.kl_per_dim(self.prior(batch)).sum(-1).mean()
        return {"loss": recon_nll + kl, "recon_nll": recon_nll, "kl": kl}

    def scalars(self) -> dict[str, float]:
        """Model-level quantities worth logging (e.g. the decoder variance gamma); none by default."""
        return {}

    def token_count(self, batch: Batch) -> torch.Tensor | None:
        """Tokens scored by ``reconstruction_nll`` per sequence, shape (B,), for text models (perplexity =
        exp(total NLL / total tokens)); None (the default) for data that is not counted in tokens."""
        return None


def check_real_valued(data, model_key: str) -> None:
    """Models of real-valued x (MLPs into a Gaussian likelihood) cannot read token ids: ConfigError when `data`
    (a DataSpec) is text, so the run fails before training rather than at the first step."""
    if data.vocab_size:
        raise ConfigError(
            f"model={model_key} models real-valued x but data={data.name} is text (token ids); use model=text_vae"
        )
