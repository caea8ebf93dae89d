"""Data on an r-dimensional manifold in R^d (Zheng et al. 2022): u ~ 5-component diagonal GMM in R^r,
x = sigmoid(W u + b) with W (d x r), b (d) drawn like PyTorch's nn.Linear default init."""

from __future__ import annotations

import math

import torch

from vaelab.data.in_memory import InMemoryDataModule, Split
from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError

GMM_WEIGHTS = (0.2, 0.3, 0.5, 0.3, 0.2)


def sample_gmm_latents(n: int, dim: int, generator: torch.Generator, noise_std: float = 0.0) -> torch.Tensor:
    """n draws (n, dim) from a diagonal GMM with weights GMM_WEIGHTS (normalised), component means N(0, 1)
    and component stds exp(N(0, 1)); ``noise_std`` > 0 adds N(0, noise_std^2) (the reference code uses 1)."""
    k = len(GMM_WEIGHTS)
    means = torch.randn(k, dim, generator=generator)
    stds = torch.randn(k, dim, generator=generator).exp()
    weights = torch.tensor(GMM_WEIGHTS)
    comp = torch.multinomial(weights / weights.sum(), n, replacement=True, generator=generator)
    u = means[comp] + stds[comp] * torch.randn(n, dim, generator=generator)
    if noise_std > 0:
        u = u + noise_std * torch.randn(n, dim, generator=generator)
    return u


def random_linear(in_dim: int, out_dim: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """W (out_dim, in_dim) and b (out_dim) ~ U(-1/sqrt(in_dim), 1/sqrt(in_dim)), as nn.Linear initialises."""
    bound = 1.0 / math.sqrt(in_dim)
    w = (torch.rand(out_dim, in_dim, generator=generator) * 2 - 1) * bound
    b = (torch.rand(out_dim, generator=generator) * 2 - 1) * bound
    return w, b


def make_manifold_data(
    n: int, manifold_dim: int, ambient_dim: int, seed: int, latent_noise_std: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns x (n, ambient_dim) in (0, 1) and the true latents u (n, manifold_dim); float32, deterministic.

    The map is evaluated in float64; float32 rounds sigmoid(a) to exactly 1 for a > ~17 (the GMM reaches
    |u| ~ 36), so x is clamped to the largest float32 below 1 (an error under 6e-8) to stay in the open interval.
    """
    g = torch.Generator().manual_seed(seed)
    w, b = random_linear(manifold_dim, ambient_dim, g)  # first: the map (and the GMM) depend on `seed` only,
    u = sample_gmm_latents(n, manifold_dim, g, latent_noise_std)  # not on n or the noise drawn after them
    return embed(u, w, b), u


def embed(u: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x = sigmoid(u W^T + b), float32 (n, d) from u (n, r), W (d, r), b (d); evaluated in float64 and clamped
    below 1 (see make_manifold_data)."""
    x = torch.sigmoid(u.double() @ w.double().T + b.double()).float()
    return x.clamp_(max=1 - 2**-24)


class SyntheticManifoldData(InMemoryDataModule):
    """x on an r-dim manifold in R^d, split train/val/test; batches carry ``x`` and ``z_true`` (the u)."""

    def __init__(
        self,
        manifold_dim: int = 2,
        ambient_dim: int = 20,
        n_samples: int = 20000,
        data_seed: int = 1234,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        latent_noise_std: float = 0.0,
        **loader_kwargs,
    ):
        super().__init__(**loader_kwargs)
        if manifold_dim < 1:
            raise ConfigError(f"data.manifold_dim={manifold_dim} must be >= 1")
        if manifold_dim > ambient_dim:
            raise ConfigError(
                f"data.manifold_dim={manifold_dim} exceeds data.ambient_dim={ambient_dim}: "
                "a manifold cannot have more dimensions than the space it lies in"
            )
        fractions = tuple(float(f) for f in split)
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ConfigError(f"data.split={list(split)} must be three positive fractions summing to 1")
        sizes = [int(n_samples * f) for f in fractions[1:]]  # val, test; train takes the rest
        if min(sizes) < 1:
            raise ConfigError(f"data.n_samples={n_samples} is too small for data.split={list(split)}")
        self.sizes = (n_samples - sum(sizes), *sizes)
        self.manifold_dim, self.ambient_dim = manifold_dim, ambient_dim
        self.n_samples, self.data_seed, self.latent_noise_std = n_samples, data_seed, latent_noise_std
        self.spec = DataSpec(
            name="synthetic_manifold", x_shape=(ambient_dim,), ground_truth={"manifold_dim": manifold_dim}
        )

    def build(self) -> dict[str, Split]:
        x, u = make_manifold_data(
            self.n_samples, self.manifold_dim, self.ambient_dim, self.data_seed, self.latent_noise_std
        )
        names = ("train", "val", "test")
        return {
            name: {"x": xs, "z_true": us}
            for name, xs, us in zip(names, x.split(self.sizes), u.split(self.sizes), strict=True)
        }
