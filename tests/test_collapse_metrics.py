"""Oracle tests of the posterior-collapse diagnostics: MI, AU, importance-sampled NLL, perplexity, probe, PCA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, run_evaluators
from vaelab.diagnostics.iw_nll import ImportanceSampledNLL
from vaelab.diagnostics.mutual_information import MutualInformation
from vaelab.evaluation import collect_posterior
from vaelab.likelihood import _point_noise, importance_sampled_nll
from vaelab.models.base import LatentVariableModel
from vaelab.models.gaussian import LOG_2PI, DiagonalGaussian
from vaelab.models.networks import mlp


def test_mi_of_sharp_distinct_posteriors_is_log_n():
    n, k = 2000, 8
    g = torch.Generator().manual_seed(0)
    q = DiagonalGaussian(torch.randn(n, k, generator=g), torch.full((n, k), math.log(1e-6)))
    mi = metrics.mutual_information(q, generator=g, chunk_size=300)
    assert mi == pytest.approx(math.log(n), abs=1e-3)
    assert mi <= math.log(n) + 1e-9
    per_batch = metrics.mutual_information(q, batch_size=100, generator=g)
    assert per_batch == pytest.approx(math.log(100), abs=1e-3)  # the per-batch estimator's bound


def test_mi_of_identical_posteriors_is_zero_and_of_a_gaussian_channel_is_known():
    n, k = 4000, 1
    g = torch.Generator().manual_seed(1)
    same = DiagonalGaussian(torch.full((n, k), 0.3), torch.full((n, k), -1.0))
    assert metrics.mutual_information(same, generator=g) == pytest.approx(0.0, abs=1e-9)
    # x ~ N(0, 1), q(z|x) = N(x, s2): I(x; z) = 0.5 log(1 + 1 / s2) (the aggregate is N(0, 1 + s2))
    s2 = 0.25
    x = torch.randn(n, k, generator=g)
    mi = metrics.mutual_information(DiagonalGaussian(x, torch.full((n, k), math.log(s2))), generator=g)
    assert mi == pytest.approx(0.5 * math.log(1 + 1 / s2), abs=0.05)


class ConstantDecoderVAE(LatentVariableModel):
    """A Bernoulli-free toy: Gaussian decoder whose mean is a learned constant, so it ignores z."""

    def __init__(self, x_dim: int = 5, latent_dim: int = 4):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp(x_dim, [32], 2 * latent_dim)
        self.center = nn.Parameter(torch.zeros(x_dim))

    def encode(self, batch):
        mean, logvar = self.encoder(batch["x"]).chunk(2, -1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z, batch):
        return self.center.expand(len(z), -1)

    def reconstruction_nll(self, x, decoded):
        return 0.5 * ((x - decoded).square() + LOG_2PI).sum(-1)


def test_decoder_ignoring_z_gives_no_information_and_no_active_units():
    torch.set_num_threads(1)  # restored by conftest
    torch.manual_seed(0)
    x = torch.randn(512, 5) * 2
    model = ConstantDecoderVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        optimizer.zero_grad()
        model.loss({"x": x})["loss"].backward()
        optimizer.step()
    q = collect_posterior(model, {"x": x}, 256)["posterior"]
    assert metrics.active_units(q.mean, 0.01) == 0
    assert metrics.mutual_information(q, generator=torch.Generator().manual_seed(0)) < 0.02


class LinearGaussian(LatentVariableModel):
    """z ~ N(0, I_k), x | z ~ N(W z + b, s2 I_d): log p(x) = log N(x; b, W W^T + s2 I) in closed form. The
    encoder is the exact posterior made worse on purpose (mean shifted, variance inflated)."""

    def __init__(self, d: int = 6, k: int = 3, s2: float = 0.3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent_dim, self.s2 = k, s2
        self.register_buffer("w", torch.randn(d, k, generator=g))
        self.register_buffer("b", torch.randn(d, generator=g))
        precision = torch.eye(k) + self.w.T @ self.w / s2
        self.register_buffer("post_cov", torch.linalg.inv(precision))

    def marginal(self) -> torch.distributions.MultivariateNormal:
        cov = self.w @ self.w.T + self.s2 * torch.eye(len(self.b))
        return torch.distributions.MultivariateNormal(self.b, cov)

    def encode(self, batch):
        mean = (batch["x"] - self.b) @ self.w @ self.post_cov / self.s2
        var = self.post_cov.diagonal().expand_as(mean) * 1.5
        return DiagonalGaussian(mean + 0.1, var.log())

    def decode(self, z, batch):
        return z @ self.w.T + self.b

    def reconstruction_nll(self, x, decoded):
        return 0.5 * ((x - decoded).square() / self.s2 + math.log(self.s2) + LOG_2PI).sum(-1)


def test_iw_nll_of_linear_gaussian_matches_closed_form():
    model = LinearGaussian()
    x = model.marginal().sample((200,))
    nll = importance_sampled_nll(model, {"x": x}, n_samples=500, max_rows=3000)
    exact = -model.marginal().log_prob(x)
    assert nll.shape == (200,)
    assert float((nll - exact).abs().mean()) < 0.05
    assert float(nll.mean() - exact.mean()) == pytest.approx(0.0, abs=0.05)


def test_iw_nll_with_one_sample_is_the_negative_elbo_of_that_sample_and_batch_size_independent():
    model = LinearGaussian(seed=1)
    x = model.marginal().sample((300,))
    nll = importance_sampled_nll(model, {"x": x}, n_samples=1, seed=3)
    q = model.encode({"x": x})
    z = q.mean + _point_noise(range(300), 1, model.latent_dim, 3)[0] * q.var.sqrt()
    by_hand = (
        model.reconstruction_nll(x, model.decode(z, {"x": x})) + q.log_prob(z) + 0.5 * (LOG_2PI + z.square()).sum(-1)
    )
    torch.testing.assert_close(nll, by_hand.double(), atol=1e-4, rtol=1e-5)
    # in expectation: the analytic negative ELBO (recon + closed-form KL)
    neg_elbo = model.reconstruction_nll(x, model.decode(z, {"x": x})) + q.kl_per_dim().sum(-1)
    assert float(nll.mean()) == pytest.approx(float(neg_elbo.mean()), abs=0.15)
    many = importance_sampled_nll(model, {"x": x}, n_samples=20, seed=3, max_rows=7)  # 1 point per call
    torch.testing.assert_close(
        many, importance_sampled_nll(model, {"x": x}, n_samples=20, seed=3), atol=1e-5, rtol=1e-6
    )


def test_perplexity_is_exp_of_nll_per_token():
    assert metrics.perplexity(torch.tensor([2.0, 4.0]), torch.tensor([1, 2])) == pytest.approx(math.exp(2.0))


def test_iw_nll_evaluator_reports_token_counts_when_the_model_counts_tokens():
    class Counted(LinearGaussian):
        def token_count(self, batch):
            return torch.full((len(batch["x"]),), 3.0)

    model = Counted()
    x = model.marginal().sample((50,))
    q = model.encode({"x": x})
    ctx = EvalContext(model, "test", {"x": x}, q, None, None, {}, batch_size=64)
    evaluators = {"iw_nll": ImportanceSampledNLL(samples=10, points=40), "mi": MutualInformation(points=30)}
    evaluation = run_evaluators(evaluators, ctx)
    out = evaluation.results()
    assert set(evaluation.scalars) == {"iw_nll", "iw_ppl", "mi"}  # per-token NLL: metrics.json only
    assert out["iw_ppl"] == pytest.approx(math.exp(out["iw_nll"] / 3), rel=1e-6)
    assert out["iw_nll_per_token"] == pytest.approx(out["iw_nll"] / 3, rel=1e-6)
    assert 0 < out["mi"] <= math.log(30)


def test_probe_separates_separable_labels_and_not_random_ones():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 8, generator=g)
    separable = (x @ torch.randn(8, 4, generator=g)).argmax(-1)
    random_labels = torch.randint(0, 4, (3000,), generator=g)
    assert metrics.probe_accuracy(x[:2000], separable[:2000], x[2000:], separable[2000:]) > 0.95
    assert metrics.probe_accuracy(x[:2000], random_labels[:2000], x[2000:], random_labels[2000:]) < 0.32


def test_pca_recovers_the_dominant_axis_and_label_scatter_is_an_image():
    from vaelab.images import label_scatter

    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g) * torch.tensor([0.1, 5.0, 1.0])
    p = metrics.pca_2d(x)
    assert p.shape == (500, 2)
    assert torch.corrcoef(torch.stack([p[:, 0], x[:, 1]]))[0, 1].abs() > 0.99
    image = label_scatter(p, torch.randint(0, 10, (500,), generator=g))
    assert image.shape[0] == 3 and image.min() >= 0 and image.max() <= 1
