"""What a researcher sees of a run besides metrics.json (issue 21): the job's train.log holds the run's lines
while the console keeps one copy of each; in a sweep, TensorBoard names each job by the overrides that differ
between the jobs and its HPARAMS table compares exactly those; the MCC matrix image is never a thin strip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from vaelab.loggers import short_job_name, sweep_keys, varying_values
from vaelab.mcc_figures import mcc_figures

TINY = ["debug=fast", "data.n_samples=1000", "trainer.max_epochs=2", "callbacks.convergence.extend=false"]


def _sweep_config(task: list[str], params: dict | None = None):
    return OmegaConf.create({"hydra": {"overrides": {"task": task}, "sweeper": {"params": params or {}}}})


def test_sweep_keys_are_the_overrides_that_sweep():
    task = ["debug=fast", "data.manifold_dim=1,2", "seed=range(0,3)", "model=vae", "+x.y=choice(a,b)"]
    assert sweep_keys(_sweep_config(task)) == ["data.manifold_dim", "seed", "x.y"]
    assert sweep_keys(_sweep_config(["seed=0"], {"data.manifold_dim": "1,2,3", "model.latent_dim": "4"})) == [
        "data.manifold_dim"
    ]  # an experiment's grid (hydra.sweeper.params)
    assert sweep_keys(None) is None
    assert sweep_keys(_sweep_config(["name='a,b'"])) == []  # a quoted comma is a value, not a sweep


def test_short_job_names_keep_what_tells_jobs_apart():
    values = varying_values(["data.manifold_dim", "seed"], ["debug=fast", "data.manifold_dim=2", "seed=1"])
    assert values == {"data.manifold_dim": 2, "seed": 1}
    assert short_job_name(3, values) == "3_manifold_dim=2,seed=1"
    # two keys that end alike keep a second part; long values are cut; no keys: the number alone
    ambiguous = {"model.encoder.width": 64, "model.decoder.width": 128, "name": "x" * 40}
    assert short_job_name(0, ambiguous) == f"0_encoder.width=64,decoder.width=128,name={'x' * 24}"
    assert short_job_name(7, {}) == "7"
    assert short_job_name(1, {"model": "a/b c"}) == "1_model=a_bc"  # one folder name


@pytest.mark.parametrize(("n", "k"), [(2, 20), (5, 5), (10, 10), (10, 40), (2, 2)])
def test_mcc_matrix_image_is_never_a_thin_strip(n, k):
    torch.manual_seed(0)
    z_true, z = torch.randn(200, n), torch.randn(200, k)
    z[:, :n] += z_true
    corr = torch.corrcoef(torch.cat([z_true, z], 1).T)[:n, n:].abs()
    _, height, width = mcc_figures(z_true, z, corr, list(range(n)))["mcc_matrix"].shape
    assert 0.4 <= height / width <= 2.5, (height, width)
    assert height >= 200 and width >= 250


def _train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m vaelab.train *args` in `cwd` (runs under cwd/outputs), asserted to succeed."""
    env = {**os.environ, "VAELAB_LOG_DIR": str(cwd / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "vaelab.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_sweep_names_jobs_shortly_compares_what_differs_and_logs_to_train_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    proc = _train(tmp_path, "-m", "seed=0,1", *TINY, "hydra.sweep.dir=sweep", "callbacks.progress_bar=null")
    sweep = tmp_path / "sweep"
    runs = sorted(p.name for p in (sweep / "tensorboard").iterdir())
    assert runs == ["0_seed=0", "1_seed=1"]  # what TensorBoard shows as run names: tensorboard/0_seed=0 ...
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2 and len(jobs[0].name) > 60  # the job folders keep their names (summarize reads them)
    for job, run in zip(jobs, runs, strict=True):
        assert not list((job / "tensorboard").glob("events.*"))  # no second copy for TensorBoard to show
        assert str(sweep / "tensorboard" / run) in (job / "tensorboard" / "WHERE.txt").read_text()
        acc = EventAccumulator(str(sweep / "tensorboard" / run), size_guidance={"scalars": 0})
        acc.Reload()
        assert "final/elbo" in acc.Tags()["scalars"]
        session = plugin_data_pb2.HParamsPluginData.FromString(
            acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        )
        assert dict(session.session_start_info.hparams).keys() == {"seed"}  # the HPARAMS table: what differs
        assert session.session_start_info.hparams["seed"].number_value == int(run.split("=")[1])
        log = (job / "train.log").read_text()
        for line in ("vaelab: run ", "vaelab: val diagnostics at step ", "vaelab: test diagnostics at step "):
            assert line in log, log
        assert "vaelab: completed in " in log and "run dir: " in log
    # the console: each line once, without the log format
    assert proc.stdout.count("vaelab: completed in ") == 2 and "[vaelab]" not in proc.stdout + proc.stderr
    assert "val diagnostics" not in proc.stdout + proc.stderr  # train.log only
    assert f"TensorBoard: {sweep / 'tensorboard' / runs[0]}" in proc.stdout


def test_single_run_keeps_tensorboard_in_its_directory_and_fills_train_log(tmp_path):
    proc = _train(tmp_path, *TINY, "hydra.run.dir=run", "callbacks.progress_bar=null")
    run = tmp_path / "run"
    assert list((run / "tensorboard").glob("events.*")) and not (run / "tensorboard" / "WHERE.txt").exists()
    log = (run / "train.log").read_text()
    assert log.count("vaelab: completed in ") == 1 and "vaelab: convergence" not in log  # extend=false
    assert proc.stdout.count("vaelab: completed in ") == 1 and proc.stderr.strip() == ""
    assert Path(run / "metrics.json").is_file()
