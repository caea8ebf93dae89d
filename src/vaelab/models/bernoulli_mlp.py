"""MLP VAE with a Bernoulli decoder (Skip-VAE's MNIST MLP, Dieng et al. 2019), skip connections optional.

Encoder x -> encoder_hidden (ReLU) -> (mean, logvar); decoder Linear(z -> h_1), then for every further hidden
layer Linear(h_{i-1} -> h_i) (+ Linear(z -> h_i) when ``skip``), ReLU, and Linear(h_L -> x) Bernoulli logits.
Reference sizes (conf/model/bernoulli_mlp.yaml ``full``): 784-1024-1024, latent 32.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError
from vaelab.models.base import Batch, LatentVariableModel
from vaelab.models.gaussian import DiagonalGaussian
from vaelab.models.networks import ACTIVATIONS, mlp


def check_bernoulli_data(data: DataSpec, model_key: str) -> None:
    """A Bernoulli likelihood needs x in [0, 1]: raises ConfigError otherwise (token ids, real-valued data or
    a dataset that does not declare its range)."""
    if getattr(data, "vocab_size", 0):
        raise ConfigError(
            f"model={model_key} is an image model (Bernoulli pixels) but data={data.name} is text "
            "(token ids); use a text model"
        )
    if data.x_range is None or data.x_range[0] < 0 or data.x_range[1] > 1:
        raise ConfigError(
            f"model={model_key} has a Bernoulli likelihood, which needs data in [0, 1], but "
            f"data={data.name} has x_range={data.x_range}; use data=mnist (data.binarize=dynamic) "
            "or fashion_mnist, or a Gaussian model (model=vae)"
        )


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x; sigmoid(logits)) summed over everything but the batch dim, shape (B,), nats."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)


class BernoulliMLPVAE(LatentVariableModel):
    """x (B, *x_shape) in [0, 1] -> q(z|x) over latent_dim dims -> Bernoulli logits (B, *x_shape)."""

    def __init__(
        self,
        data: DataSpec,
        latent_dim: int = 32,
        encoder_hidden: Sequence[int] = (1024, 1024),
        decoder_hidden: Sequence[int] = (1024, 1024),
        skip: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        check_bernoulli_data(data, "bernoulli_mlp")
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim={latent_dim} must be >= 1")
        if not decoder_hidden:
            raise ConfigError("model.decoder_hidden is empty; give at least one hidden layer, e.g. [1024, 1024]")
        self.latent_dim, self.x_shape, self.skip = latent_dim, tuple(data.x_shape), skip
        self.encoder = mlp(data.x_dim, encoder_hidden, 2 * latent_dim, activation)
        self.activation = ACTIVATIONS[activation]()
        self.first = nn.Linear(latent_dim, decoder_hidden[0])
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(decoder_hidden))
        self.skips = nn.ModuleList(nn.Linear(latent_dim, b, bias=False) for b in decoder_hidden[1:]) if skip else None
        self.out = nn.Linear(decoder_hidden[-1], data.x_dim)

    def encode(self, batch: Batch) -> DiagonalGaussian:
        mean, logvar = self.encoder(batch["x"].flatten(1)).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        h = self.activation(self.first(z))
        for i, layer in enumerate(self.hidden):
            pre = layer(h)
            if self.skips is not None:
                pre = pre + self.skips[i](z)
            h = self.activation(pre)
        return self.out(h).view(-1, *self.x_shape)

    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return bernoulli_nll(x, decoded)

    def reconstruction(self, decoded: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(decoded)
