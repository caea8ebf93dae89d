"""Oracle tests for the diagnostics: every metric is checked on a case whose answer is known in advance.

Covers vaelab.metrics (pure functions), vaelab.evaluation.diagnose (the default evaluators) and collect_posterior
on hand-built models with known posteriors, DiagonalGaussian and the GaussianVAE likelihood / gamma floor / config
checks.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from vaelab import metrics
from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError
from vaelab.evaluation import collect_posterior, diagnose
from vaelab.models.base import LatentVariableModel
from vaelab.models.gaussian import LOG_2PI, DiagonalGaussian
from vaelab.models.gaussian_vae import GaussianVAE

ACTIVE_VAR = 1e-4  # encoder variance of an "active" latent dim in the hand-built models


# --------------------------------------------------------------------------------------------------------------
# Hand-built models with known posteriors
# --------------------------------------------------------------------------------------------------------------


def unit_gaussian_nll(x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
    """-log N(x; decoded, I) summed over the feature dims, shape (B,)."""
    return 0.5 * ((x - decoded).square() + LOG_2PI).flatten(1).sum(-1)


class LinearSubspaceModel(LatentVariableModel):
    """Exact encoder/decoder for x = A s (A of shape (d, r)) with kappa >= r latent dims.

    encode: mean = (pinv(A) x, 0, ..., 0), logvar = (log ACTIVE_VAR) * r, then 0 (var 1, the prior's) elsewhere;
    decode: x_hat = A z[:, :r]. ``prior_var`` (k,) optionally makes the prior N(0, diag(prior_var)).
    """

    def __init__(self, a: torch.Tensor, latent_dim: int = 8, prior_var: torch.Tensor | None = None):
        super().__init__()
        self.latent_dim = latent_dim
        self.r = a.shape[1]
        self.a = nn.Parameter(a.clone(), requires_grad=False)
        self.a_pinv = nn.Parameter(torch.linalg.pinv(a), requires_grad=False)
        self.prior_var = prior_var

    def encode(self, batch):
        x = batch["x"]
        mean = torch.zeros(len(x), self.latent_dim)
        mean[:, : self.r] = x @ self.a_pinv.T
        logvar = torch.zeros(len(x), self.latent_dim)
        logvar[:, : self.r] = math.log(ACTIVE_VAR)
        return DiagonalGaussian(mean, logvar)

    def prior(self, batch):
        if self.prior_var is None:
            return None
        return DiagonalGaussian(torch.zeros(1, self.latent_dim), self.prior_var.log().view(1, -1))

    def decode(self, z, batch):
        return z[:, : self.r] @ self.a.T

    def reconstruction_nll(self, x, decoded):
        return unit_gaussian_nll(x, decoded)


class ConstantModel(LatentVariableModel):
    """q(z|x) = N(0, I) for every x (the posterior collapsed onto the prior); decodes to 0 whatever z is."""

    def __init__(self, x_dim: int, latent_dim: int = 8, logvar: float = 0.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.x_dim = x_dim
        self.logvar = logvar
        self.dummy = nn.Parameter(torch.zeros(()))  # collect_posterior reads the device from a parameter

    def encode(self, batch):
        n = len(batch["x"])
        return DiagonalGaussian(torch.zeros(n, self.latent_dim), torch.full((n, self.latent_dim), self.logvar))

    def decode(self, z, batch):
        return torch.zeros(len(z), self.x_dim)

    def reconstruction_nll(self, x, decoded):
        return unit_gaussian_nll(x, decoded)


def linear_subspace_data(n: int = 512, r: int = 3, d: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, r, generator=g)
    s = torch.randn(n, r, generator=g)
    return a, s, s @ a.T


# --------------------------------------------------------------------------------------------------------------
# Active dims (Zheng et al.): mean encoder variance below a threshold
# --------------------------------------------------------------------------------------------------------------


def test_active_dims_counts_known_encoder_variances():
    var = torch.tensor([1e-4, 0.05, 0.5, 1.0, 1.0]).expand(7, 5)  # the same variances for 7 samples
    mean_var = metrics.mean_encoder_variance(var)
    torch.testing.assert_close(mean_var, torch.tensor([1e-4, 0.05, 0.5, 1.0, 1.0]))
    assert metrics.active_dims(mean_var, threshold=0.1) == 2
    assert metrics.active_dims(mean_var) == 2  # default threshold 0.1
    assert metrics.active_dims(mean_var, threshold=0.01) == 1
    assert metrics.active_dims(mean_var, threshold=0.6) == 3
    assert metrics.active_dims(mean_var, threshold=2.0) == 5
    assert metrics.active_dims(mean_var, threshold=1e-5) == 0


def test_mean_encoder_variance_averages_over_samples_not_per_sample():
    # dim 0 is tiny for one sample and 0.3 for the other: the mean 0.15005 is inactive at 0.1, active at 0.2
    var = torch.tensor([[1e-4, 1.0], [0.3, 1.0]])
    mean_var = metrics.mean_encoder_variance(var)
    torch.testing.assert_close(mean_var, torch.tensor([0.15005, 1.0]))
    assert metrics.active_dims(mean_var, threshold=0.1) == 0
    assert metrics.active_dims(mean_var, threshold=0.2) == 1


def test_active_dims_with_learned_prior_uses_variance_ratio():
    var = torch.full((4, 3), 0.5)
    prior_var = torch.tensor([10.0, 1.0, 0.5])  # ratios 0.05 (active), 0.5, 1.0
    assert metrics.active_dims(metrics.mean_encoder_variance(var)) == 0
    ratio = metrics.mean_encoder_variance(var, prior_var)
    torch.testing.assert_close(ratio, torch.tensor([0.05, 0.5, 1.0]))
    assert metrics.active_dims(ratio) == 1
    # per-sample prior variances (N, k): the ratio is averaged over samples
    per_sample_prior = torch.tensor([[10.0, 1.0, 0.5]] * 2 + [[5.0, 1.0, 0.5]] * 2)
    torch.testing.assert_close(metrics.mean_encoder_variance(var, per_sample_prior), torch.tensor([0.075, 0.5, 1.0]))


# --------------------------------------------------------------------------------------------------------------
# Active units (Burda et al.): Cov_x(E[z|x]) above a threshold
# --------------------------------------------------------------------------------------------------------------


def means_with_exact_variances(variances: list[float], n: int = 1000, offset: float = 3.0) -> torch.Tensor:
    """(n, k) posterior means whose unbiased sample variance per dim is exactly variances[j]."""
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)  # sample var n / (n - 1)
    scale = torch.tensor(variances, dtype=torch.float64).mul((n - 1) / n).sqrt()
    return (offset + signs[:, None] * scale).float()  # a common offset must not matter


def test_active_units_counts_dims_with_known_posterior_mean_variance():
    variances = [0.0, 0.005, 0.02, 1.0, 4.0]
    mean = means_with_exact_variances(variances)
    torch.testing.assert_close(metrics.posterior_mean_variance(mean), torch.tensor(variances), atol=1e-5, rtol=1e-4)
    assert metrics.active_units(mean, threshold=0.01) == 3
    assert metrics.active_units(mean) == 3  # default threshold 0.01
    assert metrics.active_units(mean, threshold=0.001) == 4
    assert metrics.active_units(mean, threshold=2.0) == 1
    assert metrics.active_units(mean, threshold=10.0) == 0


def test_posterior_mean_variance_is_unbiased_and_zero_for_one_sample():
    mean = torch.tensor([[0.0, 5.0], [2.0, 5.0]])
    torch.testing.assert_close(metrics.posterior_mean_variance(mean), torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(metrics.posterior_mean_variance(torch.ones(1, 3)), torch.zeros(3))
    assert metrics.active_units(torch.ones(1, 3)) == 0


def test_active_units_ignores_encoder_variance():
    # AU is about how the posterior mean moves with x: large means variance counts even if q is wide
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(2000, 2, generator=g) * torch.tensor([1.0, 0.0])
    assert metrics.active_units(mean) == 1


# --------------------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_non_positive_thresholds_raise_config_error_naming_the_key(bad):
    with pytest.raises(ConfigError, match="threshold"):
        metrics.active_dims(torch.ones(3), threshold=bad)
    with pytest.raises(ConfigError, match="threshold"):
        metrics.active_units(torch.ones(4, 3), threshold=bad)
    with pytest.raises(ConfigError, match=r"callbacks\.diagnostics\.evaluators\.active_units\.threshold"):
        metrics.check_threshold("callbacks.diagnostics.evaluators.active_units.threshold", bad)
    assert metrics.check_threshold("x", 0.5) == 0.5


def test_diagnostics_evaluators_name_their_threshold_keys():
    from vaelab.diagnostics.active_dims import ActiveDims
    from vaelab.diagnostics.active_units import ActiveUnits

    with pytest.raises(ConfigError, match=r"callbacks\.diagnostics\.evaluators\.active_dims\.threshold"):
        ActiveDims(threshold=0.0)
    with pytest.raises(ConfigError, match=r"callbacks\.diagnostics\.evaluators\.active_units\.threshold"):
        ActiveUnits(threshold=-1.0)


def test_active_dims_is_saturated_exactly_when_every_latent_dim_is_active():
    """Known answers: every dim at O(gamma) variance -> no spare dim, AD only a lower bound; one dim at the
    prior's variance -> a spare dim the model left closed, AD is the model's answer."""
    from vaelab.diagnostics.active_dims import ActiveDims
    from vaelab.diagnostics.base import EvalContext
    from vaelab.models.gaussian import DiagonalGaussian

    def evaluate(variances):
        logvar = torch.tensor(variances).log().expand(50, -1)
        q = DiagonalGaussian(torch.randn(50, len(variances)), logvar)
        ctx = EvalContext(torch.nn.Linear(1, 1), "test", {"x": torch.zeros(50, 1)}, q, None, None, {}, 64)
        return ActiveDims().evaluate(ctx)

    all_open = evaluate([1e-4, 2e-4, 1e-3])
    assert all_open.scalars["active_dims"] == 3 and all_open.values["active_dims_saturated"] is True
    one_spare = evaluate([1e-4, 2e-4, 1.0])
    assert one_spare.scalars["active_dims"] == 2 and one_spare.values["active_dims_saturated"] is False


def test_diagnose_rejects_non_positive_thresholds():
    a, _, x = linear_subspace_data(n=16)
    model = LinearSubspaceModel(a)
    with pytest.raises(ConfigError, match="threshold"):
        diagnose(model, {"x": x}, batch_size=8, active_threshold=0.0)
    with pytest.raises(ConfigError, match="threshold"):
        diagnose(model, {"x": x}, batch_size=8, au_threshold=-0.01)


# --------------------------------------------------------------------------------------------------------------
# KL per dim
# --------------------------------------------------------------------------------------------------------------


def test_kl_per_dim_closed_form_hand_cases():
    q = DiagonalGaussian(mean=torch.tensor([[1.0, 0.0, 0.0, 2.0]]), logvar=torch.tensor([[0.0, 1.0, 0.0, -1.0]]))
    e = math.e
    expected = torch.tensor(
        [
            [
                0.5,  # mean 1, var 1
                0.5 * (e - 1.0 - 1.0),  # mean 0, var e
                0.0,  # the prior itself
                0.5 * (1 / e + 4.0 - 1.0 + 1.0),
            ]
        ]
    )  # mean 2, var 1/e
    torch.testing.assert_close(q.kl_per_dim(), expected)
    torch.testing.assert_close(metrics.kl_per_dim(q), expected[0])


def test_kl_per_dim_against_learned_prior_hand_case():
    # KL(N(1, 1) || N(0, 4)) = 0.5 * (1/4 + 1/4 - 1 - log(1/4))
    q = DiagonalGaussian(torch.tensor([[1.0]]), torch.tensor([[0.0]]))
    p = DiagonalGaussian(torch.tensor([[0.0]]), torch.tensor([[math.log(4.0)]]))
    torch.testing.assert_close(q.kl_per_dim(p), torch.tensor([[0.5 * (0.5 - 1.0 + math.log(4.0))]]))


def test_kl_per_dim_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    q = DiagonalGaussian(torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g))
    p = DiagonalGaussian(torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g))
    std = lambda d: (0.5 * d.logvar).exp()  # noqa: E731
    torch.testing.assert_close(q.kl_per_dim(p), kl_divergence(Normal(q.mean, std(q)), Normal(p.mean, std(p))))
    torch.testing.assert_close(q.kl_per_dim(), kl_divergence(Normal(q.mean, std(q)), Normal(0.0, 1.0)))


def test_kl_learned_standard_normal_prior_equals_default_and_self_kl_is_zero():
    g = torch.Generator().manual_seed(2)
    q = DiagonalGaussian(torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g))
    std_normal = DiagonalGaussian(torch.zeros(5, 3), torch.zeros(5, 3))
    torch.testing.assert_close(q.kl_per_dim(std_normal), q.kl_per_dim())
    broadcast_prior = DiagonalGaussian(torch.zeros(1, 3), torch.zeros(1, 3))
    torch.testing.assert_close(metrics.kl_per_dim(q, broadcast_prior), metrics.kl_per_dim(q))
    torch.testing.assert_close(q.kl_per_dim(q), torch.zeros(5, 3))
    assert (q.kl_per_dim() >= 0).all()


def test_metrics_kl_per_dim_averages_over_samples():
    q = DiagonalGaussian(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2, 2))
    torch.testing.assert_close(metrics.kl_per_dim(q), torch.tensor([0.25, 0.0]))


# --------------------------------------------------------------------------------------------------------------
# DiagonalGaussian
# --------------------------------------------------------------------------------------------------------------


def test_log_prob_matches_torch_normal():
    g = torch.Generator().manual_seed(3)
    mean, logvar = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    z = torch.randn(8, 5, generator=g) * 2
    expected = Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    got = DiagonalGaussian(mean, logvar).log_prob(z)
    assert got.shape == (8,)
    torch.testing.assert_close(got, expected)


def test_var_and_rsample_moments_and_gradient():
    mean = torch.tensor([[-1.0, 0.0, 2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(0.25), math.log(4.0)]], requires_grad=True)
    q = DiagonalGaussian(mean.expand(50_000, 3), logvar.expand(50_000, 3))
    torch.testing.assert_close(q.var[0], torch.tensor([1.0, 0.25, 4.0]))
    torch.manual_seed(0)
    z = q.rsample()
    assert z.shape == (50_000, 3)
    torch.testing.assert_close(z.mean(0), torch.tensor([-1.0, 0.0, 2.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0), torch.tensor([1.0, 0.25, 4.0]), atol=0, rtol=0.05)
    z.sum().backward()  # reparameterised: d sum(z) / d mean = number of samples
    torch.testing.assert_close(mean.grad, torch.full((1, 3), 50_000.0))


# --------------------------------------------------------------------------------------------------------------
# recon_mse
# --------------------------------------------------------------------------------------------------------------


def test_recon_mse_known_values():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(10, 6, generator=g)
    assert metrics.recon_mse(x, x.clone()) == 0.0
    assert metrics.recon_mse(x, x + 0.1) == pytest.approx(0.01, rel=1e-4)
    # per element, not per sample: (1 + 4 + 9 + 16) / 4
    assert metrics.recon_mse(torch.zeros(2, 2), torch.tensor([[1.0, 2.0], [3.0, 4.0]])) == pytest.approx(7.5)
    assert isinstance(metrics.recon_mse(x, x), float)


# --------------------------------------------------------------------------------------------------------------
# diagnose / collect_posterior on hand-built models with known answers
# --------------------------------------------------------------------------------------------------------------


def test_diagnose_linear_subspace_encoder_finds_r_active_dims_and_units():
    r, d, kappa = 3, 10, 8
    a, s, x = linear_subspace_data(n=512, r=r, d=d)
    model = LinearSubspaceModel(a, latent_dim=kappa)
    out = diagnose(model, {"x": x}, batch_size=100)  # 512 = 5 * 100 + 12: the last chunk is partial

    assert out["active_dims"] == r
    assert out["active_units"] == r
    torch.testing.assert_close(
        torch.tensor(out["per_dim_encoder_var"]), torch.tensor([ACTIVE_VAR] * r + [1.0] * (kappa - r))
    )
    # the posterior means are the true coordinates s: their variance per dim, zero for the unused dims
    torch.testing.assert_close(
        torch.tensor(out["per_dim_posterior_mean_var"]),
        torch.cat([s.var(0), torch.zeros(kappa - r)]),
        atol=1e-5,
        rtol=1e-4,
    )
    # closed-form KL per dim: 0.5 (var + E[mean^2] - 1 - log var) for the active dims, 0 for the rest
    kl_active = 0.5 * (ACTIVE_VAR + s.square().mean(0) - 1.0 - math.log(ACTIVE_VAR))
    torch.testing.assert_close(
        torch.tensor(out["per_dim_kl"]), torch.cat([kl_active, torch.zeros(kappa - r)]), atol=1e-5, rtol=1e-4
    )
    assert out["kl"] == pytest.approx(float(kl_active.sum()), rel=1e-5)
    # the exact linear decoder reconstructs x from the posterior mean
    assert out["recon_mse"] < 1e-10
    # one-sample ELBO: z = mean + 0.01 eps, so E||x - A z||^2 = ACTIVE_VAR ||A||_F^2
    expected_nll = 0.5 * (d * LOG_2PI + ACTIVE_VAR * float(a.square().sum()))
    assert out["recon_nll"] == pytest.approx(expected_nll, abs=0.01)
    assert out["elbo"] == pytest.approx(-(out["recon_nll"] + out["kl"]), rel=1e-5)
    assert len(out["per_dim_kl"]) == kappa


def test_diagnose_constant_encoder_has_no_active_dims_or_units():
    _, _, x = linear_subspace_data(n=300)
    model = ConstantModel(x_dim=x.shape[1], latent_dim=8)
    out = diagnose(model, {"x": x}, batch_size=64)
    assert out["active_dims"] == 0
    assert out["active_units"] == 0
    assert out["kl"] == 0.0
    assert out["per_dim_kl"] == [0.0] * 8
    assert out["per_dim_encoder_var"] == [1.0] * 8
    assert out["recon_mse"] == pytest.approx(float(x.square().mean()), rel=1e-6)


def test_diagnose_collapsed_but_confident_encoder_is_active_dim_but_not_active_unit():
    # var 1e-4 everywhere but the mean never moves: AD counts it (low variance), AU does not (no signal)
    _, _, x = linear_subspace_data(n=200)
    out = diagnose(ConstantModel(x_dim=x.shape[1], latent_dim=4, logvar=math.log(1e-4)), {"x": x}, batch_size=50)
    assert out["active_dims"] == 4
    assert out["active_units"] == 0


def test_diagnose_learned_prior_uses_variance_ratio_and_prior_kl():
    r, kappa = 3, 8
    a, s, x = linear_subspace_data(n=256, r=r)
    prior_var = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e-3, 10.0])
    model = LinearSubspaceModel(a, latent_dim=kappa, prior_var=prior_var)
    out = diagnose(model, {"x": x}, batch_size=100)
    # ratio: dims 0-2 1e-4 (active), 3-5 1 (inactive), dim 6: 1/1e-3 (inactive), dim 7: 1/10 (inactive at 0.1)
    expected_ratio = torch.tensor([ACTIVE_VAR] * r + [1.0, 1.0, 1.0, 1e3, 0.1])
    torch.testing.assert_close(torch.tensor(out["per_dim_encoder_var"]), expected_ratio)
    assert out["active_dims"] == r
    assert diagnose(model, {"x": x}, batch_size=100, active_threshold=0.2)["active_dims"] == r + 1
    # KL against the learned prior, closed form for the inactive dims (mean 0, var 1)
    kl_inactive = 0.5 * (1.0 / prior_var[r:] - 1.0 + prior_var[r:].log())
    torch.testing.assert_close(torch.tensor(out["per_dim_kl"][r:]), kl_inactive)


def test_diagnose_learned_standard_normal_prior_equals_default_prior():
    a, _, x = linear_subspace_data(n=128)
    default = diagnose(LinearSubspaceModel(a), {"x": x}, batch_size=50)
    learned = diagnose(LinearSubspaceModel(a, prior_var=torch.ones(8)), {"x": x}, batch_size=50)
    for key in ("active_dims", "active_units", "kl", "recon_mse", "elbo"):
        assert learned[key] == pytest.approx(default[key], rel=1e-6), key
    torch.testing.assert_close(torch.tensor(learned["per_dim_kl"]), torch.tensor(default["per_dim_kl"]))


def test_collect_posterior_weights_chunk_averages_by_chunk_size():
    # recon_nll of ConstantModel is deterministic: 0.5 (||x||^2 + d log 2 pi); sorted norms make the chunks differ
    g = torch.Generator().manual_seed(5)
    x = torch.randn(103, 4, generator=g)
    x = x[x.norm(dim=1).argsort()]
    expected = 0.5 * (float(x.square().sum(1).mean()) + 4 * LOG_2PI)
    for batch_size in (10, 50, 103, 1000):
        c = collect_posterior(ConstantModel(x_dim=4), {"x": x}, batch_size=batch_size)
        assert c["loss_terms"]["recon_nll"] == pytest.approx(expected, rel=1e-5), batch_size
        assert c["loss_terms"]["kl"] == 0.0
        assert c["posterior"].mean.shape == (103, 8)
        assert c["prior"] is None
        assert c["x_hat"].shape == (103, 4)


def test_diagnose_independent_of_batch_size_and_leaves_global_rng_and_mode_alone():
    a, _, x = linear_subspace_data(n=200)
    model = LinearSubspaceModel(a)
    model.train()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    small = diagnose(model, {"x": x}, batch_size=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
    large = diagnose(model, {"x": x}, batch_size=500)
    for key in ("active_dims", "active_units", "kl", "recon_mse"):
        assert small[key] == pytest.approx(large[key], rel=1e-5, abs=1e-12), key
    # the one-sample ELBO depends on `seed` only, not on the global RNG state
    torch.manual_seed(456)
    assert diagnose(model, {"x": x}, batch_size=7)["elbo"] == small["elbo"]
    assert diagnose(model, {"x": x}, batch_size=7, seed=1)["elbo"] != small["elbo"]


def test_diagnose_ignores_ground_truth_keys_in_the_split():
    """The true latents only add the identifiability metrics; they never reach the model."""
    a, s, x = linear_subspace_data(n=64)
    with_truth = diagnose(LinearSubspaceModel(a), {"x": x, "z_true": s}, batch_size=20)
    without = diagnose(LinearSubspaceModel(a), {"x": x}, batch_size=20)
    mcc_keys = {"mcc", "mcc_per_source", "mcc_latent_of_source"}
    assert mcc_keys <= set(with_truth) and not mcc_keys & set(without)
    assert {k: v for k, v in with_truth.items() if k not in mcc_keys} == without


# --------------------------------------------------------------------------------------------------------------
# GaussianVAE
# --------------------------------------------------------------------------------------------------------------


def spec(d: int = 6, r: int | None = 2, x_shape: tuple[int, ...] | None = None) -> DataSpec:
    return DataSpec(name="test", x_shape=x_shape or (d,), ground_truth={} if r is None else {"manifold_dim": r})


def test_reconstruction_nll_matches_torch_normal():
    torch.manual_seed(0)
    model = GaussianVAE(spec(6), latent_dim=4, log_gamma_init=0.7)
    g = torch.Generator().manual_seed(6)
    x, decoded = torch.rand(9, 6, generator=g), torch.rand(9, 6, generator=g)
    gamma = math.exp(0.7) + 1e-8
    expected = -Normal(decoded, math.sqrt(gamma)).log_prob(x).sum(-1)
    got = model.reconstruction_nll(x, decoded)
    assert got.shape == (9,)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(model.gamma, torch.tensor(gamma))


def test_reconstruction_nll_multidim_x_shape_and_loss_terms():
    torch.manual_seed(0)
    model = GaussianVAE(spec(x_shape=(2, 3)), latent_dim=3, log_gamma_init=-1.0)
    g = torch.Generator().manual_seed(7)
    x, decoded = torch.rand(5, 2, 3, generator=g), torch.rand(5, 2, 3, generator=g)
    expected = -Normal(decoded, math.sqrt(math.exp(-1.0) + 1e-8)).log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(model.reconstruction_nll(x, decoded), expected)
    assert model.decode(torch.zeros(5, 3), {"x": x}).shape == (5, 2, 3)
    terms = model.loss({"x": x})
    assert set(terms) == {"loss", "recon_nll", "kl"}
    torch.testing.assert_close(terms["loss"], terms["recon_nll"] + terms["kl"])


def test_gamma_floor_binds_for_very_negative_log_gamma():
    torch.manual_seed(0)
    model = GaussianVAE(spec(6), latent_dim=4, log_gamma_init=-40.0, learn_gamma=True, gamma_floor=1e-8)
    floor32 = torch.tensor(1e-8)  # gamma is float32: compare with the float32 floor
    assert model.gamma.detach() >= floor32
    assert model.scalars()["gamma_at_floor"] == 1.0
    assert model.scalars()["gamma"] == pytest.approx(1e-8, rel=1e-6)
    x = torch.rand(4, 6)
    nll = model.reconstruction_nll(x, x + 1e-3).sum()
    assert torch.isfinite(nll)
    nll.backward()
    assert torch.isfinite(model.log_gamma.grad)


def test_gamma_not_at_floor_for_log_gamma_zero():
    model = GaussianVAE(spec(6), latent_dim=4, log_gamma_init=0.0)
    s = model.scalars()
    assert s["gamma_at_floor"] == 0.0
    assert s["gamma"] == pytest.approx(1.0, abs=1e-6)
    assert s["log_gamma"] == pytest.approx(0.0, abs=1e-6)


def test_gamma_at_floor_follows_a_custom_floor():
    assert GaussianVAE(spec(6), latent_dim=4, log_gamma_init=-5.0, gamma_floor=1e-3).scalars()["gamma_at_floor"] == 0.0
    assert GaussianVAE(spec(6), latent_dim=4, log_gamma_init=-10.0, gamma_floor=1e-3).scalars()["gamma_at_floor"] == 1.0


def test_learn_gamma_false_registers_a_buffer():
    fixed = GaussianVAE(spec(6), latent_dim=4, log_gamma_init=-2.0, learn_gamma=False)
    assert "log_gamma" in dict(fixed.named_buffers())
    assert "log_gamma" not in dict(fixed.named_parameters())
    assert all(p is not fixed.log_gamma for p in fixed.parameters())
    assert float(fixed.gamma.detach()) == pytest.approx(math.exp(-2.0) + 1e-8)
    assert "log_gamma" in fixed.state_dict()
    learned = GaussianVAE(spec(6), latent_dim=4, learn_gamma=True)
    assert "log_gamma" in dict(learned.named_parameters())


def test_latent_dim_below_manifold_dim_raises():
    with pytest.raises(ConfigError, match=r"model\.latent_dim"):
        GaussianVAE(spec(6, r=3), latent_dim=2)
    GaussianVAE(spec(6, r=3), latent_dim=3)  # equal is fine
    GaussianVAE(spec(6, r=None), latent_dim=1)  # no ground truth: no constraint beyond >= 1


@pytest.mark.parametrize("latent_dim", [0, -1])
def test_latent_dim_below_one_raises(latent_dim):
    with pytest.raises(ConfigError, match=r"model\.latent_dim"):
        GaussianVAE(spec(6, r=None), latent_dim=latent_dim)


def test_non_positive_gamma_floor_raises():
    with pytest.raises(ConfigError, match=r"model\.gamma_floor"):
        GaussianVAE(spec(6), latent_dim=4, gamma_floor=0.0)


def test_representation_match_is_one_for_the_same_latents_up_to_permutation_sign_and_scale():
    z = torch.randn(400, 3, generator=torch.Generator().manual_seed(1))
    assert metrics.representation_match(z, -5.0 * z[:, [2, 0, 1]]) == pytest.approx(1.0)
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    turned = torch.cat([z[:, :2] @ torch.tensor([[c, -s], [s, c]]), z[:, 2:]], 1)  # two dims rotated by 45 degrees
    assert metrics.representation_match(z, turned) == pytest.approx(c, abs=0.05)
    closed = torch.cat([z[:, :2], torch.zeros(400, 1)], 1)  # a dim that varied no longer does
    assert metrics.representation_match(z, closed) < 0.2
    assert metrics.representation_match(torch.zeros(10, 2), torch.zeros(10, 2)) == 1.0  # nothing varies
