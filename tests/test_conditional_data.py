"""Conditional manifold data (Zheng et al. 2022): shapes, and the ground truth each generator promises (the rank
of the map's Jacobian, the condition as a function of the latents, per-class/group manifold dimensions)."""

from __future__ import annotations

import pytest
import torch

from conftest import SHARED_DATA
from vaelab.data.conditional_manifold import (
    ARMASequenceData,
    ConditionalManifoldData,
    ContinuousGroupsData,
    UnionManifoldData,
    arma_series,
    split_sizes,
    well_conditioned_linear,
)
from vaelab.data.synthetic_manifold import SyntheticManifoldData, embed, random_linear
from vaelab.errors import ConfigError


def jacobian_rank(w: torch.Tensor, b: torch.Tensor, u: torch.Tensor) -> int:
    """Rank of d embed(u) / du at one point u (r,), float64."""
    jac = torch.autograd.functional.jacobian(lambda v: torch.sigmoid(v @ w.double().T + b.double()), u.double())
    return int(torch.linalg.matrix_rank(jac))


def logit_rank(x: torch.Tensor) -> int:
    """Rank of the centred logit(x) (N, d): the dimension of the affine subspace that sigmoid^-1 maps x to
    (rows with x within 1e-3 of 0 or 1 are left out: float32 rounding there blows up in the logit)."""
    x = x[((x > 1e-3) & (x < 1 - 1e-3)).all(1)]
    lx = torch.logit(x.double())
    return int(torch.linalg.matrix_rank(lx - lx.mean(0), rtol=1e-3))


def all_rows(data) -> dict[str, torch.Tensor]:
    splits = data.build()
    return {k: torch.cat([s[k] for s in splits.values()]) for k in splits["train"]}


# --------------------------------------------------------------------------------------------------------------
# c = A u[:, :t]
# --------------------------------------------------------------------------------------------------------------


def test_conditional_manifold_shapes_spec_and_same_x_as_the_unconditional_data():
    data = ConditionalManifoldData(manifold_dim=6, condition_rank=2, ambient_dim=12, n_samples=1000)
    splits = data.build()
    plain = SyntheticManifoldData(manifold_dim=6, ambient_dim=12, n_samples=1000).build()
    for name, split in splits.items():
        n = len(plain[name]["x"])
        assert split["x"].shape == (n, 12) and split["c"].shape == (n, 2) and split["z_true"].shape == (n, 6)
        assert torch.equal(split["x"], plain[name]["x"])  # the condition adds c, nothing else changes
    assert data.spec.condition_dim == 2
    assert data.spec.ground_truth == {"manifold_dim": 6, "condition_rank": 2, "expected_active_dims": 4}


@pytest.mark.parametrize("r, t", [(3, 1), (6, 4), (5, 5)])
def test_linear_condition_is_an_invertible_map_of_the_first_t_latents(r, t):
    rows = all_rows(
        ConditionalManifoldData(manifold_dim=r, condition_rank=t, ambient_dim=10, n_samples=500, data_seed=7)
    )
    a, bias = well_conditioned_linear(t, 10.0, 7 + 1)
    u_head = rows["z_true"][:, :t]
    torch.testing.assert_close(rows["c"], u_head @ a.T + bias)
    recovered = torch.linalg.solve(a.double(), (rows["c"].double() - bias.double()).T).T
    torch.testing.assert_close(recovered, u_head.double(), atol=1e-4, rtol=1e-4)  # c determines u_1..u_t


def test_condition_matrix_is_redrawn_until_its_condition_number_is_bounded():
    def cond(a: torch.Tensor) -> float:
        s = torch.linalg.svdvals(a.double())
        return float(s[0] / s[-1])

    first, _ = random_linear(9, 9, torch.Generator().manual_seed(1235))  # the T1 data at t = 9 (data_seed 1234)
    assert cond(first) > 40
    bounded, _ = well_conditioned_linear(9, 10.0, 1235)
    assert cond(bounded) <= 10.0
    unbounded, _ = well_conditioned_linear(9, None, 1235)
    torch.testing.assert_close(unbounded, first)
    ok, _ = random_linear(3, 3, torch.Generator().manual_seed(1235))  # cond 4.6: a bound it meets changes nothing
    torch.testing.assert_close(well_conditioned_linear(3, 10.0, 1235)[0], ok)
    with pytest.raises(ConfigError, match="data.max_condition_number"):
        well_conditioned_linear(9, 1.0001, 1235)
    with pytest.raises(ConfigError, match="data.max_condition_number=0.5"):
        ConditionalManifoldData(max_condition_number=0.5)


def test_sqrt_abs_condition_is_the_root_of_the_linear_one():
    kw = dict(manifold_dim=4, condition_rank=3, ambient_dim=10, n_samples=500)
    linear = all_rows(ConditionalManifoldData(condition_map="linear", **kw))["c"]
    root = all_rows(ConditionalManifoldData(condition_map="sqrt_abs", **kw))["c"]
    assert (root >= 0).all()
    torch.testing.assert_close(root.square(), linear.abs())


def test_conditional_manifold_map_has_jacobian_rank_r():
    data = ConditionalManifoldData(manifold_dim=5, condition_rank=2, ambient_dim=20, n_samples=500, data_seed=3)
    rows = all_rows(data)
    w, b = random_linear(5, 20, torch.Generator().manual_seed(3))
    torch.testing.assert_close(embed(rows["z_true"], w, b), rows["x"])
    assert jacobian_rank(w, b, rows["z_true"][0]) == 5 == logit_rank(rows["x"])


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"manifold_dim": 3, "condition_rank": 4}, "data.condition_rank=4"),
        ({"manifold_dim": 3, "condition_rank": 0}, "data.condition_rank=0"),
        ({"condition_map": "cube"}, "data.condition_map='cube'"),
        ({"manifold_dim": 30}, "data.manifold_dim=30"),
    ],
)
def test_conditional_manifold_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace("(", r"\(")):
        ConditionalManifoldData(**kwargs)


# --------------------------------------------------------------------------------------------------------------
# Discrete union of manifolds
# --------------------------------------------------------------------------------------------------------------


def test_union_shapes_labels_one_hot_condition_and_ground_truth():
    data = UnionManifoldData(class_manifold_dims=(1, 2, 4), ambient_dim=10, n_per_class=300)
    splits = data.build()
    assert [len(s["x"]) for s in splits.values()] == [720, 90, 90]
    for split in splits.values():
        assert split["x"].shape[1] == 10 and split["z_true"].shape[1] == 4
        assert torch.equal(split["c"], torch.nn.functional.one_hot(split["y"], 3).float())
        assert set(split["y"].tolist()) == {0, 1, 2}  # every split holds every class
    assert data.spec.condition_dim == 3 == data.spec.n_classes
    assert data.spec.ground_truth["expected_active_dims_per_group"] == [1, 2, 4]


def test_union_class_i_lies_on_its_own_r_i_dim_manifold():
    dims = (1, 2, 3, 5)
    rows = all_rows(UnionManifoldData(class_manifold_dims=dims, ambient_dim=12, n_per_class=400, data_seed=11))
    for i, r in enumerate(dims):
        members = rows["y"] == i
        assert members.sum() == 400
        assert logit_rank(rows["x"][members]) == r
        u = rows["z_true"][members]
        assert (u[:, r:] == 0).all() and (u[:, :r] != 0).all()  # z_true zero-padded beyond r_i
        w, b = random_linear(r, 12, torch.Generator().manual_seed(11 + i))  # class i's own map
        torch.testing.assert_close(embed(u[:, :r], w, b), rows["x"][members])
        assert jacobian_rank(w, b, u[0, :r]) == r


def test_union_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.class_manifold_dims"):
        UnionManifoldData(class_manifold_dims=(1, 0))
    with pytest.raises(ConfigError, match="data.n_per_class=0"):
        UnionManifoldData(n_per_class=0)


# --------------------------------------------------------------------------------------------------------------
# Continuous groups
# --------------------------------------------------------------------------------------------------------------


def test_groups_condition_reveals_the_first_t_latents_zero_padded():
    ranks = (2, 4, 6)
    data = ContinuousGroupsData(manifold_dim=8, group_ranks=ranks, ambient_dim=16, n_per_group=300)
    rows = all_rows(data)
    assert rows["c"].shape == (900, 6) and rows["z_true"].shape == (900, 8)
    for i, t in enumerate(ranks):
        members = rows["y"] == i
        assert members.sum() == 300
        assert torch.equal(rows["c"][members, :t], rows["z_true"][members, :t])
        assert (rows["c"][members, t:] == 0).all()
    assert data.spec.ground_truth["expected_active_dims_per_group"] == [6, 4, 2]


def test_groups_share_one_rank_r_map():
    rows = all_rows(ContinuousGroupsData(manifold_dim=12, ambient_dim=20, n_per_group=200, data_seed=5))
    w, b = random_linear(12, 20, torch.Generator().manual_seed(5))
    torch.testing.assert_close(embed(rows["z_true"], w, b), rows["x"])  # one map for every group
    assert jacobian_rank(w, b, rows["z_true"][0]) == 12
    for g in range(5):
        assert logit_rank(rows["x"][rows["y"] == g]) == 12


def test_groups_condition_rank_above_r_is_refused():
    with pytest.raises(ConfigError, match=r"data.group_ranks=\[2, 13\].*t <= r"):
        ContinuousGroupsData(manifold_dim=12, group_ranks=(2, 13))


# --------------------------------------------------------------------------------------------------------------
# ARMA sequences
# --------------------------------------------------------------------------------------------------------------


def test_arma_series_follows_its_recursion():
    ar, ma = [0.5, -0.25, 0.4], [0.65, 0.35]
    u = arma_series(60, 2, ar, ma, 0.5, torch.Generator().manual_seed(0), burn_in=0)
    e = 0.5 * torch.randn(60, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for s in range(3, 60):
        expected = (
            sum(a * u[s - 1 - i] for i, a in enumerate(ar)) + e[s] + sum(m * e[s - 1 - j] for j, m in enumerate(ma))
        )
        torch.testing.assert_close(u[s], expected)


def test_arma_windows_condition_is_the_previous_frames_of_a_rank_n_series_map():
    data = ARMASequenceData(n_series=4, ambient_dim=8, window=4, n_samples=600)
    splits = data.build()
    train = splits["train"]
    assert train["x"].shape == (480, 8) and train["c"].shape == (480, 3, 8) and train["z_true"].shape == (480, 4)
    assert torch.equal(train["c"][1:, -1], train["x"][:-1])  # consecutive windows: c ends with the previous x
    assert torch.equal(train["c"][3:, 0], train["x"][:-3])
    x = torch.cat([s["x"] for s in splits.values()]).double()
    assert int(torch.linalg.matrix_rank(x - x.mean(0), rtol=1e-6)) == 4  # frames on an n_series-dim plane
    assert data.spec.condition_dim == 24 and data.spec.ground_truth["expected_active_dims"] == 4


def test_arma_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.window=1"):
        ARMASequenceData(window=1)
    with pytest.raises(ConfigError, match="data.n_series=30"):
        ARMASequenceData(n_series=30)


def test_split_sizes():
    assert split_sizes(1000, (0.8, 0.1, 0.1)) == (800, 100, 100)
    with pytest.raises(ConfigError, match=r"data.split=\[0.5, 0.1, 0.1\]"):
        split_sizes(1000, (0.5, 0.1, 0.1))
    with pytest.raises(ConfigError, match="too few"):
        split_sizes(5, (0.8, 0.1, 0.1))


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"no shared MNIST files in {SHARED_DATA}")
def test_mnist_condition_is_the_one_hot_label():
    from vaelab.data.mnist import MNISTData

    data = MNISTData(data_dir=str(SHARED_DATA), n_train=500, condition=True)
    assert data.spec.condition_dim == 10
    for split in data.build().values():
        assert torch.equal(split["c"], torch.nn.functional.one_hot(split["y"], 10).float())
    assert MNISTData(data_dir=str(SHARED_DATA)).spec.condition_dim == 0
