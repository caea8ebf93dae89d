"""The evaluator interface (vaelab.diagnostics): evaluators chosen and set in config, the Diagnostics callback
logging whatever they return, and each evaluator's own conditions (which splits and data it applies to)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from test_metrics import LinearSubspaceModel, linear_subspace_data
from vaelab.callbacks import Diagnostics
from vaelab.config import compose_config
from vaelab.diagnostics import EvalContext, Evaluation, run_evaluators
from vaelab.diagnostics.image_panels import ImagePanels
from vaelab.diagnostics.iw_nll import ImportanceSampledNLL
from vaelab.diagnostics.mcc import MCC
from vaelab.diagnostics.probe import LabelProbe
from vaelab.errors import ConfigError
from vaelab.evaluation import default_evaluators, evaluation_context

E = "callbacks.diagnostics.evaluators"


def diagnostics(*overrides: str) -> Diagnostics:
    return instantiate(compose_config(list(overrides)).callbacks.diagnostics)


def linear_context(split_name: str = "test", **extra: torch.Tensor) -> EvalContext:
    a, s, x = linear_subspace_data(n=200)
    return evaluation_context(
        LinearSubspaceModel(a), split_name, {"x": x, **extra}, 64, load_split=lambda name: {"x": x, **extra}
    )


def test_evaluators_are_chosen_and_set_from_the_command_line():
    default = diagnostics()
    assert default.evaluators["probe"].probes == [] and default.evaluators["iw_nll"].samples == 0
    d = diagnostics(
        f"{E}.iw_nll.samples=500",
        f"{E}.active_dims.threshold=0.2",
        f"~{E}.mcc",
        f"{E}.kl=null",
        f"{E}.probe.probes=[linear,knn]",
    )
    assert d.evaluators["iw_nll"].samples == 500
    assert d.evaluators["groups"].threshold == 0.2  # tied to active_dims' threshold in the YAML
    assert "mcc" not in d.evaluators and "kl" not in d.evaluators and isinstance(d.evaluators["probe"], LabelProbe)
    assert d.evaluators["probe"].probes == ["linear", "knn"]


@pytest.mark.parametrize(
    "override",
    [
        "active_dims.threshold=0",
        "active_units.threshold=-1",
        "mcc.method=kendall",
        "gates.threshold=0",
        "iw_nll.max_rows=-1",
        "image_panels.dims=-1",
        "probe.k=[0]",
        "probe.probes=[svm]",
        "probe.validation_fraction=0",
        "active_units.report_thresholds=[0]",
    ],
)
def test_bad_settings_name_their_key(override):
    """Hydra wraps the evaluator's ConfigError once (its direct cause), which vaelab.train re-raises unwrapped."""
    with pytest.raises(InstantiationException) as err:
        diagnostics(f"{E}.{override}")
    assert isinstance(err.value.__cause__, ConfigError)
    assert str(err.value.__cause__).startswith(f"{E}.{override.split('=')[0]}=")


def test_callback_logs_whatever_scalars_come_back_and_draws_images_only_for_tensorboard():
    class Constant:
        def evaluate(self, ctx):
            return Evaluation(
                scalars={"answer": 42.0},
                values={"listed": [1, 2]},
                logged={"custom/tag": 1.0},
                images=[lambda: pytest.fail("drawn without a TensorBoard logger")],
            )

    logged = []
    logger = SimpleNamespace(log_metrics=lambda values, step: logged.append((values, step)))
    trainer = SimpleNamespace(global_step=7, loggers=[logger])
    evaluation = run_evaluators({"constant": Constant()}, linear_context())
    Diagnostics._log(trainer, "val", evaluation)
    assert logged == [({"val/answer": 42.0, "custom/tag": 1.0}, 7)]
    assert evaluation.results() == {"answer": 42.0, "listed": [1, 2]}


def test_history_needs_the_evaluators_convergence_reads():
    d = diagnostics(f"~{E}.active_units")
    results = run_evaluators(d.evaluators, linear_context("val")).results()
    with pytest.raises(ConfigError, match="active_units"):
        d._history_entry(0, results)
    entry = diagnostics()._history_entry(3, run_evaluators(diagnostics().evaluators, linear_context("val")).results())
    assert entry["step"] == 3 and entry["active_dims"] == 3 and entry["neg_elbo"] > 0


def test_evaluators_apply_only_where_they_should():
    _, s, _ = linear_subspace_data(n=200)
    val, test = linear_context("val"), linear_context("test", z_true=s)
    assert run_evaluators({"mcc": MCC()}, val).results() == {}  # no true latents
    mcc = run_evaluators({"mcc": MCC()}, test)
    assert mcc.scalars["mcc"] == pytest.approx(1.0) and len(mcc.images) == 1  # figures: test split only
    assert run_evaluators({"iw": ImportanceSampledNLL(samples=3, points=10)}, val).results() == {}
    assert "iw_nll" in run_evaluators({"iw": ImportanceSampledNLL(samples=3, points=10, on_val=True)}, val).scalars
    assert run_evaluators({"probe": LabelProbe(probes=[])}, test).results() == {}  # off
    with pytest.raises(ConfigError, match="probe.probes=.*needs labels"):  # asked for without labels
        run_evaluators({"probe": LabelProbe()}, test)
    assert run_evaluators({"panels": ImagePanels()}, test).images == []  # (N, d) points are not images


def test_default_evaluators_follow_the_yaml_with_settings_overridden():
    evaluators = default_evaluators(**{"mcc.method": "spearman", "active_dims.threshold": 0.3})
    assert evaluators["mcc"].method == "spearman" and evaluators["groups"].threshold == 0.3
    assert evaluators["probe"].probes == []  # off unless an experiment asks for probes
