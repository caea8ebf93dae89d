"""`vaelab-train seeds=[...]` from the command line: the seeds train in one process as one stacked model, each
writes its own run directory, a `-m` sweep can opt in with the same key, and `vaelab-summarize` reads the
members as ordinary runs (none missing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.summarize import load_runs

pytestmark = pytest.mark.integration
TINY = ["debug=fast", "data.n_samples=1000", "trainer.max_epochs=2", "callbacks.progress_bar=null"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VAELAB_LOG_DIR": str(cwd / "outputs")}
    return subprocess.run(
        [sys.executable, "-m", "vaelab.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_seeds_train_in_one_process_and_write_a_run_each(tmp_path):
    run_dir = tmp_path / "run"
    proc = _cli("seeds=[0,3]", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for seed in (0, 3):
        metrics = json.loads((run_dir / f"seed_{seed}" / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["seed"] == seed and metrics["seed_parallel"] == 2
        assert f"seed={seed}" in metrics["overrides"] and not any(o.startswith("seeds=") for o in metrics["overrides"])
    assert "seed_0" in proc.stdout and "seed_3" in proc.stdout  # one summary per member


def test_a_sweep_opts_in_with_seeds_and_summarize_counts_every_member(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _cli("-m", "data.manifold_dim=1,2", "seeds=[0,1]", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = load_runs(sweep)
    assert sorted((r.overrides["data.manifold_dim"], r.overrides["seed"], r.status) for r in runs) == [
        ("1", "0", "completed"),
        ("1", "1", "completed"),
        ("2", "0", "completed"),
        ("2", "1", "completed"),
    ]


@pytest.mark.parametrize(("value", "message"), [("[]", "seeds=[]"), ("[1,1]", "seeds=[1, 1]")])
def test_bad_seeds_are_one_line_config_errors(tmp_path, value, message):
    proc = _cli(f"seeds={value}", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
