"""Tests of the synthetic manifold data and the in-memory loaders (known shapes, orders and invariants)."""

from __future__ import annotations

import pytest
import torch

from vaelab.data.in_memory import GROUND_TRUTH_KEYS, EpochPermutation, TensorBatchLoader
from vaelab.data.synthetic_manifold import (
    GMM_WEIGHTS,
    SyntheticManifoldData,
    make_manifold_data,
    random_linear,
    sample_gmm_latents,
)
from vaelab.errors import ConfigError


def logit64(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return torch.log(x) - torch.log1p(-x)


# --------------------------------------------------------------------------------------------------------------
# make_manifold_data
# --------------------------------------------------------------------------------------------------------------


def test_make_manifold_data_shapes_and_dtype():
    x, u = make_manifold_data(n=300, manifold_dim=3, ambient_dim=11, seed=0)
    assert x.shape == (300, 11)
    assert u.shape == (300, 3)
    assert x.dtype == torch.float32 and u.dtype == torch.float32


@pytest.mark.parametrize(
    "n, r, d, seed, noise",
    [
        (20000, 2, 20, 1234, 0.0),  # conf/data default
        (125000, 2, 20, 1234, 1.0),  # experiment=manifold_paper
        (2000, 3, 10, 2, 0.0),
    ],
)
def test_make_manifold_data_strictly_inside_unit_interval(n, r, d, seed, noise):
    x, _ = make_manifold_data(n, r, d, seed, latent_noise_std=noise)
    assert torch.isfinite(x).all()
    assert (x > 0).all() and (x < 1).all()


def test_make_manifold_data_strictly_inside_unit_interval_for_other_seeds():
    for seed in (7, 8):
        x, _ = make_manifold_data(20000, 2, 20, seed)
        assert (x > 0).all() and (x < 1).all(), f"data_seed={seed}: {int((x >= 1).sum())} entries equal 1.0"


def test_make_manifold_data_is_deterministic_in_the_seed_only():
    torch.manual_seed(0)
    x1, u1 = make_manifold_data(500, 2, 8, seed=42)
    torch.manual_seed(999)  # the global RNG must not matter
    torch.rand(17)
    x2, u2 = make_manifold_data(500, 2, 8, seed=42)
    assert torch.equal(x1, x2) and torch.equal(u1, u2)
    x3, u3 = make_manifold_data(500, 2, 8, seed=43)
    assert not torch.equal(x1, x3)
    assert not torch.equal(u1, u3)


@pytest.mark.parametrize("r, d, seed", [(2, 20, 1234), (3, 10, 2), (5, 12, 3)])
def test_make_manifold_data_lies_on_an_r_dim_manifold(r, d, seed):
    x, u = make_manifold_data(2000, r, d, seed)
    assert (x < 1).all() and (x > 0).all()
    lx = logit64(x)
    # logit(x) = W u + b is affine in u: the centred matrix has rank r
    sv = torch.linalg.svdvals(lx - lx.mean(0))
    assert (sv[r:] / sv[0]).max() < 1e-4
    assert sv[r - 1] / sv[0] > 1e-2
    # ... and it is affine in the returned u (u is the true latent of x)
    design = torch.cat([u.double(), torch.ones(len(u), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, lx).solution
    residual = (design @ coef - lx).norm() / (lx - lx.mean(0)).norm()
    assert residual < 1e-4
    # W entries follow nn.Linear's init bound 1/sqrt(r)
    assert coef[:r].abs().max() <= 1 / r**0.5 + 1e-4


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_make_manifold_data_replays_the_documented_process(noise):
    # W, b like nn.Linear(r, d), then u ~ GMM, all from one generator seeded with `seed`; x = sigmoid(W u + b)
    x, u = make_manifold_data(700, 3, 9, seed=21, latent_noise_std=noise)
    g = torch.Generator().manual_seed(21)
    w, b = random_linear(3, 9, g)
    u_ref = sample_gmm_latents(700, 3, g, noise)
    assert w.shape == (9, 3) and b.shape == (9,)
    assert torch.equal(u, u_ref)
    torch.testing.assert_close(x, torch.sigmoid(u_ref @ w.T + b))


def test_random_linear_follows_nn_linear_bounds():
    w, b = random_linear(4, 5000, torch.Generator().manual_seed(0))
    assert w.abs().max() <= 0.5 and b.abs().max() <= 0.5  # 1 / sqrt(4)
    assert w.abs().max() > 0.49 and b.abs().max() > 0.49  # ... and fills the interval
    assert abs(float(w.mean())) < 0.01


def _fitted_map(x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Least-squares affine map u -> logit(x): coefficients (r + 1, d) and the relative residual."""
    lx = logit64(x)
    design = torch.cat([u.double(), torch.ones(len(u), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, lx).solution
    return coef, float((design @ coef - lx).norm() / (lx - lx.mean(0)).norm())


@pytest.mark.parametrize("other", [dict(latent_noise_std=1.0), dict(n=3000)])
def test_the_map_depends_on_the_seed_only_not_on_noise_or_size(other):
    x0, u0 = make_manifold_data(1000, 2, 6, seed=5)
    x1, u1 = make_manifold_data(other.get("n", 1000), 2, 6, seed=5, latent_noise_std=other.get("latent_noise_std", 0.0))
    map0, res0 = _fitted_map(x0, u0)
    map1, res1 = _fitted_map(x1, u1)
    assert res0 < 1e-4 and res1 < 1e-4  # exactly on the manifold of the returned u
    torch.testing.assert_close(map0, map1, atol=1e-4, rtol=1e-4)  # and it is the same manifold
    assert not torch.equal(u0, u1[:1000])


# --------------------------------------------------------------------------------------------------------------
# sample_gmm_latents
# --------------------------------------------------------------------------------------------------------------


def gmm_parameters(seed: int, dim: int):
    """The component means/stds that sample_gmm_latents draws first from a generator seeded with `seed`."""
    g = torch.Generator().manual_seed(seed)
    k = len(GMM_WEIGHTS)
    means = torch.randn(k, dim, generator=g)
    stds = torch.randn(k, dim, generator=g).exp()
    return means, stds, g


def test_sample_gmm_latents_shape_and_determinism():
    u1 = sample_gmm_latents(400, 3, torch.Generator().manual_seed(1))
    u2 = sample_gmm_latents(400, 3, torch.Generator().manual_seed(1))
    u3 = sample_gmm_latents(400, 3, torch.Generator().manual_seed(2))
    assert u1.shape == (400, 3)
    assert torch.equal(u1, u2)
    assert not torch.equal(u1, u3)


def test_sample_gmm_latents_component_frequencies_match_normalised_weights():
    n, dim, seed = 200_000, 2, 11
    u = sample_gmm_latents(n, dim, torch.Generator().manual_seed(seed))
    # recover component membership by replaying the generator: means, stds, components, then unit noise
    means, stds, g = gmm_parameters(seed, dim)
    weights = torch.tensor(GMM_WEIGHTS) / sum(GMM_WEIGHTS)
    comp = torch.multinomial(weights, n, replacement=True, generator=g)
    eps = torch.randn(n, dim, generator=g)
    torch.testing.assert_close(u, means[comp] + stds[comp] * eps)
    freq = torch.bincount(comp, minlength=5).double() / n
    se = (weights.double() * (1 - weights.double()) / n).sqrt()
    assert ((freq - weights.double()).abs() < 5 * se).all(), (freq, weights)


def test_sample_gmm_latents_mixture_moments():
    # independent of how components are drawn: mean sum_k p_k mu_k, var sum_k p_k (s_k^2 + mu_k^2) - mean^2
    n, dim, seed = 200_000, 3, 12
    u = sample_gmm_latents(n, dim, torch.Generator().manual_seed(seed)).double()
    means, stds, _ = gmm_parameters(seed, dim)
    means, stds = means.double(), stds.double()
    p = (torch.tensor(GMM_WEIGHTS, dtype=torch.float64) / sum(GMM_WEIGHTS))[:, None]
    mix_mean = (p * means).sum(0)
    mix_var = (p * (stds**2 + means**2)).sum(0) - mix_mean**2
    se_mean = (mix_var / n).sqrt()
    assert ((u.mean(0) - mix_mean).abs() < 5 * se_mean).all()
    centred = u - u.mean(0)
    se_var = ((centred**4).mean(0) - centred.var(0) ** 2).clamp_min(0).div(n).sqrt()
    assert ((u.var(0) - mix_var).abs() < 5 * se_var).all()


def test_sample_gmm_latents_noise_is_added_after_the_gmm_draw():
    n, dim, std = 1000, 2, 0.7
    g_clean, g_noisy = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    clean = sample_gmm_latents(n, dim, g_clean)
    noisy = sample_gmm_latents(n, dim, g_noisy, noise_std=std)
    torch.testing.assert_close(noisy - clean, std * torch.randn(n, dim, generator=g_clean))


# --------------------------------------------------------------------------------------------------------------
# SyntheticManifoldData
# --------------------------------------------------------------------------------------------------------------


def small_dm(**kwargs) -> SyntheticManifoldData:
    defaults = dict(
        manifold_dim=3,
        ambient_dim=10,
        n_samples=1000,
        data_seed=5,
        split=(0.8, 0.1, 0.1),
        batch_size=64,
        eval_batch_size=128,
        batches_per_fetch=4,
    )
    return SyntheticManifoldData(**{**defaults, **kwargs})


def test_synthetic_splits_are_disjoint_parts_of_one_dataset():
    dm = small_dm()
    dm.setup()
    sizes = {name: len(dm.split(name)["x"]) for name in ("train", "val", "test")}
    assert sizes == {"train": 800, "val": 100, "test": 100}
    for name in ("train", "val", "test"):
        split = dm.split(name)
        assert set(split) == {"x", "z_true"}
        assert split["x"].shape == (sizes[name], 10) and split["z_true"].shape == (sizes[name], 3)
    x, u = make_manifold_data(1000, 3, 10, seed=5)
    assert torch.equal(torch.cat([dm.split(s)["x"] for s in ("train", "val", "test")]), x)
    assert torch.equal(torch.cat([dm.split(s)["z_true"] for s in ("train", "val", "test")]), u)
    assert len(torch.unique(x, dim=0)) == 1000  # so the three splits share no row


def test_synthetic_split_sizes_other_fractions():
    dm = small_dm(n_samples=1001, split=(0.6, 0.2, 0.2))
    assert dm.sizes == (601, 200, 200)
    assert [len(dm.split(s)["x"]) for s in ("train", "val", "test")] == [601, 200, 200]


def test_synthetic_spec_and_independence_of_shuffle_seed():
    dm = small_dm()
    assert dm.spec.x_shape == (10,)
    assert dm.spec.x_dim == 10
    assert dm.spec.ground_truth["manifold_dim"] == 3
    other = small_dm(shuffle_seed=77)
    assert torch.equal(dm.split("train")["x"], other.split("train")["x"])
    assert not torch.equal(dm.split("train")["x"], small_dm(data_seed=6).split("train")["x"])


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(manifold_dim=11, ambient_dim=10), r"data\.manifold_dim"),
        (dict(manifold_dim=0), r"data\.manifold_dim"),
        (dict(manifold_dim=-2), r"data\.manifold_dim"),
        (dict(split=(0.8, 0.1, 0.2)), r"data\.split"),
        (dict(split=(0.5, 0.3)), r"data\.split"),
        (dict(split=(1.0, 0.0, 0.0)), r"data\.split"),
        (dict(split=(1.2, -0.1, -0.1)), r"data\.split"),
        (dict(n_samples=5), r"data\.n_samples"),
        (dict(batch_size=0), r"data\.batch_size"),
        (dict(eval_batch_size=0), r"data\.eval_batch_size"),
        (dict(batches_per_fetch=0), r"data\.batches_per_fetch"),
    ],
)
def test_synthetic_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        small_dm(**kwargs)


# --------------------------------------------------------------------------------------------------------------
# EpochPermutation / TensorBatchLoader
# --------------------------------------------------------------------------------------------------------------


def indexed_split(n: int) -> dict[str, torch.Tensor]:
    """Row i of every tensor encodes i, so a batch's rows can be traced back."""
    i = torch.arange(n)
    return {"i": i, "x": torch.stack([i, -i], 1).float(), "img": i.float().view(n, 1, 1, 1).expand(n, 1, 2, 3).clone()}


def minibatches(loader: TensorBatchLoader) -> list[dict[str, torch.Tensor]]:
    """The loader's minibatches in order; stacked fetches (k, bs, ...) are split into k minibatches."""
    out = []
    for fetch in loader:
        if loader.batches_per_fetch is None:
            out.append(fetch)
        else:
            k = len(fetch["i"])
            out += [{name: v[j] for name, v in fetch.items()} for j in range(k)]
    return out


def order(loader: TensorBatchLoader) -> torch.Tensor:
    return torch.cat([b["i"] for b in minibatches(loader)])


def check_rows_consistent(batch: dict[str, torch.Tensor]) -> None:
    i = batch["i"]
    assert torch.equal(batch["x"][:, 0], i.float()) and torch.equal(batch["x"][:, 1], -i.float())
    assert torch.equal(batch["img"], i.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 3))


def test_plain_loader_covers_every_row_once_with_partial_last_batch():
    loader = TensorBatchLoader(indexed_split(23), batch_size=5, shuffle=False, drop_last=False)
    batches = list(loader)
    assert [len(b["i"]) for b in batches] == [5, 5, 5, 5, 3]
    assert batches[0]["x"].shape == (5, 2) and batches[0]["img"].shape == (5, 1, 2, 3)
    assert torch.equal(torch.cat([b["i"] for b in batches]), torch.arange(23))
    for b in batches:
        check_rows_consistent(b)
    assert len(loader) == loader.num_batches() == 5


def test_plain_loader_drop_last_drops_the_tail():
    loader = TensorBatchLoader(indexed_split(23), batch_size=5, shuffle=False, drop_last=True)
    batches = list(loader)
    assert [len(b["i"]) for b in batches] == [5, 5, 5, 5]
    assert torch.equal(torch.cat([b["i"] for b in batches]), torch.arange(20))
    assert len(loader) == loader.num_batches() == 4
    exact = TensorBatchLoader(indexed_split(20), batch_size=5, shuffle=False, drop_last=False)
    assert len(exact) == exact.num_batches() == 4  # no empty tail batch


def test_loader_smaller_than_one_batch():
    keep = TensorBatchLoader(indexed_split(3), batch_size=5, shuffle=True, drop_last=False)
    assert [len(b["i"]) for b in keep] == [3]
    drop = TensorBatchLoader(indexed_split(3), batch_size=5, shuffle=True, drop_last=True)
    assert list(drop) == [] and len(drop) == drop.num_batches() == 0


def test_shuffled_order_is_a_permutation_fixed_by_seed_and_epoch():
    n = 57

    def epoch_order(seed: int, epoch: int, drop_last: bool = False) -> torch.Tensor:
        loader = TensorBatchLoader(indexed_split(n), batch_size=8, shuffle=True, seed=seed, drop_last=drop_last)
        loader.sampler.set_epoch(epoch)
        for b in minibatches(loader):
            check_rows_consistent(b)
        return order(loader)

    e0 = epoch_order(3, 0)
    assert torch.equal(e0.sort().values, torch.arange(n))  # every row exactly once
    assert not torch.equal(e0, torch.arange(n))
    torch.manual_seed(1)
    again = epoch_order(3, 0)
    torch.manual_seed(2)
    torch.rand(5)  # the global RNG must not matter
    assert torch.equal(e0, again) and torch.equal(e0, epoch_order(3, 0))
    assert not torch.equal(e0, epoch_order(3, 1))
    assert not torch.equal(epoch_order(3, 1), epoch_order(3, 2))
    assert not torch.equal(e0, epoch_order(4, 0))
    # drop_last keeps the permutation's prefix
    assert torch.equal(epoch_order(3, 5, drop_last=True), epoch_order(3, 5)[:56])


def test_same_epoch_twice_gives_the_same_order_on_one_loader():
    loader = TensorBatchLoader(indexed_split(40), batch_size=6, shuffle=True, seed=9)
    loader.sampler.set_epoch(4)
    first = order(loader)
    assert torch.equal(order(loader), first)
    loader.sampler.set_epoch(5)
    assert not torch.equal(order(loader), first)
    loader.sampler.set_epoch(4)
    assert torch.equal(order(loader), first)


def test_lightning_sets_the_epoch_through_the_loader_sampler():
    from lightning.fabric.utilities.data import _set_sampler_epoch

    loader = TensorBatchLoader(indexed_split(40), batch_size=6, shuffle=True, seed=9)
    reference = TensorBatchLoader(indexed_split(40), batch_size=6, shuffle=True, seed=9)
    reference.sampler.set_epoch(7)
    _set_sampler_epoch(loader, 7)
    assert loader.sampler.epoch == 7
    assert torch.equal(order(loader), order(reference))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 16])
def test_stacked_fetches_concatenate_to_the_plain_minibatch_sequence(k, drop_last, shuffle):
    n, bs, seed, epoch = 103, 10, 11, 2  # 10 full minibatches and a tail of 3
    plain = TensorBatchLoader(indexed_split(n), bs, shuffle=shuffle, seed=seed, drop_last=drop_last)
    stacked = TensorBatchLoader(
        indexed_split(n), bs, shuffle=shuffle, seed=seed, drop_last=drop_last, batches_per_fetch=k
    )
    plain.sampler.set_epoch(epoch)
    stacked.sampler.set_epoch(epoch)

    fetches = list(stacked)
    for f in fetches:
        kk, b = f["i"].shape
        assert 1 <= kk <= k
        assert b == bs or (kk == 1 and b == n % bs and not drop_last)
        assert f["x"].shape == (kk, b, 2) and f["img"].shape == (kk, b, 1, 2, 3)
    assert [len(f["i"]) for f in fetches][: 10 // k] == [k] * (10 // k)  # full fetches first
    assert len(stacked) == len(fetches)
    assert len(fetches) == -(-10 // k) + (0 if drop_last else 1)

    expected, got = list(plain), minibatches(stacked)
    assert len(got) == len(expected) == stacked.num_batches() == plain.num_batches() == len(plain)
    assert plain.num_batches() == (10 if drop_last else 11)
    for e, g in zip(expected, got, strict=True):
        assert set(e) == set(g)
        for name in e:
            assert torch.equal(e[name], g[name]), name


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_get_disjoint_halves_of_the_same_permutation(shuffle):
    n, seed, epoch = 23, 5, 3
    single = TensorBatchLoader(indexed_split(n), 4, shuffle=shuffle, seed=seed)
    single.sampler.set_epoch(epoch)
    full = order(single)
    ranks = []
    for rank in (0, 1):
        loader = TensorBatchLoader(indexed_split(n), 4, shuffle=shuffle, seed=seed, rank=rank, world_size=2)
        loader.sampler.set_epoch(epoch)
        assert len(loader.sampler) == 11
        assert loader.num_batches() == 3  # 11 rows: 4 + 4 + 3
        for b in minibatches(loader):
            check_rows_consistent(b)
        ranks.append(order(loader))
    assert len(ranks[0]) == len(ranks[1]) == 11
    assert not set(ranks[0].tolist()) & set(ranks[1].tolist())
    assert torch.equal(ranks[0], full[:11]) and torch.equal(ranks[1], full[11:22])


def test_epoch_permutation_plain_order_and_length():
    p = EpochPermutation(10, shuffle=False, seed=0)
    assert p.indices() is None and len(p) == 10
    p2 = EpochPermutation(10, shuffle=False, seed=0, rank=1, world_size=3)
    assert torch.equal(p2.indices(), torch.tensor([3, 4, 5])) and len(p2) == 3


# --------------------------------------------------------------------------------------------------------------
# InMemoryDataModule loaders
# --------------------------------------------------------------------------------------------------------------


def test_train_dataloader_excludes_ground_truth_but_split_keeps_it():
    dm = small_dm(n_samples=1000, batch_size=64, batches_per_fetch=4)  # 800 train rows: 12 full minibatches
    assert "z_true" in GROUND_TRUTH_KEYS
    assert set(dm.split("train")) == {"x", "z_true"}
    loader = dm.train_dataloader()
    fetches = list(loader)
    assert fetches and all(set(f) == {"x"} for f in fetches)
    assert all(f["x"].shape[1:] == (64, 10) for f in fetches)
    assert loader.num_batches() == 12  # drop_last by default
    assert [f["x"].shape[0] for f in fetches] == [4, 4, 4]
    # every training row at most once, all from the training split
    rows = torch.cat([f["x"].reshape(-1, 10) for f in fetches])
    assert len(torch.unique(rows, dim=0)) == 768
    train_rows = {tuple(r) for r in dm.split("train")["x"].tolist()}
    assert all(tuple(r) in train_rows for r in rows.tolist())
    assert set(dm.split("train")) == {"x", "z_true"}  # the split itself is untouched


def test_train_dataloader_order_follows_shuffle_seed():
    first = lambda dm: next(iter(dm.train_dataloader()))["x"]  # noqa: E731
    assert torch.equal(first(small_dm(shuffle_seed=1)), first(small_dm(shuffle_seed=1)))
    assert not torch.equal(first(small_dm(shuffle_seed=1)), first(small_dm(shuffle_seed=2)))


def test_eval_dataloaders_are_plain_and_in_order():
    dm = small_dm(eval_batch_size=30)
    for name, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        batches = list(loader)
        assert [len(b["x"]) for b in batches] == [30, 30, 30, 10]
        assert torch.equal(torch.cat([b["x"] for b in batches]), dm.split(name)["x"])


def test_train_dataloader_batch_larger_than_training_set_raises():
    dm = small_dm(n_samples=100, batch_size=81)  # 80 training rows, drop_last
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        dm.train_dataloader()
    assert small_dm(n_samples=100, batch_size=81, drop_last=False).train_dataloader().num_batches() == 1
