"""End-to-end runs through the real config: training, the run contract, reproducibility, resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import EASY, HAS_CXX, SHARED_DATA, SHORT, read_metrics
from vaelab.build import build
from vaelab.errors import ConfigError, DataError, RunInterrupted
from vaelab.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"
# numbers that must match between two runs with the same seed (everything but timing and paths)
VOLATILE = {"wall_time_s", "startup_s", "run_dir", "overrides", "resumed_from"}


def _config_options():
    """Every YAML under conf/ as the override that selects it (config.yaml itself: no override)."""
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if rel.parts[0] in ("hydra", "paths") or rel == Path("config.yaml"):
            yield pytest.param([], id=str(rel))  # part of every composition
        else:
            yield pytest.param([f"{rel.parent.as_posix()}={rel.stem}"], id=str(rel))


NEEDS_HARDWARE = ("trainer/gpu.yaml", "trainer/ddp.yaml")  # composed and resolved only, here
NEEDS_PLUGIN = {"hparams_search": "hydra_plugins.hydra_optuna_sweeper"}  # optional extras
NEEDS_DATA = {
    "model=ivae": ["data=nonlinear_ica"],  # models that need data other than the default (u)
    "model=vae_ica": ["data=nonlinear_ica"],  # latent_dim null follows data.n_sources
    "model=text_vae": ["data=ptb"],
    "model=cvae": ["data=conditional_manifold"],
    "model=cvae_lstm": ["data=arma_sequence"],  # need c
    "model=cvae_conv": ["data=mnist", "data.condition=true"],
    "model=bernoulli_mlp": ["data=mnist"],
    "model=pixelcnn": ["data=mnist"],  # x in [0, 1]
    **{f"data={d}": ["model=text_vae"] for d in ("ptb", "yahoo", "yahoo_local")},
}
NOT_SHARED = {"data=yahoo": "yahoo.train.txt"}  # files absent from the shared data (SOURCES.md): the error names them


@pytest.mark.parametrize("overrides", _config_options())
def test_every_config_composes_and_builds(make_cfg, overrides):
    group = overrides[0].split("=")[0] if overrides else None
    if group in NEEDS_PLUGIN:
        pytest.importorskip(
            NEEDS_PLUGIN[group], reason=f"{group} needs an optional plugin (pip install 'vaelab[optuna]')"
        )
    cfg = make_cfg(*overrides, *NEEDS_DATA.get(overrides[0] if overrides else "", []))
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if cfg.compile and not HAS_CXX:  # e.g. experiment=ivae: building checks for the compiler torch.compile needs
        cfg.compile = False
    if "data_dir" in cfg.data:  # a dataset read from files: build it from the shared copy when there is one
        if not (SHARED_DATA / "SOURCES.md").is_file():
            pytest.skip(f"{overrides[0]} reads data files; the shared data folder ({SHARED_DATA}) is not present")
        cfg.data.data_dir = str(SHARED_DATA)
    if overrides and overrides[0].replace("=", "/") + ".yaml" in NEEDS_HARDWARE:
        instantiate(cfg.data)
        return
    if overrides and overrides[0] in NOT_SHARED:
        with pytest.raises(DataError, match=NOT_SHARED[overrides[0]]):
            build(cfg)
        return
    run = build(cfg)  # data, model, module, every callback and logger, the trainer
    assert run.model.latent_dim == (cfg.model.latent_dim or cfg.data.get("n_sources"))


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_other_loggers_complete_a_run(make_cfg, logger):
    result = train(make_cfg(*SHORT, "trainer.max_epochs=2", f"logger={logger}"))
    assert result["status"] == "completed"


def test_max_steps_stops_mid_fetch_with_a_matching_schedule(make_cfg):
    result = train(make_cfg(*SHORT, "trainer.max_steps=37", "trainer.max_epochs=-1"))
    assert result["status"] == "completed" and result["steps"] == 37


@pytest.fixture(scope="module")
def easy_run(tmp_path_factory):
    from vaelab.config import compose_config

    run_dir = tmp_path_factory.mktemp("easy") / "run"
    result = train(compose_config(EASY, output_dir=run_dir))
    return run_dir, result


def test_training_recovers_manifold_dimension(easy_run):
    run_dir, result = easy_run
    metrics = read_metrics(run_dir)
    assert metrics == {k: v for k, v in result.items()} | {}  # what train returns is what it wrote
    assert metrics["status"] == "completed"
    assert metrics["active_dims"] == 2 == metrics["true_manifold_dim"]
    enc_var = sorted(metrics["per_dim_encoder_var"])
    assert len(enc_var) == 20 and enc_var[1] < 0.05 and enc_var[2] > 0.5  # two active dims, clearly apart
    assert metrics["gamma"] < 0.01 and metrics["recon_mse"] < 1e-3
    for key in ("active_units", "kl", "elbo", "recon_nll", "per_dim_kl", "seed", "wall_time_s", "epochs"):
        assert key in metrics
    assert metrics["seed"] == 0 and "data.manifold_dim=2" in metrics["overrides"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("best-epoch*.ckpt"))


def test_tensorboard_has_terms_dims_and_hparams(easy_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = easy_run
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/recon_nll",
        "train/kl",
        "model/gamma",
        "val/loss",
        "val/active_dims",
        "val/encoder_var/dim_000",
        "val/encoder_var/dim_019",
        "test/encoder_var/dim_019",
        "final/active_dims",
        "final/gamma",
    ):
        assert tag in scalars, tag
    histograms = set(acc.Tags()["histograms"])
    assert {"val/encoder_var", "val/posterior_mean/dim_000", "test/posterior_mean/dim_019"} <= histograms
    active = [e.value for e in acc.Scalars("val/active_dims")]
    assert len(active) >= 5 and active[0] == 0 and active[-1] == 2  # active dims over training
    gamma = [e.value for e in acc.Scalars("model/gamma")]
    assert gamma[-1] < gamma[0] / 10
    # the HPARAMS tab: an experiment summary carrying the config and the final metrics
    from tensorboard.plugins.hparams import plugin_data_pb2

    plugin = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"])
    assert session.session_start_info.hparams["data/manifold_dim"].number_value == 2
    experiment = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/experiment"])
    assert "final/active_dims" in {m.name.tag for m in experiment.experiment.metric_infos}


def test_same_seed_same_numbers_and_other_seed_differs(make_cfg):
    first = train(make_cfg(*SHORT, name="a"))
    again = train(make_cfg(*SHORT, name="b"))
    other = train(make_cfg(*SHORT, "seed=1", name="c"))
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE}  # noqa: E731
    assert strip(first) == strip(again)
    assert first["elbo"] != other["elbo"]
    assert first["per_dim_encoder_var"] != other["per_dim_encoder_var"]


def test_step_hooks_of_callbacks_run_and_do_not_change_the_numbers(make_cfg):
    """Without step hooks a step skips Lightning's dispatch (plain_single_device); a callback with step hooks
    gets every call, and both paths give the same numbers."""
    plain = train(make_cfg(*SHORT, name="plain"))
    hooked_cfg = make_cfg(*SHORT, "+callbacks.count._target_=helpers.CountStepHooks", name="hooked")
    hooked = train(hooked_cfg)
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE}  # noqa: E731
    assert strip(plain) == strip(hooked)
    counts = json.loads((Path(hooked["run_dir"]) / "step_hooks.json").read_text())
    hooks = ("before_backward", "after_backward", "before_optimizer_step")
    assert hooked["steps"] > 0 and counts == dict.fromkeys(hooks, hooked["steps"])
    for cfg, fast in (
        (make_cfg(*SHORT, "trainer.max_epochs=1", name="p1"), True),
        (
            make_cfg(*SHORT, "trainer.max_epochs=1", "+callbacks.count._target_=helpers.CountStepHooks", name="h1"),
            False,
        ),
    ):
        run = build(cfg)
        run.trainer.fit(run.module, datamodule=run.datamodule)
        assert run.module._fast_steps is fast


@pytest.mark.skipif(not HAS_CXX, reason="torch.compile needs a C++ compiler")
def test_compiled_loss_trains_like_the_eager_one(make_cfg):
    """compile=true: training steps run torch.compile(model.loss) with eager's random stream; evaluation stays
    eager. Kernels round differently, so the runs agree closely but not bit for bit."""
    overrides = [
        *SHORT,
        "trainer.max_epochs=10",
        "trainer.check_val_every_n_epoch=10",
        "callbacks.diagnostics.every_n_epochs=10",
    ]
    from torch._dynamo.utils import counters

    eager = train(make_cfg(*overrides, name="eager"))
    graphs = counters["stats"]["unique_graphs"]
    compiled = train(make_cfg(*overrides, "compile=true", name="compiled"))
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo did capture the loss (not an eager fallback)
    assert compiled["steps"] == eager["steps"] and compiled["active_dims"] == eager["active_dims"]
    assert compiled["elbo"] == pytest.approx(eager["elbo"], rel=1e-3)  # measured: equal to 1e-6 after 120 steps
    assert compiled["gamma"] == pytest.approx(eager["gamma"], rel=1e-3)
    assert compiled["per_dim_encoder_var"] == pytest.approx(eager["per_dim_encoder_var"], rel=1e-2, abs=1e-4)


def test_compile_is_refused_where_the_loss_reads_a_changing_python_number():
    from vaelab.schedules import KLWarmup
    from vaelab.training_module import VAETrainingModule

    model = torch.nn.Linear(1, 1)
    model.kl_weight, model.loss = 1.0, lambda batch: {}  # as SemiAmortized: the warm-up sets kl_weight every step
    with pytest.raises(ConfigError, match="compile=true with a KL warm-up and inference=sa"):
        VAETrainingModule(model, torch.optim.Adam, kl_warmup=KLWarmup(0.1, epochs=1), compile_loss=True)
    VAETrainingModule(model, torch.optim.Adam, kl_warmup=KLWarmup(0.1, epochs=1))  # eager: fine


def test_compile_without_a_cpp_compiler_is_a_config_error_before_training(make_cfg, monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, "no-such-cxx-compiler"))
    with pytest.raises(ConfigError, match="compile=true needs a C.. compiler .*set compile=false"):
        build(make_cfg(*SHORT, "compile=true"))
    build(make_cfg(*SHORT))  # compile=false: no compiler needed


def test_resume_after_interrupt_matches_uninterrupted_run(make_cfg, tmp_path):
    uninterrupted = train(make_cfg(*SHORT, name="full"))
    with pytest.raises(RunInterrupted):  # the epoch finishes, last.ckpt is saved
        train(
            make_cfg(
                *SHORT,
                "+callbacks.interrupt._target_=helpers.InterruptAfterEpoch",
                "+callbacks.interrupt.epoch=9",
                name="stopped",
            )
        )
    stopped = read_metrics(tmp_path / "stopped")
    assert stopped["status"] == "interrupted"
    ckpt = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["epoch"] == 9  # the newest state, not an older best
    resumed = train(make_cfg(*SHORT, f"ckpt_path={ckpt}", name="resumed"))
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE}  # noqa: E731
    assert strip(resumed) == strip(uninterrupted)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.latent_dim=1"], "model.latent_dim=1 is below data.manifold_dim=2"),
        (["model.latent_dim=0"], "model.latent_dim=0 must be >= 1"),
        (["data.manifold_dim=11"], "data.manifold_dim=11 exceeds data.ambient_dim=10"),
        (
            ["callbacks.diagnostics.evaluators.active_dims.threshold=0"],
            "callbacks.diagnostics.evaluators.active_dims.threshold=0",
        ),
        (
            ["callbacks.diagnostics.evaluators.active_units.threshold=-0.01"],
            "callbacks.diagnostics.evaluators.active_units.threshold=-0.01",
        ),
        (["data.batch_size=0"], "data.batch_size=0 must be >= 1"),
        (["data.split=[0.5,0.1,0.1]"], "data.split"),
    ],
)
def test_bad_config_fails_before_training_and_is_recorded(make_cfg, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        train(make_cfg(*SHORT, *overrides))
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "failed" and message in metrics["error"]
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_unknown_config_option_names_the_choices(make_cfg):
    with pytest.raises(HydraException, match="synthetic_manifold"):
        make_cfg("data=no_such_dataset")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VAELAB_LOG_DIR": str(cwd / "outputs")}
    return subprocess.run(
        [sys.executable, "-m", "vaelab.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_cli_error_is_one_line_with_exit_code_2(tmp_path):
    proc = _cli("model.latent_dim=1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("vaelab-train: error: model.latent_dim=1")
    assert "Traceback" not in proc.stderr


def test_cli_help_and_cfg(tmp_path):
    help_text = _cli("--help", cwd=tmp_path).stdout
    for group in ("data:", "model:", "trainer:", "logger:", "callbacks:", "experiment:"):
        assert group in help_text
    job = _cli("--cfg", "job", "data.manifold_dim=3", cwd=tmp_path)
    assert job.returncode == 0 and "manifold_dim: 3" in job.stdout


def test_default_quick_start_run_finds_two_active_dims(tmp_path):
    """The README's main job, exactly: `vaelab-train` with no arguments."""
    proc = _cli(cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "active_dims = 2" in proc.stdout and "gamma = " in proc.stdout and "recon_mse = " in proc.stdout
    run_dirs = list((tmp_path / "outputs" / "runs").glob("*/*_vae_manifold"))
    assert len(run_dirs) == 1 and str(run_dirs[0].name) in proc.stdout
    metrics = read_metrics(run_dirs[0])
    assert metrics["active_dims"] == 2
    assert metrics["converged"] is True and "converged: yes" in proc.stdout  # after a confirming extension
    assert len(metrics["convergence"]["extensions"]) >= 1


@pytest.mark.slow
@pytest.mark.parametrize(("manifold_dim", "epochs"), [(1, 300), (2, 300), (3, 300), (4, 300), (5, 300), (8, 600)])
def test_default_vae_learns_the_manifold_dimension(make_cfg, manifold_dim, epochs):
    """Zheng et al.'s claim at the default (CPU) size: AD = r for r-dim manifolds in R^20, kappa = 20.
    r = 8 needs twice the default steps (at 300 epochs gamma is still falling and AD reads 7)."""
    result = train(
        make_cfg(f"data.manifold_dim={manifold_dim}", f"trainer.max_epochs={epochs}", "callbacks.progress_bar=null")
    )
    assert result["active_dims"] == manifold_dim == result["active_units"]


def test_step_decay_multiplies_the_learning_rate_at_its_fractions():
    import torch

    from vaelab.schedules import step_decay

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = step_decay(optimizer, total_steps=100, at_fractions=[0.5, 0.8], factor=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[49] == 1.0 and lrs[50] == pytest.approx(0.1) and lrs[79] == pytest.approx(0.1)
    assert lrs[80] == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="scheduler.factor"):
        step_decay(optimizer, 100, [0.5], factor=1.0)
