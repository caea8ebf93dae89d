"""Building blocks shared by the models."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import nn

from vaelab.errors import ConfigError


class XTanh(nn.Module):
    """tanh(x) + 0.1 x: a tanh that never saturates (the iVAE reference's activation)."""

    def forward(self, x):
        return x.tanh() + 0.1 * x


ACTIVATIONS = {
    "relu": nn.ReLU,
    "prelu": nn.PReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "xtanh": XTanh,
}


def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int, activation: str = "relu") -> nn.Sequential:
    """Linear layers in_dim -> *hidden_dims -> out_dim with `activation` between them (none after the last)."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={activation!r} is unknown; choose one of {sorted(ACTIVATIONS)}")
    dims = [in_dim, *hidden_dims]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)
