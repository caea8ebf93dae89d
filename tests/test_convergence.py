"""The convergence verdict (vaelab.convergence.assess) on histories with known answers, and the adaptive
training length on real runs: extensions, the budget, resume inside an extension, the verdict in metrics.json,
the summary line and vaelab-summarize."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from conftest import EASY, SHORT
from vaelab.cli import format_summary
from vaelab.convergence import assess
from vaelab.errors import ConfigError, RunInterrupted
from vaelab.summarize import load_runs, summarize
from vaelab.train import train

ACTIVE, INACTIVE = [1e-4, 3e-4], [0.99, 1.0, 0.98]


def evaluation(
    step: int, active_dims: int, encoder_var=ACTIVE + INACTIVE, neg_elbo: float = -80.0, gamma: float | None = 1e-5
) -> dict:
    return {
        "step": step,
        "active_dims": active_dims,
        "encoder_var": list(encoder_var),
        "neg_elbo": neg_elbo,
        "gamma": gamma,
    }


def test_a_settled_manifold_run_has_converged():
    history = [evaluation(s, 2, gamma=10 ** (-3 - s / 1000)) for s in range(0, 5000, 500)]
    verdict = assess(history, learnable_gamma=True)
    assert verdict["converged"]
    evidence = verdict["convergence"]
    assert evidence["checks"] == {"enough_evaluations": True, "active_dims_stable": True, "variance_split": True}
    assert evidence["max_active_var"] == 3e-4 and evidence["min_inactive_var"] == 0.98
    assert evidence["log_gamma_change_window"] < 0  # gamma still falling does not count against it


def test_changing_active_dims_are_not_converged():
    history = [evaluation(0, 0), evaluation(500, 1), evaluation(1000, 2), evaluation(1500, 2)]
    verdict = assess(history, learnable_gamma=True)
    assert not verdict["converged"]
    assert not verdict["convergence"]["checks"]["active_dims_stable"]
    assert "1 -> 2 -> 2" in verdict["convergence"]["reason"]


def test_a_dim_between_the_two_variance_levels_is_not_converged():
    half_open = [1e-4, 0.3, 0.99, 1.0]
    verdict = assess([evaluation(s, 1, half_open) for s in (0, 500, 1000)], learnable_gamma=True)
    assert not verdict["converged"] and verdict["convergence"]["ambiguous_dims"] == {1: 0.3}
    assert "dim 1: 0.3" in verdict["convergence"]["reason"]
    # the split is the theory of a learnable gamma: a model without one is judged by its loss instead
    assert assess([evaluation(s, 1, half_open, gamma=None) for s in (0, 500, 1000)])["converged"]


def test_posterior_means_varying_in_an_inactive_dim_are_not_converged():
    stirring = [{**evaluation(s, 2), "active_units": 5} for s in (0, 500, 1000)]
    verdict = assess(stirring, learnable_gamma=True)
    assert (
        not verdict["converged"]
        and "5 active units (posterior means that vary) but 2 active dims" in verdict["convergence"]["reason"]
    )
    assert assess([{**e, "active_units": 2} for e in stirring], learnable_gamma=True)["converged"]


def union_evaluation(step: int, group_var: list[list[float]], active_units: int) -> dict:
    """A union of two classes: pooled variances are the mean of the groups' (what a union run records)."""
    pooled = [sum(col) / len(col) for col in zip(*group_var, strict=True)]
    return {
        **evaluation(step, sum(v < 0.1 for v in pooled), pooled),
        "active_units": active_units,
        "group_encoder_var": group_var,
    }


def test_a_converged_union_is_judged_within_each_class():
    # class 0 uses dims 0-1, class 1 dims 1-2: pooled, dims 0 and 2 sit at ~0.5 although each class has split
    split = [[1e-4, 1e-4, 1.0, 1.0], [1.0, 2e-4, 1e-4, 1.0]]
    verdict = assess(
        [union_evaluation(s, split, active_units=3) for s in (0, 500, 1000)], learnable_gamma=True, data_dimension=2
    )
    assert verdict["converged"], verdict["convergence"]["reason"]
    assert verdict["convergence"]["checks"]["dims_cover_data"]
    # pooled, the same numbers would say unconverged: two dims between the levels, 3 units but 1 active dim
    pooled_only = [
        {k: v for k, v in e.items() if k != "group_encoder_var"}
        for e in (union_evaluation(s, split, 3) for s in (0, 500, 1000))
    ]
    assert not assess(pooled_only, learnable_gamma=True)["converged"]


def test_a_union_class_with_a_dim_half_open_is_not_converged():
    moving = [[1e-4, 1e-4, 1.0, 1.0], [1.0, 2e-4, 0.3, 1.0]]
    verdict = assess([union_evaluation(s, moving, active_units=3) for s in (0, 500, 1000)], learnable_gamma=True)
    assert not verdict["converged"]
    assert verdict["convergence"]["ambiguous_dims"] == {"group 1 dim 2": 0.3}
    assert "group 1 dim 2: 0.3" in verdict["convergence"]["reason"]
    # a unit that varies in no class's active dims: posterior means still moving
    split = [[1e-4, 1e-4, 1.0, 1.0], [1.0, 2e-4, 1e-4, 1.0]]
    stirring = assess([union_evaluation(s, split, active_units=4) for s in (0, 500, 1000)], learnable_gamma=True)
    assert (
        "4 active units (posterior means that vary) but 3 dims active in some group"
        in stirring["convergence"]["reason"]
    )


def test_too_few_evaluations_are_not_converged():
    verdict = assess([evaluation(0, 2), evaluation(500, 2)], learnable_gamma=True)
    assert not verdict["converged"] and "only 2 validation evaluation(s), 3 needed" in verdict["convergence"]["reason"]


def test_without_gamma_the_validation_loss_must_have_settled():
    moving = [evaluation(s, 5, neg_elbo=loss, gamma=None) for s, loss in ((0, 120.0), (500, 110.0), (1000, 100.0))]
    verdict = assess(moving, loss_rtol=0.01)
    assert not verdict["converged"] and not verdict["convergence"]["checks"]["loss_settled"]
    assert verdict["convergence"]["val_loss_rel_change"] == pytest.approx(0.2)
    settled = [evaluation(s, 5, neg_elbo=loss, gamma=None) for s, loss in ((0, 100.4), (500, 100.2), (1000, 100.0))]
    assert assess(settled, loss_rtol=0.01)["converged"]


def test_a_model_with_its_own_objective_is_judged_by_that_objective():
    """The iVAE minimises a weighted objective, not the negative ELBO: the ELBO may drift while it settles."""
    drifting_elbo = [
        {**evaluation(s, 5, neg_elbo=elbo, gamma=None), "objective": obj}
        for s, elbo, obj in ((0, 10.9, 1000.4), (500, 11.1, 1000.2), (1000, 11.2, 1000.0))
    ]
    verdict = assess(drifting_elbo, loss_rtol=0.01)
    assert verdict["converged"] and verdict["convergence"]["val_loss"] == "objective"
    moving = [{**e, "objective": 1000.0 + 50 * (2 - i)} for i, e in enumerate(drifting_elbo)]
    verdict = assess(moving, loss_rtol=0.01)
    assert not verdict["converged"] and "validation objective still moving" in verdict["convergence"]["reason"]


def _latents(angle: float, n: int = 500) -> torch.Tensor:
    """Posterior means (n, 3) of fixed points: two sources rotated by `angle` (radians), and a constant dim."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    c, s = math.cos(angle), math.sin(angle)
    return torch.cat([z @ torch.tensor([[c, -s], [s, c]]), torch.zeros(n, 1)], 1)


def test_with_representation_corr_a_settled_representation_converges_while_the_objective_improves():
    """The iVAE's decoder keeps sharpening (objective -6% over the window) while its latents stay put."""
    improving = [
        {**evaluation(s, 3, gamma=None), "objective": obj, "posterior_means": means}
        for s, obj, means in (
            (0, -35.2, _latents(0.0)),
            (500, -36.4, -2.0 * _latents(0.0)[:, [1, 0, 2]]),  # permuted, flipped, rescaled: the same latents
            (1000, -37.5, 3.0 * _latents(0.0)),
        )
    ]
    assert not assess(improving)["converged"]  # without the option: the objective alone decides
    verdict = assess(improving, representation_corr=0.99)
    evidence = verdict["convergence"]
    assert verdict["converged"] and evidence["checks"]["settled"] and not evidence["loss_settled"]
    assert evidence["representation_match_window"] == pytest.approx(1.0)
    assert "representation settled" in evidence["reason"]
    rotating = [{**e, "posterior_means": _latents(0.3 * i)} for i, e in enumerate(improving)]  # still turning
    verdict = assess(rotating, representation_corr=0.99)
    assert not verdict["converged"]
    assert verdict["convergence"]["representation_match_window"] == pytest.approx(math.cos(0.6), abs=0.02)
    assert "and the representation too" in verdict["convergence"]["reason"]
    settled_loss = [{**e, "objective": -37.5} for e in rotating]  # a settled objective is enough on its own
    assert assess(settled_loss, representation_corr=0.99)["converged"]


def test_active_dims_that_change_in_an_extension_are_not_converged():
    history = [evaluation(s, 5) for s in (0, 500, 1000)]
    assert not assess(history, learnable_gamma=True, extensions=[{"active_dims_before": 4}])["converged"]
    verdict = assess(history, learnable_gamma=True, extensions=[{"active_dims_before": 4}, {"active_dims_before": 5}])
    assert verdict["converged"] and "held through 2 extension(s)" in verdict["convergence"]["reason"]


EXTENDED = [*SHORT, "callbacks.convergence.extend=true", "callbacks.convergence.extension_epochs=10"]


def test_a_run_cut_at_a_tenth_of_its_budget_is_flagged(make_cfg):
    """The default experiment (kappa-simple VAE, r = 2) stopped after 30 of its 300 epochs, not extended."""
    result = train(
        make_cfg(
            "trainer.max_epochs=30", "callbacks.convergence.extend=false", "callbacks.progress_bar=null", "logger=none"
        )
    )
    assert result["converged"] is False and result["epochs"] == 30
    assert "converged: NO" in format_summary(result)


def test_extension_runs_until_the_active_dims_hold_then_stops(make_cfg, tmp_path):
    result = train(make_cfg(*EXTENDED))
    extensions = result["convergence"]["extensions"]
    assert len(extensions) >= 1 and extensions[0]["at_epoch"] == 20 and extensions[0]["epochs"] == 10
    # the default budget: 3 x trainer.max_epochs, one more extension per gamma move, at most 6 x
    budget = min(60 + 10 * sum("log_gamma_lowered" in e or "log_gamma_raised" in e for e in extensions), 120)
    assert result["epochs"] == 20 + 10 * len(extensions) <= budget
    if result["converged"]:  # stopped once the active dims held through an extension
        assert result["active_dims"] == extensions[-1]["active_dims_before"] and result["epochs"] < budget
    else:  # or ran to the end of its budget (what this short run does)
        assert result["epochs"] == budget
    # the budget caps the run, converged or not
    capped = train(
        make_cfg(
            *EXTENDED,
            "callbacks.convergence.max_epochs=30",
            "callbacks.convergence.window=10",
            "logger=csv",
            "trainer.log_every_n_steps=5",
            name="capped",
        )
    )
    assert capped["epochs"] == 30 and capped["converged"] is False
    assert "only" in capped["convergence"]["reason"]
    # the extension restarted the learning-rate schedule: OneCycle annealed to ~0, then rises again
    with next((tmp_path / "capped").rglob("metrics.csv")).open() as f:
        lr = {int(row["step"]): float(row["train/lr"]) for row in csv.DictReader(f) if row.get("train/lr")}
    start = capped["convergence"]["extensions"][0]["at_step"]
    before = max(v for s, v in lr.items() if s < start and s >= start - 10)
    assert max(v for s, v in lr.items() if s > start) > 20 * before


def test_resume_inside_an_extension_matches_the_uninterrupted_run(make_cfg, tmp_path):
    overrides = [*EXTENDED, "callbacks.convergence.max_epochs=40", "callbacks.convergence.window=8"]
    uninterrupted = train(make_cfg(*overrides, name="full"))
    assert uninterrupted["epochs"] == 40  # never converges with window 8: two extensions
    with pytest.raises(RunInterrupted):
        train(
            make_cfg(
                *overrides,
                "+callbacks.interrupt._target_=helpers.InterruptAfterEpoch",
                "+callbacks.interrupt.epoch=24",
                name="stopped",
            )
        )
    ckpt = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["epoch"] == 24
    resumed = train(make_cfg(*overrides, f"ckpt_path={ckpt}", name="resumed"))
    volatile = {"wall_time_s", "startup_s", "run_dir", "overrides", "resumed_from"}
    assert {k: v for k, v in resumed.items() if k not in volatile} == {
        k: v for k, v in uninterrupted.items() if k not in volatile
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["callbacks.convergence.extend=true", "callbacks.convergence.max_epochs=25"],
            "callbacks.convergence.max_epochs=25 is below the minimum 26",
        ),
        (
            ["callbacks.convergence.extend=maybe"],
            "callbacks.convergence.extend='maybe' must be one of auto, true, false",
        ),
        (["callbacks.convergence.window=1"], "callbacks.convergence.window=1 must be >= 2"),
        (["callbacks.convergence.variance_band=[0.8,0.05]"], "callbacks.convergence.variance_band"),
        (["callbacks.convergence.representation_corr=1.5"], "callbacks.convergence.representation_corr=1.5 must"),
        (["callbacks.convergence.reopen_gamma_factor=1"], "callbacks.convergence.reopen_gamma_factor=1 must be > 1"),
    ],
)
def test_bad_convergence_settings_are_one_line_errors(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        train(make_cfg(*EXTENDED[:-2], *overrides))


def test_summarize_counts_unconverged_runs(make_cfg, tmp_path):
    train(make_cfg(*SHORT, "trainer.max_epochs=5", name="sweep/0_cut"))
    train(make_cfg(*EASY, "callbacks.convergence.extend=false", name="sweep/1_easy"))
    runs = load_runs(tmp_path / "sweep")
    assert sorted(r.converged for r in runs) == [False, True]
    table = summarize(runs, group_by=[]).markdown()
    assert "| jobs | converged |" in table
    assert "1/2 (**unconverged**)" in table


def test_summarize_does_not_count_runs_without_a_verdict_as_unconverged(tmp_path):
    for name, verdict in [("0_a", True), ("1_b", None), ("2_c", False)]:
        (tmp_path / name).mkdir()
        fields = {} if verdict is None else {"converged": verdict}
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({"status": "completed", "overrides": [f"seed={name[0]}"], "active_dims": 2, **fields})
        )
    cell = summarize(load_runs(tmp_path), group_by=[]).markdown()
    assert "| 1/2 (**unconverged**) (1 without a verdict) |" in cell


def test_restarts_train_k_initialisations_and_keep_the_best_validation_elbo(make_cfg, tmp_path):
    result = train(make_cfg(*SHORT, "restarts=3"))
    attempts = result["restarts"]
    assert [a["restart"] for a in attempts] == [0, 1, 2] and len({a["seed"] for a in attempts}) == 3
    assert attempts[0]["seed"] == 0  # restart 0 is the plain run of this seed
    best = max(attempts, key=lambda a: (bool(a.get("converged")), a["val_elbo"]))  # converged ones first
    assert result["restart_kept"] == best["restart"]
    assert all(0.0 <= a["val_mcc"] <= 1.0 for a in attempts)  # the data's true latents: reported beside each
    for i in range(3):
        assert (tmp_path / "run" / "restarts" / str(i) / "checkpoints" / "last.ckpt").is_file()
    assert "restarts" not in train(make_cfg(*SHORT, name="single"))  # restarts=1: the plain run


def test_a_diverged_restart_is_listed_and_skipped(make_cfg, monkeypatch):
    import vaelab.train as train_module
    from vaelab.errors import DivergenceError

    real_fit = train_module._fit

    def fit_that_diverges_once(cfg, record, ckpt_path=None):
        if cfg.paths.output_dir.endswith("restarts/1"):
            raise DivergenceError("the loss became nan at optimizer step 3")
        return real_fit(cfg, record, ckpt_path)

    monkeypatch.setattr(train_module, "_fit", fit_that_diverges_once)
    result = train(make_cfg(*SHORT, "restarts=2"))
    assert result["status"] == "completed" and result["restart_kept"] == 0
    assert "nan" in result["restarts"][1]["diverged"] and "val_elbo" not in result["restarts"][1]


def test_all_restarts_diverging_fails_the_run(make_cfg, monkeypatch, tmp_path):
    import vaelab.train as train_module
    from vaelab.errors import DivergenceError

    def always_diverges(cfg, record, ckpt_path=None):
        raise DivergenceError("the loss became inf at optimizer step 1")

    monkeypatch.setattr(train_module, "_fit", always_diverges)
    with pytest.raises(DivergenceError, match="all restarts=2 initialisations diverged"):
        train(make_cfg(*SHORT, "restarts=2"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("value", ["0", "-2", "1.5"])
def test_restarts_below_one_is_a_one_line_error(make_cfg, value):
    with pytest.raises(ConfigError, match=f"restarts={value} must be an integer >= 1"):
        train(make_cfg(*SHORT, f"restarts={value}"))


@pytest.mark.parametrize("r", [1, 3, 6])
def test_local_pca_dimension_of_a_linear_subspace_is_its_rank(r):
    from vaelab.metrics import local_pca_dimension

    g = torch.Generator().manual_seed(r)
    x = torch.randn(4000, r, generator=g) @ torch.randn(r, 20, generator=g)
    dim, counts = local_pca_dimension(x)
    assert dim == r and counts[r] >= 0.9 * sum(counts)


def test_local_pca_dimension_of_one_coordinate_and_of_too_few_points():
    from vaelab.metrics import local_pca_dimension

    assert local_pca_dimension(torch.randn(500, 1)) == (1, [0, 300])
    assert local_pca_dimension(torch.ones(50, 1)) == (0, [50, 0])
    with pytest.raises(ValueError, match="at least 3 points, got 2"):
        local_pca_dimension(torch.randn(2, 5))


@pytest.mark.parametrize(("r", "d"), [(2, 20), (5, 7), (7, 9)])
def test_local_pca_dimension_of_the_synthetic_manifolds_is_r(r, d):
    """x = sigmoid(W u + b): with d = r + 2 one direction of u shows several times more weakly than the others
    (the case where a VAE stops one dim short with every other check passing)."""
    from vaelab.data.synthetic_manifold import make_manifold_data
    from vaelab.metrics import local_pca_dimension

    x, _ = make_manifold_data(16000, r, d, 1234)
    assert local_pca_dimension(x)[0] == r


def test_active_dims_below_the_data_dimension_are_not_converged():
    history = [{**evaluation(s, 4, [1e-4, 2e-4, 3e-4, 4e-4, 1.0]), "active_units": 4} for s in (0, 500, 1000)]
    verdict = assess(history, learnable_gamma=True, data_dimension=5)
    assert not verdict["converged"] and not verdict["convergence"]["checks"]["dims_cover_data"]
    assert "4 active dims but the data's local dimension is 5" in verdict["convergence"]["reason"]
    assert assess(history, learnable_gamma=True, data_dimension=4)["converged"]
    assert "dims_cover_data" not in assess(history, learnable_gamma=True)["convergence"]["checks"]


def test_active_dims_above_the_data_dimension_are_not_converged():
    """Every dim open at a gamma that has stopped falling (a small gamma start): AD 4 on 2-dimensional data."""
    history = [{**evaluation(s, 4, [1e-4, 2e-4, 3e-4, 4e-4]), "active_units": 4} for s in (0, 500, 1000)]
    verdict = assess(history, learnable_gamma=True, data_dimension=2)
    assert not verdict["converged"] and not verdict["convergence"]["checks"]["dims_within_data"]
    assert "4 active dims but the data's local dimension is 2" in verdict["convergence"]["reason"]
    assert verdict["convergence"]["checks"]["dims_cover_data"]
    assert assess(history, learnable_gamma=True, data_dimension=4)["converged"]


def test_a_resumed_run_gets_back_its_raised_epoch_and_step_limits():
    from types import SimpleNamespace

    from vaelab.convergence import Convergence

    class FakeTrainer:  # the two limits Lightning keeps in its fit loop
        def __init__(self, max_epochs, max_steps):
            self.fit_loop = SimpleNamespace(max_epochs=max_epochs, epoch_loop=SimpleNamespace(max_steps=max_steps))

        @property
        def max_epochs(self):
            return self.fit_loop.max_epochs

    extended, resumed = Convergence(), Convergence()
    extended._trainer, resumed._trainer = FakeTrainer(400, 8000), FakeTrainer(300, 6000)
    extended.extensions = [{"at_epoch": 300, "epochs": 100, "active_dims_before": 2}]
    resumed.load_state_dict(extended.state_dict())
    assert resumed._trainer.max_epochs == 400 and resumed._trainer.fit_loop.epoch_loop.max_steps == 8000
    assert resumed.extensions == extended.extensions
    unbounded = Convergence()
    unbounded._trainer = FakeTrainer(300, -1)  # no step limit: none is invented
    unbounded.load_state_dict(extended.state_dict())
    assert unbounded._trainer.fit_loop.epoch_loop.max_steps == -1


def test_a_union_class_short_of_its_own_dimension_is_not_converged():
    # class 0 on a 2-dim manifold, class 1 on a 3-dim one; class 1 uses only 2 dims (the T5 run of seed 2)
    short = [[1e-4, 1e-4, 1.0, 1.0], [1.0, 2e-4, 1e-4, 1.0]]
    history = [union_evaluation(s, short, active_units=3) for s in (0, 500, 1000)]
    verdict = assess(history, learnable_gamma=True, group_data_dimensions=[2, 3])
    assert not verdict["converged"] and not verdict["convergence"]["checks"]["group_dims_match_data"]
    assert "class 1: 2 active, data 3 (a direction left to gamma)" in verdict["convergence"]["reason"]
    assert verdict["convergence"]["group_active_dims"] == [2, 2]
    assert assess(history, learnable_gamma=True, group_data_dimensions=[2, 2])["converged"]
    # more dims open than the class's data has: still open; a class too small to tell is not judged
    assert (
        "class 0: 2 active, data 1"
        in assess(history, learnable_gamma=True, group_data_dimensions=[1, None])["convergence"]["reason"]
    )
    assert assess(history, learnable_gamma=True, group_data_dimensions=[None, 2])["converged"]


def test_each_class_dimension_is_measured_where_the_condition_is_the_class():
    from types import SimpleNamespace

    from vaelab.convergence import Convergence, condition_is_class
    from vaelab.data.conditional_manifold import ContinuousGroupsData, UnionManifoldData
    from vaelab.models.cvae import ConditionalVAE

    def measured(data):
        data.setup("fit")
        model = ConditionalVAE(data.spec, latent_dim=6)
        callback = Convergence()
        callback.on_fit_start(SimpleNamespace(datamodule=data), SimpleNamespace(model=model))
        return callback

    union = measured(UnionManifoldData(class_manifold_dims=(1, 3, 2), ambient_dim=10, n_per_class=600))
    assert union.group_data_dimensions == [1, 3, 2] and union.data_dimension is None
    groups = measured(ContinuousGroupsData(manifold_dim=4, group_ranks=(1, 2), ambient_dim=10, n_per_group=600))
    assert groups.group_data_dimensions is None  # the condition reveals coordinates: x's dimension is not the answer
    y = torch.tensor([0, 1, 1, 0])
    assert condition_is_class(torch.eye(2)[y], y) and not condition_is_class(torch.randn(4, 2), y)


def test_gamma_is_lowered_only_where_a_direction_of_the_data_is_missing():
    from vaelab.convergence import Convergence

    history = [evaluation(s, 2) for s in (0, 500, 1000)]
    kick = Convergence(reopen_gamma_factor=100)
    short = assess(history, learnable_gamma=True, data_dimension=3)
    assert kick.gamma_shift(short) == pytest.approx(-math.log(100))
    assert Convergence(reopen_gamma_factor=None).gamma_shift(short) is None  # off
    assert kick.gamma_shift(assess(history, learnable_gamma=True, data_dimension=2)) is None  # converged
    assert kick.gamma_shift(assess(history, learnable_gamma=True, data_dimension=1)) is None  # too many dims open
    split = [[1e-4, 1e-4, 1.0, 1.0], [1.0, 2e-4, 1e-4, 1.0]]
    union = [union_evaluation(s, split, active_units=3) for s in (0, 500, 1000)]
    assert kick.gamma_shift(assess(union, learnable_gamma=True, group_data_dimensions=[2, 3])) is not None
    assert kick.gamma_shift(assess(union, learnable_gamma=True, group_data_dimensions=[1, 2])) is None


def test_a_lowered_gamma_is_raised_halfway_back_where_too_many_dims_open():
    from vaelab.convergence import Convergence

    history = [evaluation(s, 2) for s in (0, 500, 1000)]
    over = assess(history, learnable_gamma=True, data_dimension=1)
    kick, half = Convergence(reopen_gamma_factor=30), math.log(30) / 2
    kick.extensions = [{"log_gamma_lowered": [-5.0, -8.4]}, {}]  # the current extension comes last
    assert kick.gamma_shift(over, -12.0) == pytest.approx(half)  # half a lowering undone
    assert kick.gamma_shift(over, -6.0) == pytest.approx(1.0)  # up to the gamma before the first lowering
    assert kick.gamma_shift(over, -5.0) is None  # there already
    kick.extensions = [{}, {}]
    assert kick.gamma_shift(over, -12.0) is None  # never lowered: never raised
    log_gamma = torch.tensor(-9.0)
    kick.extensions = [{"log_gamma_lowered": [-5.0, -8.4]}, {}]
    kick.move_gamma(log_gamma, kick.gamma_shift(over, log_gamma.item()))
    assert log_gamma.item() == pytest.approx(-9.0 + half)
    assert kick.extensions[-1]["log_gamma_raised"] == pytest.approx([-9.0, -9.0 + half])
    split = [[1e-4, 1e-4, 1.0, 1.0], [1.0, 2e-4, 1e-4, 1.0]]
    union = [union_evaluation(s, split, active_units=3) for s in (0, 500, 1000)]
    kick.extensions = [{"log_gamma_lowered": [-5.0, -8.4]}, {}]
    a_class_over = assess(union, learnable_gamma=True, group_data_dimensions=[1, 1])
    assert kick.gamma_shift(a_class_over, -12.0) == pytest.approx(half)


def test_each_gamma_move_adds_an_extension_to_the_default_budget_up_to_twice_it():
    from vaelab.convergence import Convergence

    callback = Convergence()
    assert callback.budget(300) == (100, 900)
    callback.extensions = [{"log_gamma_lowered": [-5.0, -8.4]}, {}, {"log_gamma_raised": [-9.0, -7.3]}]
    assert callback.budget(300) == (100, 1100)
    callback.extensions = [{"log_gamma_lowered": [-5.0, -8.4]}] * 20
    assert callback.budget(300) == (100, 1800)
    callback.max_epochs = 600  # a budget given is the budget
    assert callback.budget(300) == (100, 600)
