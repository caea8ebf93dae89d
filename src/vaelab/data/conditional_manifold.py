"""Conditional manifold data of Zheng et al. (2022): the condition c removes dimensions from the manifold.

Every dataset here keeps the generator of ``synthetic_manifold`` (u ~ 5-component diagonal GMM,
x = sigmoid(W u + b) in R^d) and adds a condition ``c`` and its ground truth, the number of active dims a CVAE
should end with:

- ``ConditionalManifoldData``: c = A u[:, :t] (or |A u[:, :t]|^0.5), t <= r: expected AD = r - t.
- ``UnionManifoldData`` (discrete union): class i has its own r_i-dim manifold (own map and GMM), c = one-hot
  class, ``y`` = class: expected AD of class i = r_i.
- ``ContinuousGroupsData``: one r-dim map, group i reveals t_i coordinates, c = [u_1..u_t_i, 0 ...],
  ``y`` = group: expected AD of group i = r - t_i.
- ``ARMASequenceData``: frames x_s = W u_s + b of 10 ARMA series; the sample is the last frame of a window,
  c = the frames before it.

Splits of the union and group datasets are drawn by a fixed permutation (from ``data_seed``), so every split
holds every class or group in about the same proportion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.signal import lfilter
from torch.nn import functional as F

from vaelab.data.in_memory import InMemoryDataModule, Split
from vaelab.data.spec import DataSpec
from vaelab.data.synthetic_manifold import SyntheticManifoldData, embed, random_linear, sample_gmm_latents
from vaelab.errors import ConfigError

CONDITION_MAPS = ("linear", "sqrt_abs")
SPLITS = ("train", "val", "test")


def split_sizes(n: int, split: Sequence[float]) -> tuple[int, int, int]:
    """(train, val, test) sizes of n samples for three positive fractions summing to 1 (train takes the rest)."""
    fractions = tuple(float(f) for f in split)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"data.split={list(split)} must be three positive fractions summing to 1")
    val, test = (int(n * f) for f in fractions[1:])
    if min(val, test) < 1:
        raise ConfigError(f"data has {n} samples, too few for data.split={list(split)}; raise the sample count")
    return n - val - test, val, test


def shuffled_splits(tensors: dict[str, torch.Tensor], sizes: Sequence[int], seed: int) -> dict[str, Split]:
    """Splits equally long tensors into train/val/test after one permutation drawn from `seed`."""
    order = torch.randperm(len(next(iter(tensors.values()))), generator=torch.Generator().manual_seed(seed))
    parts = {name: v[order].split(list(sizes)) for name, v in tensors.items()}
    return {split: {name: p[i] for name, p in parts.items()} for i, split in enumerate(SPLITS)}


def condition_from_latents(u_head: torch.Tensor, a: torch.Tensor, bias: torch.Tensor, kind: str) -> torch.Tensor:
    """c = u_head A^T + bias (``linear``) or its element-wise |.|^0.5 (``sqrt_abs``); u_head (n, t), A (t, t)."""
    c = u_head @ a.T + bias
    return c if kind == "linear" else c.abs().sqrt()


def well_conditioned_linear(
    dim: int, max_condition_number: float | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A (dim, dim) and a (dim) drawn like nn.Linear from `seed`, redrawn (same generator) until
    cond(A) = s_max / s_min <= max_condition_number (None: the first draw). The first draw is kept when it is
    good enough, so a bound that it meets changes nothing."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(1000):
        a, bias = random_linear(dim, dim, g)
        s = torch.linalg.svdvals(a.double())
        if max_condition_number is None or s[0] <= max_condition_number * s[-1]:
            return a, bias
    raise ConfigError(
        f"no {dim}x{dim} condition matrix with condition number <= {max_condition_number} in "
        "1000 draws; raise data.max_condition_number (or null: no bound)"
    )


class ConditionalManifoldData(SyntheticManifoldData):
    """x on an r-dim manifold in R^d (exactly as data=synthetic_manifold with the same keys) with a condition
    c (B, t) = A u[:, :t] + a (``condition_map=linear``) or |A u[:, :t] + a|^0.5 (``sqrt_abs``), A (t x t) and
    a drawn like nn.Linear from ``data_seed + 1``, redrawn until cond(A) <= ``max_condition_number``. A linear c
    determines u_1..u_t, so a CVAE needs r - t dims (ground truth ``expected_active_dims``); ``sqrt_abs`` loses
    their signs. The bound matters: a direction of u that A shrinks to a few percent is, for a fitted network,
    barely in c, and a CVAE encodes it in z as well (data_seed 1234, t = 9: cond 50, AD 2 instead of 1)."""

    def __init__(
        self,
        manifold_dim: int = 10,
        condition_rank: int = 5,
        condition_map: str = "linear",
        ambient_dim: int = 20,
        n_samples: int = 20000,
        data_seed: int = 1234,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        latent_noise_std: float = 0.0,
        max_condition_number: float | None = 10.0,
        **loader_kwargs,
    ):
        super().__init__(manifold_dim, ambient_dim, n_samples, data_seed, split, latent_noise_std, **loader_kwargs)
        if max_condition_number is not None and not max_condition_number >= 1:
            raise ConfigError(f"data.max_condition_number={max_condition_number} must be >= 1 (or null: no bound)")
        if not 1 <= condition_rank <= manifold_dim:
            raise ConfigError(
                f"data.condition_rank={condition_rank} must be in 1..data.manifold_dim="
                f"{manifold_dim}: the condition reveals t of the r manifold coordinates (t <= r)"
            )
        if condition_map not in CONDITION_MAPS:
            raise ConfigError(f"data.condition_map={condition_map!r} is not one of {list(CONDITION_MAPS)}")
        self.condition_rank, self.condition_map = condition_rank, condition_map
        self.max_condition_number = max_condition_number
        self.spec = DataSpec(
            name="conditional_manifold",
            x_shape=(ambient_dim,),
            condition_dim=condition_rank,
            ground_truth={
                "manifold_dim": manifold_dim,
                "condition_rank": condition_rank,
                "expected_active_dims": manifold_dim - condition_rank,
            },
        )

    def build(self) -> dict[str, Split]:
        splits = super().build()
        a, bias = well_conditioned_linear(self.condition_rank, self.max_condition_number, self.data_seed + 1)
        for part in splits.values():
            part["c"] = condition_from_latents(part["z_true"][:, : self.condition_rank], a, bias, self.condition_map)
        return splits


class UnionManifoldData(InMemoryDataModule):
    """A discrete union of manifolds in R^d: class i has an r_i-dim manifold (``class_manifold_dims``), its own
    map and GMM (from ``data_seed + i``), ``n_per_class`` samples. Batches carry x (B, d), c (B, k) one-hot,
    y (B,) the class, z_true (B, max r_i) zero-padded; ground truth ``expected_active_dims_per_group`` = r_i."""

    def __init__(
        self,
        class_manifold_dims: Sequence[int] = (1, 2, 3, 4, 5),
        ambient_dim: int = 20,
        n_per_class: int = 4000,
        data_seed: int = 1234,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        latent_noise_std: float = 0.0,
        **loader_kwargs,
    ):
        super().__init__(**loader_kwargs)
        dims = [int(r) for r in class_manifold_dims]
        if not dims or min(dims) < 1 or max(dims) > ambient_dim:
            raise ConfigError(
                f"data.class_manifold_dims={dims} must be a non-empty list of dims in 1..data.ambient_dim={ambient_dim}"
            )
        if n_per_class < 1:
            raise ConfigError(f"data.n_per_class={n_per_class} must be >= 1")
        self.sizes = split_sizes(n_per_class * len(dims), split)
        self.dims, self.ambient_dim, self.n_per_class = dims, ambient_dim, n_per_class
        self.data_seed, self.latent_noise_std = data_seed, latent_noise_std
        self.spec = DataSpec(
            name="union_manifold",
            x_shape=(ambient_dim,),
            condition_dim=len(dims),
            n_classes=len(dims),
            ground_truth={
                "manifold_dim": max(dims),
                "class_manifold_dims": dims,
                "expected_active_dims_per_group": dims,
            },
        )

    def build(self) -> dict[str, Split]:
        xs, us = [], []
        for i, r in enumerate(self.dims):
            g = torch.Generator().manual_seed(self.data_seed + i)
            w, b = random_linear(r, self.ambient_dim, g)
            u = sample_gmm_latents(self.n_per_class, r, g, self.latent_noise_std)
            xs.append(embed(u, w, b))
            us.append(torch.nn.functional.pad(u, (0, max(self.dims) - r)))
        y = torch.arange(len(self.dims)).repeat_interleave(self.n_per_class)
        c = torch.nn.functional.one_hot(y, len(self.dims)).float()
        return shuffled_splits(
            {"x": torch.cat(xs), "c": c, "y": y, "z_true": torch.cat(us)}, self.sizes, self.data_seed
        )


class ContinuousGroupsData(InMemoryDataModule):
    """One r-dim manifold map (``manifold_dim``, default 12) shared by groups; group i (``group_ranks`` t_i) has
    its own GMM and condition c = [u_1..u_t_i, 0 ... 0] (B, max t). Batches carry x, c, y (the group index) and
    z_true; ground truth ``expected_active_dims_per_group`` = r - t_i."""

    def __init__(
        self,
        manifold_dim: int = 12,
        group_ranks: Sequence[int] = (2, 4, 6, 8, 10),
        ambient_dim: int = 20,
        n_per_group: int = 4000,
        data_seed: int = 1234,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        latent_noise_std: float = 0.0,
        **loader_kwargs,
    ):
        super().__init__(**loader_kwargs)
        ranks = [int(t) for t in group_ranks]
        if not 1 <= manifold_dim <= ambient_dim:
            raise ConfigError(f"data.manifold_dim={manifold_dim} must be in 1..data.ambient_dim={ambient_dim}")
        if not ranks or min(ranks) < 1 or max(ranks) > manifold_dim:
            raise ConfigError(
                f"data.group_ranks={ranks} must be a non-empty list of condition ranks t in "
                f"1..data.manifold_dim={manifold_dim} (t <= r)"
            )
        if n_per_group < 1:
            raise ConfigError(f"data.n_per_group={n_per_group} must be >= 1")
        self.sizes = split_sizes(n_per_group * len(ranks), split)
        self.manifold_dim, self.ranks, self.ambient_dim = manifold_dim, ranks, ambient_dim
        self.n_per_group, self.data_seed, self.latent_noise_std = n_per_group, data_seed, latent_noise_std
        self.spec = DataSpec(
            name="continuous_groups",
            x_shape=(ambient_dim,),
            condition_dim=max(ranks),
            n_classes=len(ranks),
            ground_truth={
                "manifold_dim": manifold_dim,
                "group_ranks": ranks,
                "expected_active_dims_per_group": [manifold_dim - t for t in ranks],
            },
        )

    def build(self) -> dict[str, Split]:
        g = torch.Generator().manual_seed(self.data_seed)
        w, b = random_linear(self.manifold_dim, self.ambient_dim, g)
        us = [sample_gmm_latents(self.n_per_group, self.manifold_dim, g, self.latent_noise_std) for _ in self.ranks]
        u = torch.cat(us)
        width = max(self.ranks)
        c = torch.cat([F.pad(ui[:, :t], (0, width - t)) for ui, t in zip(us, self.ranks, strict=True)])
        y = torch.arange(len(self.ranks)).repeat_interleave(self.n_per_group)
        return shuffled_splits({"x": embed(u, w, b), "c": c, "y": y, "z_true": u}, self.sizes, self.data_seed)


def arma_series(
    n: int,
    n_series: int,
    ar: Sequence[float],
    ma: Sequence[float],
    noise_std: float,
    generator: torch.Generator,
    burn_in: int = 200,
) -> torch.Tensor:
    """(n, n_series) independent ARMA series, float64: u_s = sum_i ar[i] u_{s-1-i} + e_s + sum_j ma[j] e_{s-1-j},
    e ~ N(0, noise_std^2), after `burn_in` discarded steps from zero."""
    e = noise_std * torch.randn(n + burn_in, n_series, generator=generator, dtype=torch.float64)
    u = lfilter([1.0, *ma], [1.0, *(-a for a in ar)], e.numpy(), axis=0)  # the recursion above, in C
    return torch.from_numpy(u[burn_in:].copy())


class ARMASequenceData(InMemoryDataModule):
    """Sequences (reference: ``sync_sequence.py``): ``n_series`` ARMA series u (the defaults are the reference's
    ar (.5, -.25, .4), ma (.65, .35), noise std .5), frames W u_s + b in R^d (W drawn like nn.Linear), windows
    of ``window`` consecutive frames. A sample is the last frame x (B, d) with c (B, window - 1, d) the frames
    before it; z_true is its u_s (B, n_series). The past does not determine the new innovations, so the
    expected AD is n_series. Rows are split in time order (train first), so the splits share no frame."""

    def __init__(
        self,
        n_series: int = 10,
        ambient_dim: int = 20,
        window: int = 6,
        n_samples: int = 20000,
        ar: Sequence[float] = (0.5, -0.25, 0.4),
        ma: Sequence[float] = (0.65, 0.35),
        noise_std: float = 0.5,
        data_seed: int = 1234,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        **loader_kwargs,
    ):
        super().__init__(**loader_kwargs)
        if not 1 <= n_series <= ambient_dim:
            raise ConfigError(f"data.n_series={n_series} must be in 1..data.ambient_dim={ambient_dim}")
        if window < 2:
            raise ConfigError(f"data.window={window} must be >= 2 (the last frame and at least one before it)")
        self.sizes = split_sizes(n_samples, split)
        self.n_series, self.ambient_dim, self.window, self.n_samples = n_series, ambient_dim, window, n_samples
        self.ar, self.ma, self.noise_std, self.data_seed = list(ar), list(ma), noise_std, data_seed
        self.spec = DataSpec(
            name="arma_sequence",
            x_shape=(ambient_dim,),
            condition_dim=(window - 1) * ambient_dim,
            ground_truth={"manifold_dim": n_series, "expected_active_dims": n_series, "condition_frames": window - 1},
        )

    def build(self) -> dict[str, Split]:
        g = torch.Generator().manual_seed(self.data_seed)
        w, b = random_linear(self.n_series, self.ambient_dim, g)
        u = arma_series(self.n_samples + self.window - 1, self.n_series, self.ar, self.ma, self.noise_std, g)
        frames = (u @ w.double().T + b.double()).float()
        windows = frames.unfold(0, self.window, 1).transpose(1, 2)  # (n_samples, window, d)
        tensors = {
            "x": windows[:, -1].contiguous(),
            "c": windows[:, :-1].contiguous(),
            "z_true": u[self.window - 1 :].float(),
        }
        parts = {name: v.split(list(self.sizes)) for name, v in tensors.items()}
        return {split: {name: p[i] for name, p in parts.items()} for i, split in enumerate(SPLITS)}
