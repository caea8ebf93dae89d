"""Oracle tests of the label probes (vaelab.probes, the probe evaluator) and of the collapse metrics that separate
models with large KL (issue 19): separable clusters -> 100%, label-independent features -> chance; MI of
well-separated posteriors -> log N and saturated, of an encoder that ignores x -> 0; per-dimension KL of known
posteriors; active units at two thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab import metrics, probes
from vaelab.diagnostics.active_units import ActiveUnits
from vaelab.diagnostics.base import EvalContext
from vaelab.diagnostics.kl import KL
from vaelab.diagnostics.mutual_information import MutualInformation
from vaelab.diagnostics.probe import LabelProbe
from vaelab.errors import ConfigError
from vaelab.models.gaussian import DiagonalGaussian

CLASSES = 10


@pytest.fixture(autouse=True)
def one_thread():
    """Small matrix products run fastest (and steadiest on a shared machine) on one thread; conftest restores."""
    torch.set_num_threads(1)


def clusters(n: int, k: int = 8, spread: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around CLASSES far-apart centres (distance >> spread): labels recoverable exactly."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, k, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.arange(n) % CLASSES
    return centres[labels] + spread * torch.randn(n, k, generator=g), labels


def noise(n: int, k: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Features independent of the labels: nothing to learn, chance is 1 / CLASSES."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


PROBES = {
    "linear": lambda a, b, c, d: probes.linear_probe(a, b, c, d),
    "knn": lambda a, b, c, d: probes.knn_probe(a, b, c, d, seed=0),
    "mlp": lambda a, b, c, d: probes.mlp_probe(a, b, c, d, hidden=32, max_epochs=30, seed=0),
}


@pytest.mark.parametrize("name", list(PROBES))
def test_probe_is_perfect_on_separable_clusters_and_at_chance_on_label_free_features(name):
    x, y = clusters(1200)
    xt, yt = clusters(600, seed=5)
    assert PROBES[name](x, y, xt, yt).accuracy == 1.0
    x, y = noise(2000)
    xt, yt = noise(2000, seed=2)
    assert PROBES[name](x, y, xt, yt).accuracy == pytest.approx(1 / CLASSES, abs=0.035)  # ~5 sd of 2000 draws


def test_holdout_cuts_a_disjoint_seeded_validation_part():
    fit, val = probes.holdout(100, 0.1, seed=3)
    assert len(val) == 10 and len(fit) == 90 and set(fit.tolist()).isdisjoint(val.tolist())
    assert sorted(fit.tolist() + val.tolist()) == list(range(100))
    assert torch.equal(val, probes.holdout(100, 0.1, seed=3)[1]) and not torch.equal(val, probes.holdout(100, 0.1)[1])
    with pytest.raises(ValueError):
        probes.holdout(1, 0.5)


def test_knn_neighbours_are_the_nearest_in_any_chunking_and_ties_go_to_nearer_neighbours():
    reference = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    queries = torch.tensor([[0.1], [10.4], [1.6]])
    whole = probes.nearest_labels(queries, reference, labels, 3)
    assert whole.tolist() == [[0, 0, 1], [1, 1, 1], [1, 0, 0]]
    assert torch.equal(probes.nearest_labels(queries, reference, labels, 3, chunk_elements=5), whole)  # 1 row a chunk
    assert probes.knn_vote(torch.tensor([[1, 0]]), 2, 2).tolist() == [1]  # 1-1 tie: the nearest wins
    assert probes.knn_vote(torch.tensor([[1, 0, 0]]), 3, 2).tolist() == [0]  # 2 votes beat 1
    with pytest.raises(ValueError):
        probes.nearest_labels(queries, reference, labels, 6)


def test_knn_chooses_k_on_the_validation_cut():
    # labels of a smooth rule with 20% flipped at random: one neighbour copies the noise, many average it out
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3000, 2, generator=g)
    clean = (x[:, 0] > 0.5).long()
    flip = torch.rand(3000, generator=g) < 0.2
    y = torch.where(flip, 1 - clean, clean)
    result = probes.knn_probe(x[:2000], y[:2000], x[2000:], clean[2000:], candidates=[1, 20], seed=0)
    assert result.details["k"] == 20 and result.details["validation_accuracy"][20] > 0.75
    assert result.details["validation_accuracy"][1] < result.details["validation_accuracy"][20]
    assert result.accuracy > 0.95
    with pytest.raises(ValueError, match="between 1 and"):
        probes.knn_probe(x[:20], y[:20], x[20:30], y[20:30], candidates=[1, 19])


def test_mlp_probe_is_deterministic_given_the_seed_and_stops_early():
    x, y = noise(600)
    xt, yt = noise(200, seed=2)
    first = probes.mlp_probe(x, y, xt, yt, hidden=16, max_epochs=50, patience=3, seed=4)
    again = probes.mlp_probe(x, y, xt, yt, hidden=16, max_epochs=50, patience=3, seed=4)
    assert first == again
    assert first.details["epochs"] == first.details["best_epoch"] + 3 < 50  # nothing to learn: stops early


# The evaluator: settings, labels, the kNN's k against the training split.


def probe_context(split_name: str = "test", labels: bool = True, n_train: int = 400) -> EvalContext:
    x, y = clusters(n_train)
    xt, yt = clusters(200, seed=5)
    model = torch.nn.Linear(1, 1)  # posterior_means is stubbed below; the model is only carried
    split = {"x": xt, **({"y": yt} if labels else {})}
    train = {"x": x, **({"y": y} if labels else {})}
    ctx = EvalContext(
        model, split_name, split, DiagonalGaussian(xt, torch.zeros_like(xt)), None, None, {}, 64, 0, lambda _: train
    )
    return ctx


@pytest.fixture
def identity_encoder(monkeypatch):
    """posterior_means(model, split, ...) = split["x"]: the features are the points themselves."""
    monkeypatch.setattr("vaelab.evaluation.posterior_means", lambda model, split, batch_size, seed=0: split["x"])


def test_probe_evaluator_reports_each_probe_with_its_time(identity_encoder):
    evaluation = LabelProbe(hidden=16, max_epochs=20).evaluate(probe_context())
    assert evaluation.scalars == {"probe_accuracy_linear": 1.0, "probe_accuracy_knn": 1.0, "probe_accuracy_mlp": 1.0}
    assert evaluation.values["probe_knn_k"] in (1, 3, 5, 10, 20) and evaluation.values["probe_mlp_epochs"] >= 1
    assert all(evaluation.values[f"probe_seconds_{p}"] >= 0 for p in ("encode", "linear", "knn", "mlp"))
    assert LabelProbe(probes=["knn"]).evaluate(probe_context()).scalars.keys() == {"probe_accuracy_knn"}
    assert LabelProbe(probes=[]).evaluate(probe_context(labels=False)).results() == {}  # off: no labels needed
    assert LabelProbe().evaluate(probe_context("val")).results() == {}  # the test split only


def test_probe_bad_input_is_a_config_error_naming_the_key(identity_encoder):
    key = "callbacks.diagnostics.evaluators.probe"
    for ctx in (probe_context("val", labels=False), probe_context(labels=False)):
        with pytest.raises(ConfigError, match=rf"{key}.probes=.*needs labels y"):
            LabelProbe().evaluate(ctx)
    with pytest.raises(ConfigError, match=rf"{key}.k=.*more than the 36 training points"):
        LabelProbe(probes=["knn"], k=[1, 50]).evaluate(probe_context(n_train=40))
    for bad, setting in (
        (dict(probes=["svm"]), "probes"),
        (dict(probes=["knn", "knn"]), "probes"),
        (dict(k=[]), "k"),
        (dict(k=[0, 3]), "k"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(hidden=0), "hidden"),
        (dict(patience=1.5), "patience"),
    ):
        with pytest.raises(ConfigError, match=rf"{key}.{setting}="):
            LabelProbe(**bad)


# Collapse metrics (item 2).


def posterior_context(mean: torch.Tensor, logvar: torch.Tensor, split_name: str = "test") -> EvalContext:
    posterior = DiagonalGaussian(mean, logvar)
    return EvalContext(torch.nn.Linear(1, 1), split_name, {"x": mean}, posterior, None, None, {}, 64)


def test_mi_of_well_separated_posteriors_is_log_n_and_saturated():
    n = 500
    mean = torch.randn(n, 6, generator=torch.Generator().manual_seed(0)) * 10
    evaluation = MutualInformation(points=n).evaluate(posterior_context(mean, torch.full_like(mean, -12.0)))
    assert evaluation.scalars["mi"] == pytest.approx(math.log(n), abs=1e-3)
    assert evaluation.values["mi_saturated"] is True and evaluation.values["mi_ceiling"] == pytest.approx(math.log(n))
    per_batch = MutualInformation(points=n, batch_size=50).evaluate(posterior_context(mean, torch.zeros_like(mean)))
    assert per_batch.values["mi_ceiling"] == pytest.approx(math.log(50))


def test_an_encoder_that_ignores_x_has_zero_mi_zero_kl_per_dim_and_no_active_units():
    mean, logvar = torch.zeros(300, 4), torch.zeros(300, 4)  # q(z|x) = N(0, I) = p(z) for every x
    ctx = posterior_context(mean, logvar)
    mi = MutualInformation(points=300).evaluate(ctx)
    assert mi.scalars["mi"] == pytest.approx(0.0, abs=1e-9) and mi.values["mi_saturated"] is False
    kl = KL().evaluate(ctx)
    assert kl.values["kl_per_dim"] == [0.0] * 4 and kl.scalars["kl"] == 0.0
    assert ActiveUnits().evaluate(ctx).scalars == {"active_units": 0, "active_units_0.01": 0, "active_units_0.02": 0}


def test_mi_saturation_is_within_five_percent_of_log_n():
    assert metrics.mi_saturated(0.951 * math.log(1000), 1000) and not metrics.mi_saturated(0.949 * math.log(1000), 1000)
    assert metrics.mi_saturated(0.0, 1)  # one point: the ceiling is 0
    assert metrics.mi_ceiling(10000, batch_size=100) == pytest.approx(math.log(100))


def test_kl_per_dim_of_known_posteriors_is_sorted_and_drawn():
    # q(z_j|x) = N(m_j, v_j) with the same m, v for every x: KL_j = (v_j + m_j^2 - 1 - log v_j) / 2
    m, v = torch.tensor([0.0, 2.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.25, 0.5])
    expected = (v + m.square() - 1 - v.log()) / 2  # [0, 2, 0.318, 0.597]
    ctx = posterior_context(m.expand(50, 4).clone(), v.log().expand(50, 4).clone())
    evaluation = KL().evaluate(ctx)
    assert evaluation.values["per_dim_kl"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert evaluation.values["kl_per_dim"] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-6)
    assert evaluation.scalars["kl"] == pytest.approx(float(expected.sum()), abs=1e-6)
    (image,) = [tensor for draw in evaluation.images for tensor in draw().values()]
    assert image.ndim == 3 and image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1
    assert KL(figure=False).evaluate(ctx).images == []
    validation = posterior_context(m.expand(50, 4).clone(), v.log().expand(50, 4).clone(), split_name="val")
    assert KL().evaluate(validation).images == []  # drawn for the final test split only


def test_active_units_at_both_thresholds():
    # posterior-mean variances 0.005, 0.015, 0.5: one unit above 0.02, two above 0.01
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20000, 3, generator=g)
    mean = (base - base.mean(0)) / base.std(0) * torch.tensor([0.005, 0.015, 0.5]).sqrt()
    evaluation = ActiveUnits().evaluate(posterior_context(mean, torch.zeros_like(mean)))
    assert evaluation.scalars == {"active_units": 2, "active_units_0.01": 2, "active_units_0.02": 1}
    assert ActiveUnits(threshold=0.02, report_thresholds=[]).evaluate(posterior_context(mean, mean)).scalars == {
        "active_units": 1
    }
    with pytest.raises(ConfigError, match="active_units.report_thresholds"):
        ActiveUnits(report_thresholds=[0.0])


def test_probe_and_mi_loops_report_progress_where_the_context_offers_it(identity_encoder):
    shown = {}

    class Bar:
        def __init__(self, total, label, unit):
            self.label, self.done = label, 0
            shown[label] = (total, self)

        def update(self, n):
            self.done += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    ctx = probe_context()
    ctx.progress = Bar
    LabelProbe(probes=["knn", "mlp"], hidden=8, max_epochs=3).evaluate(ctx)
    MutualInformation(points=150).evaluate(ctx)
    assert shown["probe knn"][0] == shown["probe knn"][1].done == 40 + 200  # validation cut + test points
    assert shown["probe mlp (at most)"][1].done == 3 and shown["mutual_information"][1].done == 150
