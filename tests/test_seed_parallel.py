"""Seed-parallel training (vaelab.seed_parallel): S seeds as one stacked model, each member the same science
as the single run with its seed."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest
import torch

from conftest import HAS_CXX, SHARED_DATA, SHORT
from vaelab.build import build
from vaelab.errors import ConfigError, RunExistsError, RunInterrupted
from vaelab.models.base import Batch
from vaelab.run_record import RunRecord, read_metrics
from vaelab.seed_parallel import loss as member_loss
from vaelab.seed_parallel import train_seeds
from vaelab.seed_parallel.loss import member_terms
from vaelab.seed_parallel.members import build_member
from vaelab.seed_parallel.runs import _train
from vaelab.seed_parallel.stacking import StackedModel, flatten_parameters
from vaelab.seed_parallel.training import SeedParallelLoop
from vaelab.train import train

VAE = [*SHORT, "trainer.max_epochs=2", "trainer.max_steps=20", "logger=none"]  # 12 steps per epoch
IVAE = [
    "experiment=ivae",
    "compile=false",
    "data.n_segments=10",
    "data.points_per_segment=200",
    "torch_threads=1",
    "callbacks.progress_bar=null",
    "trainer.max_epochs=2",
    "trainer.max_steps=30",
    "logger=none",
]  # 25 per epoch
MNIST_SKIP = [
    "experiment=skip_mnist_mlp",
    f"paths.data_dir={SHARED_DATA}",
    "model.skip=true",
    "data.n_train=2000",
    "data.n_val=500",
    "model.encoder_hidden=[32]",
    "model.decoder_hidden=[32,32]",
    "trainer.max_steps=25",
    "torch_threads=1",
    "callbacks.progress_bar=null",
    "logger=none",
]  # binarize=dynamic, 20 steps per epoch
STEP_RTOL = 1e-4


def single_run_losses(cfg) -> list[float]:
    """The loss of every optimizer step of the single run `cfg` (vaelab.build.build, then trainer.fit)."""
    run = build(cfg)
    losses, loss_fn = [], run.module._train_loss

    def recording(batch: Batch) -> dict[str, torch.Tensor]:
        terms = loss_fn(batch)
        losses.append(terms["loss"].item())
        return terms

    run.module._train_loss = recording
    run.trainer.fit(run.module, datamodule=run.datamodule)
    return losses


def seed_parallel_losses(cfg, seeds, monkeypatch) -> list[list[float]]:
    """Per member, the loss of every optimizer step of one seed-parallel loop over `seeds`."""
    losses: list[list[float]] = []

    def recording(*args):
        terms = member_terms(*args)
        losses.append(terms["loss"].tolist())
        return terms

    monkeypatch.setattr("vaelab.seed_parallel.training.member_terms", recording)
    members = [build_member(cfg, s, cfg.paths.output_dir + f"/seed_{s}") for s in seeds]
    SeedParallelLoop(members).fit()
    return [list(per_member) for per_member in zip(*losses, strict=True)]


@pytest.mark.parametrize(
    "overrides",
    [
        VAE,
        IVAE,
        [*VAE, "trainer.gradient_clip_val=0.5"],  # clipping each member's own norm (gamma, an (S,) parameter)
        pytest.param(
            MNIST_SKIP,
            marks=pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"no MNIST files in {SHARED_DATA}"),
        ),
    ],
    ids=["vae", "ivae_weighted", "vae_clipped", "mnist_dynamic_binarization"],
)
def test_each_member_takes_the_steps_of_the_single_run_with_its_seed(make_cfg, monkeypatch, overrides):
    seeds = [3, 0, 7]
    stacked = seed_parallel_losses(make_cfg(*overrides, name="stacked"), seeds, monkeypatch)
    for seed, member in zip(seeds, stacked, strict=True):
        single = single_run_losses(make_cfg(*overrides, f"seed={seed}", name=f"single_{seed}"))
        assert len(member) == len(single) >= 20
        assert member == pytest.approx(single, rel=STEP_RTOL), f"seed {seed}"


@pytest.mark.skipif(not HAS_CXX, reason="torch.compile needs a C++ compiler")
def test_a_compiled_stacked_loss_takes_the_eager_steps(make_cfg, monkeypatch):
    """compile=true compiles the stacked loss (its noise comes from outside: no random numbers in the graph);
    kernels round differently, so the members' losses agree with eager ones closely, not bit for bit."""
    from torch._dynamo.utils import counters

    eager = seed_parallel_losses(make_cfg(*IVAE, name="eager"), [0, 1], monkeypatch)
    graphs = counters["stats"]["unique_graphs"]
    compiled = seed_parallel_losses(make_cfg(*IVAE, "compile=true", name="compiled"), [0, 1], monkeypatch)
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo captured the stacked loss
    for member_eager, member_compiled in zip(eager, compiled, strict=True):
        assert len(member_compiled) == len(member_eager) >= 20
        assert member_compiled == pytest.approx(member_eager, rel=STEP_RTOL)


def _member_models(cfg, seeds):
    return [build_member(cfg, s, cfg.paths.output_dir + f"/seed_{s}").run for s in seeds]


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=cvae", "data=conditional_manifold", "model.prior=learned"],
        ["model=cvae", "data=conditional_manifold", "model.prior=learned", "model.share_encoder_prior=true"],
        [
            "model=cvae",
            "data=conditional_manifold",
            "model.prior_in_decoder=true",
            "model.gated_decoder=true",
            "model.output_sigmoid=true",
            "model.activation=prelu",
        ],
        ["model=cvae", "data=conditional_manifold", "model.use_condition=false"],
        ["model=ivae", "data=nonlinear_ica", "model.learn_decoder_var=true", "data.centred=false"],
        ["model=ivae", "data=nonlinear_ica", "model.prior=standard", "model.encoder_uses_u=false", "model.beta=4"],
        [
            "model=bernoulli_mlp",
            "data._target_=helpers.TinyImageData",
            "model.encoder_hidden=[16]",
            "model.decoder_hidden=[16,16,16]",
            "model.skip=true",
        ],
        [
            "model=bernoulli_mlp",
            "data._target_=helpers.TinyImageData",
            "model.encoder_hidden=[16]",
            "model.decoder_hidden=[16,16]",
            "model.skip=false",
        ],
    ],
    ids=[
        "cvae_learned",
        "cvae_shared",
        "cvae_decoder_options",
        "cvae_no_condition",
        "ivae_learned_var",
        "betavae",
        "bernoulli_skip",
        "bernoulli_plain",
    ],
)
def test_stacked_terms_and_gradients_equal_each_models_own(make_cfg, overrides):
    cfg = make_cfg(*overrides, "logger=none", "torch_threads=1", "callbacks.progress_bar=null")
    runs = _member_models(cfg, [0, 1, 2])
    models = [r.model for r in runs]
    stacked = StackedModel(models)
    split = runs[0].datamodule.split("train")
    batch = {k: v[:16] for k, v in split.items() if k != "z_true"}
    noise = torch.randn(3 * 16, models[0].latent_dim, generator=torch.Generator().manual_seed(5))
    terms = member_terms(stacked, {k: torch.cat([v] * 3) for k, v in batch.items()}, noise)
    terms["loss"].sum().backward()
    for s, model in enumerate(models):
        with pytest.MonkeyPatch.context() as patch:  # model.loss's randn_like draws member s's noise
            patch.setattr(torch, "randn_like", lambda t, s=s: noise[s * 16 : (s + 1) * 16])
            own = model.loss(batch)
        own["loss"].backward()
        for key, value in own.items():
            assert terms[key][s].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-5), key
        unstacked = type(model)(data=runs[0].datamodule.spec, **_model_kwargs(cfg))
        stacked.unstack(s, unstacked)
        for (name, p), q in zip(model.named_parameters(), unstacked.parameters(), strict=True):
            assert torch.equal(p, q), name
        grads = _member_grads(stacked, s)
        for name, p in model.named_parameters():
            assert torch.allclose(grads[name], p.grad, rtol=1e-4, atol=1e-6), name


def test_flattened_parameters_are_views_of_one_tensor_whose_grad_collects_each_members_gradient(make_cfg):
    runs = _member_models(make_cfg(*IVAE), [0, 1])
    stacked = StackedModel([r.model for r in runs])
    params = list(stacked.parameters())
    before = [p.detach().clone() for p in params]
    flat = flatten_parameters(params)
    assert flat.shape == (2, sum(p[0].numel() for p in params))
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))  # values kept
    batch = {k: v[:16] for k, v in runs[0].datamodule.split("train").items() if k != "z_true"}
    noise = torch.randn(2 * 16, runs[0].model.latent_dim, generator=torch.Generator().manual_seed(5))
    loss = member_terms(stacked, {k: torch.cat([v] * 2) for k, v in batch.items()}, noise)["loss"]
    loss[1].backward(retain_graph=True)  # member 1's loss alone: its row of the flat gradient, not member 0's
    assert flat.grad[0].abs().max() == 0 and flat.grad[1].abs().max() > 0
    once = flat.grad.clone()
    loss[1].backward()  # accumulates in place into the same tensor
    assert torch.allclose(flat.grad, 2 * once)
    with torch.no_grad():
        flat[1] += 1.0  # an optimizer's update of the flat parameter moves the stacked ones
    assert all(torch.equal(p[1], b[1] + 1.0) and torch.equal(p[0], b[0]) for p, b in zip(params, before, strict=True))


def _model_kwargs(cfg):
    return {k: v for k, v in cfg.model.items() if k != "_target_"}


def _member_grads(stacked: StackedModel, s: int) -> dict[str, torch.Tensor]:
    grads = {name: values.grad[s] for name, values in stacked.scalars.items()}
    for name, member in stacked.member_modules.items():
        grads[f"{name}.weight"] = member.weight.grad[s]
        if getattr(member, "bias", None) is not None:
            grads[f"{name}.bias"] = member.bias.grad[s]
    return grads


def test_weighted_objective_pairs_points_within_their_own_member(make_cfg):
    runs = _member_models(make_cfg(*IVAE), [0, 1])
    model = runs[0].model
    z, mean, logvar = torch.randn(2 * 8, 5), torch.randn(2 * 8, 5), torch.randn(2 * 8, 5)
    recon = torch.rand(2, 8)
    from vaelab.models.gaussian import DiagonalGaussian
    from vaelab.models.ivae import weighted_objective

    posterior = member_loss.member_folded(DiagonalGaussian(mean, logvar), 2)
    log_q_zx = DiagonalGaussian(mean, logvar).log_prob(z).view(2, 8)
    both = weighted_objective(model.objective_weights, model.beta, z.view(2, 8, 5), posterior, None, recon, log_q_zx)
    assert both.shape == (2,)
    for s in range(2):
        rows = slice(8 * s, 8 * s + 8)
        own = model._weighted_objective(z[rows], DiagonalGaussian(mean[rows], logvar[rows]), None, recon[s])
        assert both[s].item() == pytest.approx(own.item(), rel=1e-6)


def test_final_metrics_agree_with_separate_runs(make_cfg):
    overrides = [*SHORT, "trainer.max_epochs=10", "logger=none"]
    results = train_seeds(make_cfg(*overrides, name="stacked"), [0, 1])
    for seed, result in zip([0, 1], results, strict=True):
        single = train(make_cfg(*overrides, f"seed={seed}", name=f"single_{seed}"))
        assert result["status"] == single["status"] == "completed"
        assert result["seed"] == seed and result["overrides"][-1] == f"seed={seed}"
        assert result["active_dims"] == single["active_dims"]
        assert result["steps"] == single["steps"] and result["epochs"] == single["epochs"]
        assert result["elbo"] == pytest.approx(single["elbo"], rel=1e-3)
        assert result["converged"] == single["converged"]


EXTENDING = [  # 4 epochs, then extensions of 2 (the budget: each test's own)
    *SHORT,
    "trainer.max_epochs=4",
    "callbacks.convergence.extend=true",
    "logger=none",
    "callbacks.convergence.extension_epochs=2",
    "callbacks.diagnostics.every_n_epochs=2",
]


def test_members_extend_training_or_stop_as_their_single_runs_do(make_cfg, monkeypatch):
    """Seed 0 converges (the verdict is patched) and stops after its one required extension; seeds 1 and 2 use
    the whole budget, on a fresh schedule per extension, while seed 0's weights stay frozen."""

    def verdict(self, history, module):
        return {"converged": module.eval_seed == 0, "convergence": {"reason": "patched", "checks": {}}}

    monkeypatch.setattr("vaelab.convergence.Convergence.verdict", verdict)
    overrides = [*EXTENDING, "callbacks.convergence.max_epochs=8"]
    results = train_seeds(make_cfg(*overrides, name="stacked"), [0, 1, 2])
    assert [r["epochs"] for r in results] == [6, 8, 8]
    for seed, result in zip([0, 1, 2], results, strict=True):
        single = train(make_cfg(*overrides, f"seed={seed}", name=f"single_{seed}"))
        assert (result["epochs"], result["steps"]) == (single["epochs"], single["steps"])
        assert result["elbo"] == pytest.approx(single["elbo"], rel=1e-3)
        assert result["active_dims"] == single["active_dims"]


def test_a_member_short_of_the_data_gets_gamma_lowered_as_its_single_run_does(make_cfg, monkeypatch):
    """``reopen_gamma_factor``: seed 1's verdict says its active dims fall short of the data (patched), so its
    extension starts with gamma / 100; seed 0's does not. Stacked members do what their single runs do."""

    def verdict(self, history, module):
        checks = {"dims_cover_data": module.eval_seed != 1}
        return {
            "converged": False,
            "convergence": {"reason": "patched", "checks": checks, "extensions": list(self.extensions)},
        }

    monkeypatch.setattr("vaelab.convergence.Convergence.verdict", verdict)
    overrides = [*EXTENDING, "callbacks.convergence.max_epochs=6", "callbacks.convergence.reopen_gamma_factor=100"]
    results = train_seeds(make_cfg(*overrides, name="stacked"), [0, 1])
    for seed, result in zip([0, 1], results, strict=True):
        single = train(make_cfg(*overrides, f"seed={seed}", name=f"single_{seed}"))
        for run in (result, single):
            (extension,) = run["convergence"]["extensions"]
            lowered = extension.get("log_gamma_lowered")
            assert (lowered is not None) == (seed == 1)
            if lowered:
                assert lowered[1] == pytest.approx(lowered[0] - math.log(100))
        stacked_lowered = result["convergence"]["extensions"][0].get("log_gamma_lowered")
        if stacked_lowered:
            assert stacked_lowered == pytest.approx(
                single["convergence"]["extensions"][0]["log_gamma_lowered"], rel=1e-4
            )
        assert result["elbo"] == pytest.approx(single["elbo"], rel=1e-3)
        assert result["gamma"] == pytest.approx(single["gamma"], rel=1e-3)
    unkicked = train(make_cfg(*overrides, "seed=1", "callbacks.convergence.reopen_gamma_factor=null", name="plain"))
    assert results[1]["gamma"] < unkicked["gamma"]  # the kick moved the model, not only the record


def test_ivae_mcc_agrees_with_separate_runs(make_cfg):
    overrides = [*IVAE, "trainer.max_steps=-1", "trainer.max_epochs=4"]
    results = train_seeds(make_cfg(*overrides, name="stacked"), [0, 1])
    for seed, result in zip([0, 1], results, strict=True):
        single = train(make_cfg(*overrides, f"seed={seed}", name=f"single_{seed}"))
        assert result["mcc"] == pytest.approx(single["mcc"], abs=1e-3)
        assert result["active_dims"] == single["active_dims"]


def test_members_share_one_copy_of_the_data(make_cfg, tmp_path):
    first = build_member(make_cfg(*VAE), 0, tmp_path / "seed_0")
    second = build_member(make_cfg(*VAE), 1, tmp_path / "seed_1", data_from=first)
    other = build_member(make_cfg(*VAE, "data.data_seed=7"), 2, tmp_path / "seed_2", data_from=first)
    assert second.run.datamodule.splits is first.run.datamodule.splits
    assert other.run.datamodule.splits is not first.run.datamodule.splits  # other data: kept apart


def test_a_diverging_member_stops_alone(make_cfg, tmp_path):
    cfg = make_cfg(*VAE, "trainer.max_steps=-1")
    members = [build_member(cfg, s, tmp_path / f"seed_{s}") for s in (0, 1, 2)]
    loop = SeedParallelLoop(members)
    with torch.no_grad():  # member 1's decoder so large that its loss overflows at once
        loop.stacked.member_modules["decoder.0"].weight[1] = 1e30
    before = [p.detach()[1].clone() for p in loop.stacked.parameters()]
    records = [RunRecord(m.directory, seed=m.seed) for m in members]
    results = _train(loop, records, tmp_path / "checkpoints" / "last.ckpt")
    assert [r["status"] for r in results] == ["completed", "diverged", "completed"]
    diverged = read_metrics(members[1].directory)
    assert diverged["diverged_at_step"] == 0 and diverged["diverged_on"] == "loss" and "error" in diverged
    assert all(torch.equal(p.detach()[1], b) for p, b in zip(loop.stacked.parameters(), before, strict=True))  # frozen
    assert all(torch.isfinite(p).all() for p in loop.stacked.parameters())
    assert results[0]["steps"] == results[2]["steps"] == 24


def test_a_member_whose_gradient_overflows_on_a_finite_loss_stops_with_finite_weights(make_cfg, tmp_path):
    """Checked every step, clipping or not: an infinite gradient must not reach the weights."""
    cfg = make_cfg(*VAE, "trainer.max_steps=-1")
    members = [build_member(cfg, s, tmp_path / f"seed_{s}") for s in (0, 1)]
    loop = SeedParallelLoop(members)
    scale = torch.ones(2, 1, 1)
    scale[1] = float("inf")
    loop.stacked.member_modules["decoder.0"].weight.register_hook(lambda g: g * scale)
    before = [p.detach()[1].clone() for p in loop.stacked.parameters()]
    records = [RunRecord(m.directory, seed=m.seed) for m in members]
    results = _train(loop, records, tmp_path / "checkpoints" / "last.ckpt")
    assert [r["status"] for r in results] == ["completed", "diverged"]
    diverged = read_metrics(members[1].directory)
    assert diverged["diverged_at_step"] == 0 and diverged["diverged_on"] == "gradient norm"
    assert all(torch.equal(p.detach()[1], b) for p, b in zip(loop.stacked.parameters(), before, strict=True))
    assert all(torch.isfinite(p).all() for p in loop.stacked.parameters())


def test_train_seeds_writes_each_members_run_directory(make_cfg, tmp_path):
    cfg = make_cfg(*VAE, "trainer.max_steps=-1", "logger=tensorboard", name="sp")
    results = train_seeds(cfg, [4, 5], overrides=["seeds=[4,5]", "trainer.max_epochs=2"])
    for seed, result in zip([4, 5], results, strict=True):
        run_dir = tmp_path / "sp" / f"seed_{seed}"
        record = read_metrics(run_dir)
        assert record["status"] == result["status"] == "completed"
        assert record["seed"] == seed and record["seed_parallel"] == 2
        assert record["overrides"] == ["trainer.max_epochs=2", f"seed={seed}"]
        assert math.isfinite(record["elbo"]) and record["steps"] == 24 and record["epochs"] == 2
        state = torch.load(run_dir / "checkpoints" / "model.ckpt")["state_dict"]
        assert state.keys() == build(cfg).module.state_dict().keys()
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(RunExistsError):
        train_seeds(cfg, [4, 5])
    again = train_seeds(make_cfg(*VAE, "trainer.max_steps=-1", "skip_completed=true", name="sp"), [4, 5])
    assert [r["skipped"] for r in again] == [True, True]


@pytest.mark.parametrize("how", ["ckpt_path", "skip_completed"])
def test_an_interrupted_run_resumes_every_member(make_cfg, tmp_path, monkeypatch, how):
    """SIGINT at the end of epoch 1 (member 1 already diverged, member 2 already finished by then): the state
    is saved, every member's metrics.json says interrupted, and the resumed run (ckpt_path=<its last.ckpt>, or
    skip_completed=true as a re-run sweep does) ends where the uninterrupted one does, bit for bit."""
    overrides = [
        *VAE,
        "trainer.max_steps=-1",
        "trainer.max_epochs=4",
        "callbacks.diagnostics.every_n_epochs=2",
        "callbacks.last_checkpoint.every_n_epochs=3",
    ]
    end_epoch, fit = SeedParallelLoop._end_epoch, SeedParallelLoop.fit

    def fit_with_trouble(loop, *args):  # member 1 diverges at once; member 2 is done after epoch 0
        with torch.no_grad():
            loop.stacked.member_modules["decoder.0"].weight[1] = 1e30
        fit(loop, *args)

    def end_epoch_finishing_member_2(loop, stopped):
        end_epoch(loop, stopped)
        if loop.epoch == 0:
            loop.members[2].status = "finished"
            loop._freeze(2)

    monkeypatch.setattr(SeedParallelLoop, "_end_epoch", end_epoch_finishing_member_2)
    monkeypatch.setattr(SeedParallelLoop, "fit", fit_with_trouble)
    whole = train_seeds(make_cfg(*overrides, name="whole"), [0, 1, 2])

    def end_epoch_interrupted(loop, stopped):
        end_epoch_finishing_member_2(loop, stopped)
        if loop.epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(SeedParallelLoop, "_end_epoch", end_epoch_interrupted)
    with pytest.raises(RunInterrupted):
        train_seeds(make_cfg(*overrides, name="cut"), [0, 1, 2])
    saved = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    for seed in (0, 1, 2):
        record = read_metrics(tmp_path / "cut" / f"seed_{seed}")
        assert record["status"] == "interrupted" and record["checkpoint"] == str(saved)
        assert record["interrupted_at_epoch"] == 1
    monkeypatch.setattr(SeedParallelLoop, "_end_epoch", end_epoch)  # the resumed loop needs no help
    monkeypatch.setattr(SeedParallelLoop, "fit", fit)
    with pytest.raises(ConfigError, match="holds seeds"):
        train_seeds(make_cfg(*overrides, f"ckpt_path={saved}", name="cut"), [0, 1])
    resume = f"ckpt_path={saved}" if how == "ckpt_path" else "skip_completed=true"
    resumed = train_seeds(make_cfg(*overrides, resume, name="cut"), [0, 1, 2])
    assert [r["status"] for r in resumed] == [r["status"] for r in whole] == ["completed", "diverged", "completed"]
    for before, after in zip(whole, resumed, strict=True):
        assert after["resumed_from"] == str(saved)
        for key in ("elbo", "active_dims", "steps", "epochs", "gamma", "diverged_at_step", "last_finite_loss"):
            assert after.get(key) == before.get(key), key


def test_restarts_trained_stacked_match_restarts_trained_one_by_one(make_cfg, tmp_path):
    from vaelab.restarts import fit_restarts as one_by_one
    from vaelab.seed_parallel.restarts import fit_restarts as stacked

    def fit(cfg, record):  # what vaelab.train does for one initialisation
        run = build(cfg)
        run.trainer.fit(run.module, datamodule=run.datamodule)
        return run, next(c for c in run.callbacks if type(c).__name__ == "Diagnostics")

    overrides = [*VAE, "trainer.max_steps=-1", "trainer.max_epochs=3", "restarts=3"]
    run, diagnostics, fields = stacked(make_cfg(*overrides, name="sp"), RunRecord(tmp_path / "sp"))
    reference_run, reference_diagnostics, reference = one_by_one(
        make_cfg(*overrides, name="one"), RunRecord(tmp_path / "one"), fit
    )
    assert fields["restart_kept"] == reference["restart_kept"]
    for attempt, expected in zip(fields["restarts"], reference["restarts"], strict=True):
        assert attempt["seed"] == expected["seed"] and attempt["epochs"] == expected["epochs"]
        assert attempt["val_elbo"] == pytest.approx(expected["val_elbo"], rel=1e-4)
    assert fields["restart_kept_dir"] == f"restarts/{fields['restart_kept']}"
    assert run.trainer.global_step == reference_run.trainer.global_step == 36
    test = diagnostics.run(run.trainer, run.module, "test")  # the kept weights, tested as vaelab.train tests them
    expected = reference_diagnostics.run(reference_run.trainer, reference_run.module, "test")
    assert test["elbo"] == pytest.approx(expected["elbo"], rel=1e-4)
    assert test["active_dims"] == expected["active_dims"]


def _logged(run_dir: Path) -> dict[str, list[float]]:
    """key -> the values of a run's CSV log, in step order."""
    import csv

    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    keys = {k for row in rows for k, v in row.items() if v and k not in ("step", "epoch")}
    return {k: [float(row[k]) for row in sorted(rows, key=lambda r: int(r["step"])) if row[k]] for k in keys}


@pytest.mark.parametrize(
    "model, expected",
    [(VAE, "model/gamma"), ([*IVAE, "data.points_per_segment=400"], "val/neg_elbo")],  # 400 validation points
    ids=["vae", "ivae_weighted"],
)
def test_members_log_what_their_single_runs_log(make_cfg, tmp_path, model, expected):
    """The same keys and values (Lightning logs a single run's ``val/<term>`` at other step numbers); the iVAE's
    validation objective is evaluated in eval mode (chunked estimates) on both sides."""
    overrides = [
        *model,
        "trainer.max_steps=-1",
        "logger=csv",
        "trainer.log_every_n_steps=5",
        "trainer.check_val_every_n_epoch=1",
    ]
    train_seeds(make_cfg(*overrides, name="sp"), [2])
    train(make_cfg(*overrides, "seed=2", name="single"))
    member, single = _logged(tmp_path / "sp" / "seed_2"), _logged(tmp_path / "single")
    assert member.keys() == single.keys()
    assert {"train/loss", "train/lr", expected, "val/loss", "val/active_dims", "final/elbo"} <= single.keys()
    for key, values in single.items():
        assert member[key] == pytest.approx(values, rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize(
    "seeds, message", [([], "seeds=[] is empty"), ([1, 2, 1], "repeats [1]"), ("012", "must be a list")]
)
def test_bad_seeds_are_one_line_errors(make_cfg, seeds, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train_seeds(make_cfg(*VAE), seeds)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model=cvae_conv", "data._target_=helpers.TinyImageData", "model.use_condition=false"],
            "architecture=conv cannot be trained seed-parallel",
        ),
        (["inference=sa"], "inference=sa .* cannot be trained seed-parallel"),
        (
            ["model=pixelcnn", "data._target_=helpers.TinyImageData"],
            "model=PixelCNNVAE cannot be trained seed-parallel",
        ),
        (["trainer=ddp"], "one process on one device"),
        (["restarts=2"], "restarts=2"),
    ],
)
def test_what_cannot_be_stacked_is_a_one_line_error(make_cfg, overrides, message):
    cfg = make_cfg(*VAE, *overrides)
    with pytest.raises(ConfigError, match=message):
        train_seeds(cfg, [0, 1])
    assert not list(Path(cfg.paths.output_dir).glob("*/metrics.json"))  # nothing written
