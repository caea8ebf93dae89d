"""Sweeps: vaelab-summarize on hand-written runs (exact numbers), real multiruns through the CLI, launchers."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from vaelab import summarize
from vaelab.sweep import missing_plugin

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _job(sweep: Path, name: str, overrides: list[str], metrics: dict | None) -> None:
    """A job folder as Hydra and vaelab-train leave it: .hydra/overrides.yaml and (unless None) metrics.json."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps({"overrides": overrides, **metrics}))


@pytest.fixture
def sweep_dir(tmp_path):
    """A 2 x 4 grid (r = 2, 3; seeds 0-3): r = 3 has a failed job and one that started but never wrote
    metrics.json; seed 3 never started for either r (those jobs are only in multirun.yaml)."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        OmegaConf.to_yaml(
            {
                "hydra": {
                    "sweeper": {"_target_": BASIC, "params": {"seed": "0,1,2,3"}},
                    "overrides": {"task": ["data.manifold_dim=2,3", "debug=fast"]},
                }
            }
        )
    )
    ok = {"status": "completed", "wall_time_s": 1.0}
    _job(sweep, "0", ["seed=0", "data.manifold_dim=2", "debug=fast"], {**ok, "active_dims": 2, "elbo": 10.0})
    _job(sweep, "1", ["seed=1", "data.manifold_dim=2", "debug=fast"], {**ok, "active_dims": 2, "elbo": 12.0})
    _job(sweep, "2", ["seed=2", "data.manifold_dim=2", "debug=fast"], {**ok, "active_dims": 3, "elbo": 14.0})
    _job(sweep, "3", ["seed=0", "data.manifold_dim=3", "debug=fast"], {**ok, "active_dims": 3, "elbo": 20.0})
    _job(
        sweep,
        "4",
        ["seed=1", "data.manifold_dim=3", "debug=fast"],
        {"status": "failed", "error": "ConfigError: boom", "active_dims": 99},
    )
    _job(sweep, "5", ["seed=2", "data.manifold_dim=3", "debug=fast"], None)
    return sweep


def test_summary_of_hand_written_runs_has_exact_numbers(sweep_dir):
    s = summarize.summarize_dir(sweep_dir, metrics=["active_dims", "elbo"])
    assert s.group_keys == ["data.manifold_dim"] and s.common == {"debug": "fast"}
    r2, r3 = s.rows
    assert (r2["data.manifold_dim"], r2["jobs"], r2["completed"], r2["missing"]) == ("2", 4, 3, 1)
    assert r2["active_dims_mean"] == pytest.approx(7 / 3) and r2["active_dims_std"] == pytest.approx(math.sqrt(1 / 3))
    assert (r2["elbo_mean"], r2["elbo_std"], r2["elbo_n"]) == (pytest.approx(12.0), pytest.approx(2.0), 3)
    # the failed job's metrics never enter the statistics; the started-but-silent job counts as missing
    assert (r3["jobs"], r3["completed"], r3["failed"], r3["missing"]) == (4, 1, 1, 2)
    assert (r3["active_dims_mean"], r3["active_dims_n"]) == (3.0, 1) and math.isnan(r3["active_dims_std"])
    problems = {(p.path, p.status) for p in s.problems()}
    assert problems == {("4", "failed"), ("5", "missing"), (".", "missing")}
    never_started = [p.overrides for p in s.problems() if p.path == "."]
    assert never_started == [{"seed": "3", "data.manifold_dim": d, "debug": "fast"} for d in ("2", "3")]

    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert [r["data.manifold_dim"] for r in rows] == ["2", "3"]
    assert float(rows[0]["active_dims_std"]) == pytest.approx(0.57735, abs=1e-5) and rows[1]["active_dims_std"] == ""
    runs = list(csv.DictReader((sweep_dir / "runs.csv").open()))
    assert len(runs) == 8 and sum(r["status"] == "completed" for r in runs) == 4
    md = (sweep_dir / "summary.md").read_text()
    assert "| 2 | 3/4 (1 missing) | 2.333 ± 0.577 | 12 ± 2 |" in md
    assert "| 3 | 1/4 (1 failed, 2 missing) | 3 | 20 |" in md
    assert "**failed**: ConfigError: boom" in md and "job never started" in md


def test_summary_shows_the_collapse_metrics_and_reads_old_probe_files(tmp_path):
    """Runs from before the three probes (one probe_accuracy) show it as probe_accuracy_linear; mi_saturated
    (true/false) is read as 1/0."""
    ok = {"status": "completed", "kl": 20.0, "mi": 9.17}
    _job(tmp_path, "0", ["seed=0", "model.skip=true"], {**ok, "probe_accuracy": 0.90})  # an old run file
    new = {"probe_accuracy_linear": 0.92, "probe_accuracy_knn": 0.96, "probe_accuracy_mlp": 0.97, "mi_saturated": True}
    _job(tmp_path, "1", ["seed=1", "model.skip=true"], {**ok, **new, "active_units_0.02": 11})
    _job(tmp_path, "2", ["seed=0", "model.skip=false"], {**ok, **new, "mi_saturated": False})
    s = summarize.summarize(summarize.load_runs(tmp_path))
    for key in ("mi", "mi_saturated", "active_units_0.02", "probe_accuracy_linear", "probe_accuracy_knn"):
        assert key in s.metrics
    by_skip = {row["model.skip"]: row for row in s.rows}
    assert by_skip["true"]["probe_accuracy_linear_mean"] == pytest.approx(0.91)  # 0.90 (old) and 0.92
    assert by_skip["true"]["probe_accuracy_linear_n"] == 2 and by_skip["true"]["probe_accuracy_knn_n"] == 1
    assert by_skip["true"]["mi_saturated_mean"] == 1.0 and by_skip["false"]["mi_saturated_mean"] == 0.0


def test_summary_options_sort_group_and_ignore(sweep_dir):
    runs = summarize.load_runs(sweep_dir)
    by_elbo = summarize.summarize(runs, metrics=["elbo"], sort=["elbo"])
    assert [r["elbo_mean"] for r in by_elbo.rows] == [12.0, 20.0]
    best_first = summarize.summarize(runs, metrics=["elbo"], sort=["-elbo"])
    assert [r["data.manifold_dim"] for r in best_first.rows] == ["3", "2"]
    per_seed = summarize.summarize(runs, metrics=["elbo"], group_by=["seed"], ignore=())
    assert [(r["seed"], r["elbo_n"]) for r in per_seed.rows] == [("0", 2), ("1", 1), ("2", 1), ("3", 0)]
    pooled = summarize.summarize(runs, metrics=["active_dims"], ignore=("seed", "data.manifold_dim"))
    assert pooled.group_keys == [] and pooled.rows[0]["active_dims_mean"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="available"):
        summarize.summarize(runs, metrics=["no_such_metric"])
    with pytest.raises(ValueError, match="overridden keys"):
        summarize.summarize(runs, group_by=["model.latent_dim"])


def test_unreadable_metrics_json_is_listed_not_fatal(tmp_path):
    _job(tmp_path, "a", ["seed=0"], {"status": "completed", "elbo": 1.0})
    _job(tmp_path, "b", ["seed=1"], None)
    (tmp_path / "b" / "metrics.json").write_text('{"status": "comp')  # a write cut short
    s = summarize.summarize(summarize.load_runs(tmp_path))
    assert s.rows[0]["completed"] == 1 and s.rows[0]["unreadable"] == 1
    assert s.problems()[0].path == "b" and "metrics.json" in s.problems()[0].error


def test_summarize_cli_writes_table_and_plots(sweep_dir, capsys):
    assert summarize.main([str(sweep_dir), "--plot", "--metrics", "active_dims,elbo"]) == 0
    out = capsys.readouterr().out
    assert "| data.manifold_dim | jobs | active_dims | elbo |" in out
    for png in ("active_dims_vs_data.manifold_dim.png", "elbo_vs_data.manifold_dim.png"):
        assert (sweep_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summarize.main([str(sweep_dir / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert summarize.main([str(sweep_dir), "--x", "model.latent_dim", "--plot"]) == 2


def test_plots_have_integer_ticks_n_per_point_and_training_time_apart_from_start_up(tmp_path, monkeypatch):
    """An integer key gets integer ticks only, each point is labelled with its n, and the first job's start-up
    (torch and Lightning imported) is not in train_time_s, which the table shows instead of wall_time_s."""
    import matplotlib.pyplot as plt

    for i, (dim, seed, startup) in enumerate([(1, 0, 9.0), (1, 1, 1.0), (2, 0, 1.0), (3, 0, 1.0), (3, 1, 1.0)]):
        _job(
            tmp_path,
            str(i),
            [f"seed={seed}", f"data.manifold_dim={dim}"],
            {"status": "completed", "active_dims": dim, "wall_time_s": startup + 4.0, "startup_s": startup},
        )
    summary = summarize.summarize(summarize.load_runs(tmp_path))
    assert summary.metrics == ["active_dims", "train_time_s", "startup_s"]  # wall_time_s: their sum
    assert [r["train_time_s_mean"] for r in summary.rows] == [4.0, 4.0, 4.0]
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    summarize.plot(summary, tmp_path)
    monkeypatch.undo()
    ax = figures[0].axes[0]  # active_dims against data.manifold_dim
    assert list(ax.get_xticks()) == [1, 2, 3]
    assert all(float(t).is_integer() for t in ax.get_yticks())
    assert sorted(t.get_text() for t in ax.texts) == ["n=1", "n=2", "n=2"]
    for figure in figures:
        plt.close(figure)


def test_missing_launcher_plugin_names_the_install(monkeypatch):
    assert missing_plugin(["-m", "seed=0,1"]) is None
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    message = missing_plugin(["-m", "hydra/launcher=joblib"])
    assert "hydra-joblib-launcher" in message and "pip install 'vaelab[sweep]'" in message
    assert "vaelab[optuna]" in missing_plugin(["hparams_search=optuna_manifold"])


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "slurm", "slurm_gpu"])
def test_launcher_presets_compose(launcher):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="vaelab.conf", version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"hydra/launcher={launcher}", "experiment=manifold_r_grid"], return_hydra_config=True
        )
    assert "Launcher" in cfg.hydra.launcher._target_
    assert dict(cfg.hydra.sweeper.params) == {"data.manifold_dim": "1,2,3,4,5", "seed": "0,1,2"}
    if launcher == "slurm_gpu":
        assert (cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.timeout_min) == (1, 120)


def _cli(*args: str, cwd: Path, module: str = "vaelab.train") -> subprocess.CompletedProcess:
    env = {**os.environ, "VAELAB_LOG_DIR": str(cwd / "outputs")}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


TINY = ["debug=fast", "data.n_samples=1000", "trainer.max_epochs=2", "callbacks.progress_bar=null"]


def test_parallel_multirun_then_summarize(tmp_path):
    """The issue's flow, shrunk: a joblib grid of 2 x 2 tiny jobs, then vaelab-summarize on its directory."""
    proc = _cli(
        "-m",
        "data.manifold_dim=1,2",
        "seed=0,1",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multiruns").glob("*/*")
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name != "tensorboard")  # events: there
    assert jobs[0].startswith("0_") and "data.manifold_dim=1" in jobs[0] and "seed=0" in jobs[0]
    assert len(jobs) == 4 and all((sweep / j / "tensorboard" / "WHERE.txt").is_file() for j in jobs)
    assert len(list((sweep / "tensorboard").iterdir())) == 4  # one short-named TensorBoard run per job
    metrics = [json.loads((sweep / j / "metrics.json").read_text()) for j in jobs]
    assert sorted((m["true_manifold_dim"], m["seed"]) for m in metrics) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert (sweep / "summary.md").exists()  # written by the end-of-sweep report
    summary = _cli(str(sweep), "--plot", "--metrics", "active_dims,elbo", cwd=tmp_path, module="vaelab.summarize")
    assert summary.returncode == 0, summary.stderr
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["data.manifold_dim"], r["completed"], r["active_dims_n"]) for r in rows] == [
        ("1", "2", "2"),
        ("2", "2", "2"),
    ]
    assert (sweep / "active_dims_vs_data.manifold_dim.png").exists()


def test_failing_and_ddp_jobs_in_a_grid_keep_the_others(tmp_path):
    """One job fails at build time (unknown activation), one asks for DDP inside -m: both are recorded and
    listed, the good job completes, and the sweep exits 1."""
    proc = _cli("-m", "model.activation=relu,bogus", *TINY, cwd=tmp_path)
    ddp = _cli("-m", "trainer=ddp", "trainer.accelerator=cpu", *TINY, cwd=tmp_path)
    assert proc.returncode == 1 and ddp.returncode == 1
    assert "Traceback" not in proc.stderr and "1 of 2 jobs did not complete" in proc.stderr
    grid, ddp_sweep = sorted((tmp_path / "outputs" / "multiruns").glob("*/*"))
    statuses = {json.loads(m.read_text())["status"] for m in grid.glob("*/metrics.json")}
    assert statuses == {"completed", "failed"}
    md = (grid / "summary.md").read_text()
    assert "**failed**: ConfigError: model.activation='bogus' is unknown" in md
    (ddp_metrics,) = ddp_sweep.glob("*/metrics.json")
    record = json.loads(ddp_metrics.read_text())
    assert record["status"] == "failed" and "not supported inside a -m multirun" in record["error"]


def test_long_override_lists_get_short_stable_job_folder_names():
    from vaelab.config import MAX_JOB_DIRNAME, job_dirname

    assert job_dirname(3, "data.manifold_dim=3,seed=1") == "3_data.manifold_dim=3,seed=1"
    long = ",".join(f"model.key_{i}=value_{i}" for i in range(40))
    name = job_dirname(7, long)
    assert len(name.encode()) <= MAX_JOB_DIRNAME and name.startswith("7_model.key_0=value_0,")
    assert name == job_dirname(7, long) != job_dirname(7, long + "x")  # stable, and unique per override set
