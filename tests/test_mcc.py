"""Oracle tests of the MCC (mean correlation coefficient with Hungarian matching)."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab.diagnostics.mcc import identifiability
from vaelab.errors import ConfigError
from vaelab.metrics import abs_correlation, mcc
from vaelab.models.gaussian import DiagonalGaussian

N, n = 4000, 5


@pytest.fixture
def sources():
    return torch.randn(N, n, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_identical_latents_score_one(sources, method):
    value, details = mcc(sources, sources, method)
    assert value == pytest.approx(1.0, abs=1e-9)
    assert details["latent"] == list(range(n))


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_permuted_sign_flipped_and_scaled_latents_score_one(sources, method):
    perm = [3, 0, 4, 1, 2]
    z = sources[:, perm] * torch.tensor([-1.0, 2.0, -0.5, 3.0, -7.0]) + 4.0
    value, details = mcc(sources, z, method)
    assert value == pytest.approx(1.0, abs=1e-9)
    assert [details["latent"][i] for i in perm] == list(range(n))  # source perm[j] is found in latent j


def test_monotone_componentwise_transform_is_one_for_spearman_and_high_for_pearson(sources):
    z = torch.stack(
        [
            sources[:, 2] ** 3,
            torch.exp(sources[:, 0]),
            -torch.tanh(sources[:, 4]),
            torch.sinh(sources[:, 1]),
            sources[:, 3] + 0.2 * sources[:, 3] ** 3,
        ],
        dim=1,
    )
    spearman, details = mcc(sources, z, "spearman")
    assert spearman == pytest.approx(1.0, abs=1e-9)
    assert details["latent"] == [1, 3, 0, 4, 2]
    pearson = mcc(sources, z, "pearson")[0]
    assert 0.75 < pearson < 0.99  # below 1 (nonlinear) but far above chance


def test_independent_noise_scores_near_zero(sources):
    noise = torch.randn(N, n, generator=torch.Generator().manual_seed(1))
    value = mcc(sources, noise)[0]
    # |corr| of independent columns is ~ |N(0, 1/N)|; the matching picks the largest of n^2 such values per row
    bound = 4 * math.sqrt(math.log(n * n) / N)
    assert 0 <= value < bound


def test_more_latents_than_sources_matches_the_best_n(sources):
    noise = torch.randn(N, 3, generator=torch.Generator().manual_seed(2))
    z = torch.cat([noise[:, :2], -sources[:, [4, 3, 2, 1, 0]], noise[:, 2:]], dim=1)  # (N, 8)
    value, details = mcc(sources, z)
    assert value == pytest.approx(1.0, abs=1e-9)
    assert details["latent"] == [6, 5, 4, 3, 2] and details["abs_corr"].shape == (n, 8)


def test_fewer_latents_than_sources_count_unmatched_sources_as_zero(sources):
    value, details = mcc(sources, sources[:, [1, 3]])
    assert value == pytest.approx(2 / n, abs=1e-9)
    assert details["source"] == [1, 3]
    result = identifiability(sources, DiagonalGaussian(sources[:, [1, 3]], torch.zeros(N, 2)))
    assert result["mcc_latent_of_source"] == [-1, 0, -1, 1, -1]
    assert result["mcc_per_source"][0] == 0.0 and result["mcc_per_source"][1] == pytest.approx(1.0)


def test_constant_latent_correlates_zero(sources):
    corr = abs_correlation(sources, torch.cat([sources[:, :1], torch.ones(N, 1)], dim=1))
    assert corr[0, 0] == pytest.approx(1.0) and (corr[:, 1] == 0).all()


def test_posterior_sample_option_adds_the_posterior_noise(sources):
    q = DiagonalGaussian(sources, torch.zeros(N, n))  # unit posterior variance: corr(s, s + e) = 1/sqrt(2)
    assert identifiability(sources, q)["mcc"] == pytest.approx(1.0)
    assert identifiability(sources, q, sample=True, seed=3)["mcc"] == pytest.approx(1 / math.sqrt(2), abs=0.03)


def test_bad_arguments():
    with pytest.raises(ConfigError, match=r"mcc\.method"):
        mcc(torch.randn(10, 2), torch.randn(10, 2), "kendall")
    with pytest.raises(ValueError, match="equally long"):
        mcc(torch.randn(10, 2), torch.randn(9, 2))


class _IdentityEncoder(torch.nn.Module):
    """q(z | x) = N(x, var I): an encoder that recovers the sources exactly, with a fixed posterior variance."""

    def __init__(self, var: float):
        super().__init__()
        self.logvar = torch.nn.Parameter(torch.tensor(math.log(var)), requires_grad=False)

    def encode(self, batch):
        return DiagonalGaussian(batch["x"], self.logvar.expand_as(batch["x"]))


@pytest.mark.parametrize("var, expected", [(1e-6, 1.0), (1.0, 1 / math.sqrt(2))])
def test_train_sample_scores_the_training_split_with_one_posterior_sample(sources, var, expected):
    from vaelab.diagnostics.base import EvalContext
    from vaelab.diagnostics.mcc import MCC

    train = {"x": sources, "z_true": sources}
    test = {"x": sources[:500], "z_true": sources[:500]}
    model = _IdentityEncoder(var)
    q = model.encode(test)
    ctx = EvalContext(model, "test", test, q, None, None, {}, 1000, seed=7, load_split={"train": train}.__getitem__)
    scalars = MCC(train_sample=True, figures=False).evaluate(ctx).scalars
    assert scalars["mcc"] == pytest.approx(1.0)  # the test split's posterior means
    assert scalars["mcc_train_sample"] == pytest.approx(expected, abs=0.03)
    val = EvalContext(model, "val", test, q, None, None, {}, 1000, load_split={"train": train}.__getitem__)
    assert "mcc_train_sample" not in MCC(train_sample=True).evaluate(val).scalars  # the final evaluation only
