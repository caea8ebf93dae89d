"""A real SLURM cluster: a 4-job ``hydra/launcher=slurm`` sweep, one job killed with ``scancel``, the summary,
and ``skip_completed=true`` finishing it.

Needs a cluster with an idle node, e.g. the one-node cluster of ``scripts/slurm_local.sh`` (docs/slurm.md);
skipped with the reason otherwise. About 1.5 minutes on 2 cores: `pytest -m slurm tests/test_slurm.py`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

# Long enough (about 10 s of training on one core) that the scancel lands inside training, where vaelab's
# SIGTERM handler saves last.ckpt and records the job as interrupted; short enough for a test.
TINY = [
    "trainer.max_epochs=200",
    "data.n_samples=500",
    "data.batch_size=100",
    "callbacks.convergence.extend=false",
    "callbacks.progress_bar=null",
    "callbacks.diagnostics.every_n_epochs=50",
]
# The preset asks 4 GB a job; 1 GB lets 4 jobs fit on a small node. partition: null is the cluster's default.
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20"]
SEEDS = "seed=0,1,2,3"
LAUNCHER_TIMEOUT_S = 600


def _skip_reason() -> str | None:
    if shutil.which("sinfo") is None:
        return "sinfo not found: no SLURM here (scripts/slurm_local.sh installs and starts a one-node cluster)"
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        return "hydra-submitit-launcher is not installed (pip install -e '.[sweep]')"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-t", "idle,mix", "-o", "%N %T"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s (is slurmctld running? scripts/slurm_local.sh status)"
    if out.returncode != 0:
        return f"sinfo failed: {(out.stderr or out.stdout).strip()} (scripts/slurm_local.sh starts a local cluster)"
    if not out.stdout.strip():
        states = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=20)
        return f"no idle SLURM node (sinfo: {states.stdout.strip() or 'no nodes'})"
    return None


def _accounting() -> bool:
    """Whether ``sacct`` works (slurmdbd): submitit polls job states with it."""
    try:
        return subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _train_cmd(sweep_dir: Path, *extra: str) -> list[str]:
    return [
        shutil.which("vaelab-train") or "vaelab-train",
        "-m",
        SEEDS,
        *TINY,
        *LAUNCHER,
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


def _metrics(job_dir: Path) -> dict:
    path = job_dir / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _job_dirs(sweep_dir: Path) -> dict[int, Path]:
    return {int(p.name.split("_", 1)[0]): p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit()}


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, poll: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit code {proc.returncode}) before {what}:\n{_tail(proc)}")
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f":\n{_tail(proc)}" if proc else ""))


def _tail(proc: subprocess.Popen, n: int = 4000) -> str:
    """The last n characters of the launcher's output (stdout and stderr, in its log file)."""
    return proc.log_path.read_text()[-n:]  # type: ignore[attr-defined]


def _start(cmd: list[str], log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def _array_jobs_left(array_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", array_id, "-o", "%i"], capture_output=True, text=True, timeout=20)
    return out.returncode == 0 and bool(out.stdout.strip())


@pytest.fixture(scope="module")
def cluster():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    return {"accounting": _accounting()}


def test_slurm_sweep_scancel_summary_and_skip_completed(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _start(_train_cmd(sweep), tmp_path / "launcher.log")
    try:
        # Job 0 is the array's first task: cancel it while it trains. last.ckpt is written when training starts,
        # after vaelab's SIGTERM handler is installed (before that, submitit ignores SIGTERM: docs/slurm.md).
        job0 = _wait(lambda: _job_dirs(sweep).get(0) if sweep.exists() else None, 300, "job 0's folder", proc)
        _wait(lambda: (job0 / "checkpoints" / "last.ckpt").exists(), 300, "job 0 to start training", proc)
        time.sleep(0.5)
        task = next(p.name for p in (sweep / ".submitit").iterdir() if p.name.endswith("_0"))
        array_id = task.rsplit("_", 1)[0]
        subprocess.run(["scancel", task], check=True, timeout=20)

        # Every array task leaves the queue (the other three finish; SLURM kills job 0 after KillWait).
        _wait(
            lambda: not _array_jobs_left(array_id), LAUNCHER_TIMEOUT_S, f"array {array_id} to leave the queue", poll=1.0
        )
        stopped = False
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stopped = True
            # Without accounting submitit cannot learn that the cancelled task ended (sacct fails and it wrote no
            # result), so the launcher would wait for ever: stop it as a user would (docs/slurm.md).
            assert not cluster["accounting"], f"launcher still waiting although sacct works:\n{_tail(proc)}"
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    launcher_log = _tail(proc, 200_000)
    assert proc.returncode != 0, f"a sweep with a cancelled job exited 0:\n{launcher_log[-4000:]}"
    if cluster["accounting"]:
        assert "Bypassing sacct error" not in launcher_log  # accounting on: submitit's polls are quiet
    if not stopped and "UncompletedJobError" not in launcher_log:
        # The cancelled job handed submitit a result: the sweep waited for every job and ended with its report.
        assert proc.returncode == 1 and "1 of 4 jobs did not complete" in launcher_log, launcher_log[-4000:]
        assert "Traceback" not in launcher_log, launcher_log[-4000:]

    jobs = _job_dirs(sweep)
    assert sorted(jobs) == [0, 1, 2, 3]
    killed = _metrics(jobs[0])
    assert killed.get("status") in {"interrupted", "killed", "running"}, killed.get("status")
    if killed["status"] == "interrupted":
        assert (jobs[0] / "checkpoints" / "last.ckpt").exists()
    for i in (1, 2, 3):
        assert _metrics(jobs[i]).get("status") == "completed", (i, _metrics(jobs[i]).get("error"))
    finished = {i: (jobs[i] / "metrics.json").stat().st_mtime_ns for i in (1, 2, 3)}

    summary = subprocess.run(
        [shutil.which("vaelab-summarize") or "vaelab-summarize", str(sweep)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert summary.returncode == 0, summary.stderr
    assert "3/4" in summary.stdout, summary.stdout
    not_completed = summary.stdout.split("Not completed:", 1)[-1]
    assert "Not completed:" in summary.stdout and jobs[0].name in not_completed, summary.stdout
    assert f"**{killed['status']}**" in not_completed, summary.stdout

    # The same command with skip_completed=true finishes job 0 (from its checkpoint) and leaves the others alone.
    rerun = subprocess.run(
        _train_cmd(sweep, "skip_completed=true"),
        capture_output=True,
        text=True,
        timeout=LAUNCHER_TIMEOUT_S,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    if cluster["accounting"]:
        assert "Bypassing sacct error" not in rerun.stdout + rerun.stderr
    done = _metrics(jobs[0])
    assert done.get("status") == "completed", done
    assert done.get("epochs") == 200, done.get("epochs")
    assert {i: (jobs[i] / "metrics.json").stat().st_mtime_ns for i in (1, 2, 3)} == finished
    final = subprocess.run(
        [shutil.which("vaelab-summarize") or "vaelab-summarize", str(sweep)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0 and "4/4" in final.stdout and "Not completed:" not in final.stdout, final.stdout


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-p", "no:cacheprovider"]))
