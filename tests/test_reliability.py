"""Reliability (issue 8): bad input fails before training with one line and loses nothing; divergence stops at
once and keeps a loadable checkpoint; SIGINT/SIGTERM save and resume bit-identically; kill -9 loses at most
the work since the last periodic checkpoint; an interrupted sweep finishes with skip_completed; no run ever
shares or overwrites a directory."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.errors import HydraException

from conftest import SHORT, read_metrics
from vaelab import summarize
from vaelab.cli import format_summary
from vaelab.errors import ConfigError, DataError, DivergenceError, RunExistsError, RunInterrupted
from vaelab.run_record import RunRecord
from vaelab.train import train

pytestmark = pytest.mark.integration  # failing, interrupted, killed and resumed runs, mostly as processes

TESTS = Path(__file__).resolve().parent
# everything but timing, paths and how the run was started must match between a resumed and a whole run
VOLATILE = {"wall_time_s", "startup_s", "run_dir", "overrides", "resumed_from"}
# a run of 30 epochs of 12 steps, a probe callback driven by the environment, last.ckpt every 5 epochs
RUN = [
    *SHORT,
    "trainer.max_epochs=30",
    "+callbacks.probe._target_=helpers.EnvProbe",
    "callbacks.last_checkpoint.every_n_epochs=5",
]


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAELAB_TEST_")}
    return {
        **env,
        "VAELAB_LOG_DIR": str(tmp_path / "outputs"),
        "PYTHONPATH": os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
        **extra,
    }


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vaelab.train", *args],
        cwd=cwd,
        env=_env(cwd, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _start(*args: str, cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaelab.train", *args],
        cwd=cwd,
        env=_env(cwd, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {path.name} appeared: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------------
# bad input: one table, each case checked for its message, the record, and that nothing else was touched

HYDRA = "hydra"  # a composition error: Hydra's message names the key; no run directory is made
# rows starting with one of these choose their data: they run on SMALL rather than SHORT (its data keys)
COND = ["data=conditional_manifold", "data.n_samples=1000", "data.batch_size=100"]  # r = 10, t = 5 in R^20
ICA = ["data=nonlinear_ica", "data.n_segments=4", "data.points_per_segment=50", "data.batch_size=32"]  # 5 in R^5
IMAGES = ["data._target_=helpers.TinyImageData", "data.n_samples=64", "data.batch_size=16"]
TEXT = [
    "data=ptb",
    "data.dataset=tiny",
    "data.data_dir={tmp}/text",
    "data.train=train.txt",  # see tiny_text
    "data.valid=valid.txt",
    "data.test=test.txt",
    "data.batch_size=2",
    "data.eval_batch_size=4",
]
SMALL = ["torch_threads=1", "callbacks.progress_bar=null", "trainer.max_epochs=2"]
BAD_INPUT = [
    (["model.latent_dim=0"], "model.latent_dim=0 must be >= 1"),
    (["model.latent_dim=-1"], "model.latent_dim=-1 must be >= 1"),
    (["model.latent_dim=1"], "model.latent_dim=1 is below data.manifold_dim=2"),
    (["data.manifold_dim=11"], "data.manifold_dim=11 exceeds data.ambient_dim=10"),
    (["data.manifold_dim=0"], "data.manifold_dim=0 must be >= 1"),
    (
        ["callbacks.diagnostics.evaluators.active_dims.threshold=0"],
        "callbacks.diagnostics.evaluators.active_dims.threshold=0",
    ),
    (
        ["callbacks.diagnostics.evaluators.active_units.threshold=-0.01"],
        "callbacks.diagnostics.evaluators.active_units.threshold=-0.01",
    ),
    (["callbacks.diagnostics.every_n_epochs=0"], "callbacks.diagnostics.every_n_epochs=0 must be >= 1"),
    (["callbacks.last_checkpoint.every_n_epochs=0"], "callbacks.last_checkpoint.every_n_epochs=0 must be >= 1"),
    (["optimizer.lr=0"], "optimizer.lr=0 must be a finite number > 0"),
    (["optimizer.lr=-0.001"], "optimizer.lr=-0.001 must be a finite number > 0"),
    (["optimizer.lr=nan"], "optimizer.lr=nan must be a finite number > 0"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1 must be a finite number >= 0"),
    (["+optimizer.betas=[0.9,1.5]"], "optimizer=adam: Invalid beta parameter"),
    (["scheduler.pct_start=1.5"], "scheduler=onecycle: Expected float between 0 and 1 pct_start"),
    (["data.batch_size=0"], "data.batch_size=0 must be >= 1"),
    (["data.batch_size=5000"], "data.batch_size=5000 exceeds the 3200 training samples"),
    (["data.split=[0.5,0.1,0.1]"], "data.split=[0.5, 0.1, 0.1] must be three positive fractions summing to 1"),
    (["model.gamma_floor=0"], "model.gamma_floor=0 must be > 0"),
    (["model.activation=bogus"], "model.activation='bogus' is unknown"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1 and trainer.max_steps=-1 are both unlimited"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 must be > 0"),
    (["trainer=gpu"], "trainer=gpu"),
    # the models and datasets of the CVAE, iVAE, Skip-VAE and text issues: incompatible pairs ...
    (["model=cvae"], "model=cvae needs a condition c but data=synthetic_manifold has none"),
    ([*IMAGES, "model=cvae_conv"], "model=cvae needs a condition c but data=tiny_images has none"),
    (["model=cvae_conv"], "model.architecture=conv is an image model"),
    ([*COND, "model=cvae_lstm"], "model.architecture=lstm reads sequences of frames"),
    (
        [*COND, "model=cvae", "model.use_condition=false", "model.prior=learned"],
        "['model.prior=learned'] need the condition but model.use_condition=false; set model.use_condition=true",
    ),
    (
        ["model=ivae"],
        "model.prior=conditional and model.encoder_uses_u=true need an auxiliary variable u, and "
        "data=synthetic_manifold has none",
    ),
    ([*COND, "model=ivae", "model.prior=standard"], "model.encoder_uses_u=true need an auxiliary variable u"),
    (
        ["model=pixelcnn"],
        "model=pixelcnn needs image data (C, H, W); data=synthetic_manifold has x_shape (10,); use data=mnist",
    ),
    (
        [*IMAGES, "model=text_vae"],
        "model=text_vae needs text data (e.g. data=ptb or data=yahoo_local); data=tiny_images",
    ),
    ([*TEXT, "model=bernoulli_mlp"], "model=bernoulli_mlp is an image model (Bernoulli pixels) but data=tiny is text"),
    ([*TEXT, "model=pixelcnn"], "model=pixelcnn needs image data (C, H, W); data=tiny has x_shape"),
    ([*TEXT, "model=vae"], "model=vae models real-valued x but data=tiny is text"),
    ([*TEXT, "model=cvae", "model.use_condition=false"], "model=cvae models real-valued x but data=tiny is text"),
    ([*TEXT, "model=vae_ica"], "model=ivae (or vae_ica) models real-valued x but data=tiny is text"),
    (
        [*ICA, "model=bernoulli_mlp"],
        "model=bernoulli_mlp has a Bernoulli likelihood, which needs data in [0, 1], "
        "but data=nonlinear_ica has x_range=None",
    ),
    # ... impossible sizes ...
    ([*COND, "model=cvae", "model.latent_dim=0"], "model.latent_dim=0 must be >= 1"),
    ([*COND, "model=cvae", "model.latent_dim=4"], "model.latent_dim=4 is below the 5 active dims"),
    ([*ICA, "model=ivae", "model.latent_dim=0"], "model.latent_dim=0 must be >= 1"),
    ([*IMAGES, "model=bernoulli_mlp", "model.latent_dim=0"], "model.latent_dim=0 must be >= 1"),
    ([*IMAGES, "model=pixelcnn", "model.latent_dim=0"], "model.latent_dim=0"),
    ([*TEXT, "model=text_vae", "model.latent_dim=0"], "model.latent_dim=0 must be >= 1"),
    ([*COND, "data.condition_rank=11"], "data.condition_rank=11 must be in 1..data.manifold_dim=10"),
    ([*COND, "data.manifold_dim=21"], "data.manifold_dim=21 exceeds data.ambient_dim=20"),
    (
        ["data=continuous_groups", "data.n_per_group=100", "data.group_ranks=[2,13]"],
        "data.group_ranks=[2, 13] must be a non-empty list of condition ranks t in 1..data.manifold_dim=12",
    ),
    (
        ["data=union_manifold", "data.n_per_class=100", "data.class_manifold_dims=[1,21]"],
        "data.class_manifold_dims=[1, 21] must be a non-empty list of dims in 1..data.ambient_dim=20",
    ),
    (["data=arma_sequence", "data.n_samples=1000", "data.window=1"], "data.window=1 must be >= 2"),
    ([*ICA, "data.points_per_segment=1"], "data.points_per_segment=1 must be >= 2"),
    ([*ICA, "data.n_sources=6"], "data.data_dim=5 is below data.n_sources=6"),
    # ... and bad numbers of SA-VAE, KL warm-up and the collapse diagnostics
    (["inference=sa", "inference.steps=-1"], "inference.steps=-1 must be >= 0"),
    (["inference=sa", "inference.lr=0"], "inference.lr=0 must be > 0"),
    (["inference=sa", "inference.momentum=1"], "inference.momentum=1 must be in [0, 1)"),
    (["kl_warmup=linear", "kl_warmup.beta0=1.5"], "kl_warmup.beta0=1.5 must be in [0, 1]"),
    (["kl_warmup=linear", "kl_warmup.epochs=0"], "kl_warmup.epochs=0 / kl_warmup.steps=None must be > 0"),
    (["kl_warmup=linear", "kl_warmup.steps=100"], "kl_warmup.epochs=10 and kl_warmup.steps=100: set exactly one"),
    (["kl_warmup=linear", "kl_warmup.epochs=1000"], "kl_warmup.epochs=1000 is longer than the run ("),
    (
        ["kl_warmup=linear", "kl_warmup.epochs=null", "kl_warmup.steps=100000"],
        "kl_warmup.steps=100000 is longer than the run (",
    ),
    (
        ["callbacks.diagnostics.evaluators.iw_nll.samples=-1"],
        "callbacks.diagnostics.evaluators.iw_nll.samples=-1 must be >= 0",
    ),
    (
        ["callbacks.diagnostics.evaluators.iw_nll.points=-5"],
        "callbacks.diagnostics.evaluators.iw_nll.points=-5 must be >= 0",
    ),
    (
        ["callbacks.diagnostics.evaluators.mutual_information.points=-1"],
        "callbacks.diagnostics.evaluators.mutual_information.points=-1 must be >= 0",
    ),
    (
        ["callbacks.diagnostics.evaluators.mutual_information.batch_size=0"],
        "callbacks.diagnostics.evaluators.mutual_information.batch_size=0 must be >= 1",
    ),
    # text data files: missing, corrupt (size/md5), empty, missing vocabulary
    ([*TEXT, "data.vocab=no_such_vocab.txt"], "data.vocab=no_such_vocab.txt: "),
    ([*TEXT, "data.vocab=empty.txt"], "empty.txt: empty text file"),
    ([*TEXT, "data.valid=blank.txt"], "blank.txt: empty text file"),
    (["data=ptb", "data.data_dir={tmp}/nowhere"], "data.train=ptb.train.txt: ptb: 1 of 1 files missing"),
    (["data=ptb", "data.data_dir={tmp}/text"], "ptb.train.txt: 12 bytes, expected 5101618"),
    (["data.no_such_key=1"], HYDRA + ":no_such_key"),
    (["no_such_key=1"], HYDRA + ":no_such_key"),
    (["model=no_such_model"], HYDRA + ":no_such_model"),
]


@pytest.fixture
def neighbour(tmp_path):
    """A finished run next to the failing one: it must come out untouched."""
    run = tmp_path / "neighbour"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "elbo": 1.0}))
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    yield
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def tiny_text(root: Path) -> None:
    """A corpus for data=ptb data.dataset=tiny in root/tiny (3 training documents), an empty and an all-blank
    file beside it, and a 12-byte stand-in for ptb.train.txt in root/ptb."""
    (root / "tiny").mkdir(parents=True)
    (root / "ptb").mkdir()
    for name, text in (
        ("train.txt", "the cat sat\nthe dog sat on the mat\na cat\n"),
        ("valid.txt", "the cat\n"),
        ("test.txt", "the mat\ndog\n"),
        ("empty.txt", ""),
        ("blank.txt", "\n  \n"),
    ):
        (root / "tiny" / name).write_text(text)
    (root / "ptb" / "ptb.train.txt").write_text("not the ptb\n")


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT])
def test_bad_input_fails_before_training_with_one_line_naming_the_key(
    make_cfg, tmp_path, neighbour, overrides, message
):
    if overrides == ["trainer=gpu"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run_dir = tmp_path / "run"
    if message.startswith(HYDRA):
        with pytest.raises(HydraException, match=message.split(":", 1)[1]):
            make_cfg(*SHORT, *overrides)
        assert not run_dir.exists()
        return
    tiny_text(tmp_path / "text")
    base = SMALL if overrides[0].startswith("data=") else SHORT
    with pytest.raises((ConfigError, DataError)) as err:
        train(make_cfg(*base, *(o.replace("{tmp}", str(tmp_path)) for o in overrides)))
    assert message in str(err.value) and "\n" not in str(err.value)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "failed" and message in metrics["error"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json"]  # no checkpoints, no tensorboard


# the command line: every error is one line on stderr (no traceback) with its exit code, 2 for a config error
# (reported before torch and Lightning load: test_cli), 1 for a diverged run
FAST = ["debug=fast", "data.n_samples=1000", "logger=none", "callbacks.progress_bar=null"]
CLI_ERRORS = [
    (["model.latent_dim=abc"], 2, "error: model.latent_dim='abc' must be an integer"),
    (["seed=-1"], 2, "error: seed=-1 must be an integer in 0..4294967295"),
    (["model.foo=1"], 2, "error: model.foo=1: model=vae (GaussianVAE) has no such argument; its keys are: latent_dim,"),
    (["+model.foo=1"], 2, "error: model.foo: model=vae (GaussianVAE) has no such argument; its keys are: latent_dim,"),
    (["data.foo=1"], 2, "data.foo=1: data=synthetic_manifold (SyntheticManifoldData) has no such argument; its keys"),
    # a key the class takes but the config does not list: the fix is "+", not another key
    (["experiment=vae_mnist", "data.n_samples=100"], 2, "data has no key n_samples; its keys are: dataset,"),
    (["no_such_key=1"], 2, "error: no_such_key=1: the config has no top-level key no_such_key; they are: name, seed"),
    (["model=no_such_model"], 2, "Could not find 'model/no_such_model'; Available options in 'model': bernoulli_mlp,"),
    (["kl_warmup=null"], 2, "error: kl_warmup=null: a config group cannot be set to null"),
    ([*FAST, "optimizer.lr=1e6"], 1, "diverged: the loss became nan at optimizer step"),
]


@pytest.mark.parametrize(("args", "code", "message"), CLI_ERRORS, ids=[" ".join(a[-1:]) for a, _, _ in CLI_ERRORS])
def test_command_line_errors_are_one_line_with_their_exit_code(tmp_path, args, code, message):
    proc = _cli(*args, "hydra.run.dir=run", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("vaelab-train: ") and message in lines[0]
    if code == 1:
        assert "lower optimizer.lr" in lines[0] and read_metrics(tmp_path / "run")["status"] == "diverged"


def test_resume_of_a_directory_without_checkpoint_is_one_line(tmp_path):
    (tmp_path / "empty_run").mkdir()
    proc = _cli(f"resume={tmp_path / 'empty_run'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("vaelab-train: error: resume=")
    assert "no checkpoints/last.ckpt" in proc.stderr


# ---------------------------------------------------------------------------------------------------------
# divergence


def test_absurd_learning_rate_diverges_at_once_and_keeps_a_loadable_checkpoint(make_cfg, tmp_path):
    with pytest.raises(DivergenceError, match="optimizer step"):
        train(make_cfg(*SHORT, "optimizer.lr=1e6"))
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "diverged" and "lower optimizer.lr" in metrics["error"]
    step = metrics["diverged_at_step"]
    assert metrics["diverged_on"] == "loss" and 0 < step < 12  # within the first epoch, not at a log step
    assert metrics["last_finite_step"] == step - 1 and math.isfinite(metrics["last_finite_loss"])
    assert math.isfinite(metrics["last_finite/model/gamma"])  # the model as the last finite step left it
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 0  # saved when training started, never overwritten by diverged weights
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


def test_an_infinite_gradient_on_a_finite_loss_diverges_before_the_weights_move(make_cfg, tmp_path, monkeypatch):
    """Checked every step without clipping too: a NaN gradient (d sqrt(x)/dx at 0, times 0) must not reach Adam."""
    from vaelab.models.gaussian_vae import GaussianVAE

    loss = GaussianVAE.loss
    calls = {"n": 0}

    def poisoned(self, batch):
        terms = loss(self, batch)
        calls["n"] += 1
        if calls["n"] == 5:  # the 5th training step: a finite loss whose gradient is NaN
            terms["loss"] = terms["loss"] + 0.0 * (self.log_gamma - self.log_gamma.detach()).sqrt()
        return terms

    monkeypatch.setattr(GaussianVAE, "loss", poisoned)
    with pytest.raises(DivergenceError, match="gradient norm"):
        train(make_cfg(*SHORT))
    metrics = read_metrics(tmp_path / "run")
    assert metrics["diverged_on"] == "gradient norm" and metrics["diverged_at_step"] == 4
    assert math.isfinite(metrics["last_finite/model/gamma"])


def test_gamma_at_its_floor_is_reported(make_cfg, caplog):
    result = train(make_cfg(*SHORT, "trainer.max_epochs=5", "model.log_gamma_init=-12", "model.gamma_floor=1e-3"))
    assert result["status"] == "completed" and result["gamma_at_floor"] == 1
    # the first log step: trainer.log_every_n_steps (50), at most one epoch (12 steps here)
    assert result["gamma_floor_reached_at_step"] == 12
    assert "gamma reached model.gamma_floor at step 12" in caplog.text
    assert "warning: gamma reached model.gamma_floor" in format_summary(result)


# ---------------------------------------------------------------------------------------------------------
# interruption and resume


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """The reference: RUN without interruption, through the CLI as the interrupted runs are."""
    cwd = tmp_path_factory.mktemp("whole")
    proc = _cli(*RUN, "hydra.run.dir=whole", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_metrics(cwd / "whole")


def test_sigint_in_process_saves_at_the_epoch_end_and_resumes_exactly(make_cfg, tmp_path, whole_run, monkeypatch):
    monkeypatch.setenv("VAELAB_TEST_EPOCH", "7")
    monkeypatch.setenv("VAELAB_TEST_ACTION", "sigint")
    with pytest.raises(RunInterrupted, match="SIGINT received: stopped after epoch 7"):
        train(make_cfg(*RUN, name="stopped"))
    stopped = read_metrics(tmp_path / "stopped")
    assert stopped["status"] == "interrupted" and stopped["interrupted_at_step"] == 8 * 12
    ckpt = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 8 * 12
    monkeypatch.delenv("VAELAB_TEST_EPOCH")
    resumed = train(make_cfg(*RUN, f"ckpt_path={ckpt}", name="stopped"))  # continues in its own directory
    assert resumed["status"] == "completed" and resumed["resumed_from"] == str(ckpt)
    assert _strip(resumed) == _strip(whole_run)


def test_sigterm_saves_and_resume_shortcut_finishes_bit_identically(tmp_path, whole_run):
    marker = tmp_path / "epoch7"
    proc = _start(
        *RUN,
        "hydra.run.dir=job",
        cwd=tmp_path,
        VAELAB_TEST_EPOCH="7",
        VAELAB_TEST_ACTION="sleep",
        VAELAB_TEST_MARKER=str(marker),
    )
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "interrupted: SIGTERM received: stopped after epoch 7" in err and "resume=" in err
    stopped = read_metrics(tmp_path / "job")
    assert stopped["status"] == "interrupted" and stopped["interrupted_at_step"] == 8 * 12
    resumed = _cli(f"resume={tmp_path / 'job'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = read_metrics(tmp_path / "job")
    assert final["status"] == "completed" and _strip(final) == _strip(whole_run)


def test_ctrl_c_during_start_up_is_one_line_and_each_message_names_resume_which_starts_it_over(tmp_path):
    run = tmp_path / "job"
    proc = _start(*FAST, "hydra.run.dir=job", cwd=tmp_path)
    _wait_for(run / "metrics.json", proc)  # the run is claimed; torch and Lightning are still loading
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT and len(err.strip().splitlines()) == 1, err[-3000:]
    assert err.startswith("vaelab-train: interrupted during start-up, before training")
    assert f"start it over with: vaelab-train resume={run}" in err
    assert read_metrics(run)["status"] == "interrupted" and not (run / "checkpoints").exists()
    again = _cli(*FAST, "hydra.run.dir=job", cwd=tmp_path)  # the same command: refused, naming resume=
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr[-3000:]
    assert "already holds a run (status interrupted)" in again.stderr
    assert "continue it with: vaelab-train resume=job" in again.stderr
    resumed = _cli(f"resume={run}", cwd=tmp_path)  # what both name: the run starts over in its directory
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = read_metrics(run)
    assert final["status"] == "completed" and "resumed_from" not in final and final["overrides"] == FAST


def test_kill_9_loses_at_most_the_work_since_the_last_checkpoint(tmp_path, whole_run):
    marker = tmp_path / "epoch7"
    proc = _start(
        *RUN,
        "hydra.run.dir=job",
        cwd=tmp_path,
        VAELAB_TEST_EPOCH="7",
        VAELAB_TEST_ACTION="sleep",
        VAELAB_TEST_MARKER=str(marker),
    )
    _wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert read_metrics(tmp_path / "job")["status"] == "running"  # nothing could be written
    ckpt = torch.load(tmp_path / "job" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 5 * 12  # the periodic checkpoint after epoch 4: epochs 5-7 are lost
    resumed = _cli(f"resume={tmp_path / 'job'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = read_metrics(tmp_path / "job")
    assert final["status"] == "completed" and _strip(final) == _strip(whole_run)


# ---------------------------------------------------------------------------------------------------------
# sweeps

TINY = [
    "debug=fast",
    "data.n_samples=1000",
    "trainer.max_epochs=3",
    "callbacks.progress_bar=null",
    "logger=none",
    "+callbacks.probe._target_=helpers.EnvProbe",
]


def test_interrupted_sweep_finishes_with_skip_completed(tmp_path):
    """Job 1 of 3 is interrupted (Ctrl-C): the sweep stops, job 0's result is kept and the summary lists
    the interrupted and the never-started job; re-running with skip_completed leaves job 0 alone, continues
    job 1 from its checkpoint and runs job 2."""
    first = _cli(
        "-m",
        "seed=0,1,2",
        *TINY,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        VAELAB_TEST_EPOCH="0",
        VAELAB_TEST_SEED="1",
        VAELAB_TEST_ACTION="sigint",
    )
    assert first.returncode == 128 + signal.SIGINT, first.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = {p.name.split("_")[0]: p for p in sweep.iterdir() if p.is_dir()}
    assert sorted(jobs) == ["0", "1"]
    done = read_metrics(jobs["0"])
    assert done["status"] == "completed" and read_metrics(jobs["1"])["status"] == "interrupted"
    problems = {p.status for p in summarize.summarize_dir(sweep).problems()}
    assert problems == {"interrupted", "missing"}

    again = _cli("-m", "seed=0,1,2", *TINY, "hydra.sweep.dir=sweep", "skip_completed=true", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(names) == 3 and names[:2] == [jobs["0"].name, jobs["1"].name]  # the same job directories
    assert read_metrics(jobs["0"]) == done  # skipped: not even rewritten
    resumed = read_metrics(jobs["1"])
    assert resumed["status"] == "completed" and resumed["resumed_from"].endswith("last.ckpt")
    summary = summarize.summarize_dir(sweep)
    assert not summary.problems() and summary.rows[0]["completed"] == 3
    assert "skip_completed" not in (sweep / "summary.md").read_text()

    refused = _cli("-m", "seed=0,1,2", *TINY, "hydra.sweep.dir=sweep", cwd=tmp_path)  # without skip_completed
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr[-3000:]
    assert "3 of 3 jobs were refused" in lines[0] and "skip_completed=true" in lines[0]
    assert read_metrics(jobs["0"]) == done  # untouched


# ---------------------------------------------------------------------------------------------------------
# outputs


def test_a_run_directory_is_never_shared_or_overwritten(make_cfg, tmp_path):
    first = train(make_cfg(*SHORT, "trainer.max_epochs=1", "logger=none"))
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    with pytest.raises(RunExistsError, match="already holds a run .status completed.; vaelab never overwrites"):
        train(make_cfg(*SHORT, "trainer.max_epochs=1", "logger=none"))
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before and first["status"] == "completed"
    RunRecord(tmp_path / "claimed", exclusive=True, seed=3)
    with pytest.raises(FileExistsError):  # two processes claiming one directory: only one wins
        RunRecord(tmp_path / "claimed", exclusive=True, seed=4)
    # the claim is the whole first record, never an empty file a reader or an interruption could meet
    assert read_metrics(tmp_path / "claimed") == {"status": "running", "seed": 3}
    assert [p.name for p in (tmp_path / "claimed").iterdir()] == ["metrics.json"]
    # the CLI refuses before Hydra rewrites the run's .hydra/ files
    proc = _cli("hydra.run.dir=" + str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / ".hydra").exists()


def test_two_runs_started_in_the_same_second_get_two_directories(tmp_path):
    args = ["debug=fast", "data.n_samples=1000", "trainer.max_epochs=1", "logger=none", "callbacks.progress_bar=null"]
    procs = [_start(*args, cwd=tmp_path) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    runs = sorted((tmp_path / "outputs" / "runs").glob("*/*"))
    assert len(runs) == 2 and all(read_metrics(r)["status"] == "completed" for r in runs)
