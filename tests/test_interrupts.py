"""Ctrl-C at any moment of a vaelab-train run ends in one line on stderr and exit code 130 (issue 21 item 2):
while Python loads the modules (before Hydra), while Hydra composes, during start-up, as Lightning's fit starts
(before the first checkpoint), during training (tests/test_reliability.py), during the final evaluation; each
line names the command that continues (vaelab.cli.continue_hint)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_metrics

TESTS = Path(__file__).resolve().parent
FAST = ["debug=fast", "data.n_samples=1000", "logger=none", "callbacks.progress_bar=null"]
# the console script vaelab-train: `from vaelab.entry import train; train()`
SCRIPT = [sys.executable, "-c", "import sys; from vaelab.entry import train; sys.argv[0] = 'vaelab-train'; train()"]


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAELAB_TEST_")}
    env |= {
        "VAELAB_LOG_DIR": str(cwd / "outputs"),
        "PYTHONPATH": os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [*SCRIPT, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _one_line(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 128 + signal.SIGINT and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("vaelab-train: interrupted ") and "Traceback" not in err
    return lines[0]


def test_a_signal_inside_signals_held_acts_when_the_block_ends():
    """The Ctrl-C that broke numpy's import on CI (a RecursionError, exit code 1) is held until the import ends."""
    from vaelab.entry import signals_held

    done = []
    with pytest.raises(KeyboardInterrupt), signals_held():
        signal.raise_signal(signal.SIGINT)
        done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0, 2.0])
def test_ctrl_c_in_the_first_seconds_is_one_line(tmp_path, delay):
    """0.3-1 s: Python is still importing Hydra and vaelab (before vaelab.cli's handler); later: Hydra composes
    or the job starts. (Before ~0.1 s the interpreter itself is starting: Python's own message, out of reach.)"""
    proc = _start(*FAST, "hydra.run.dir=job", cwd=tmp_path)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    line = _one_line(proc)
    run = tmp_path / "job"
    if (run / "metrics.json").exists():  # the job had started: the run is recorded and resume= starts it over
        assert line.startswith("vaelab-train: interrupted during start-up, before training; ")
        assert f"start it over with: vaelab-train resume={run}" in line
        assert read_metrics(run)["status"] == "interrupted"
    else:
        assert line == "vaelab-train: interrupted before a job started; nothing was written: run the command again"


def test_ctrl_c_as_fit_starts_is_one_line(tmp_path):
    """Inside Lightning's fit, before LastCheckpoint handles signals: Lightning turns it into SystemExit(1)."""
    proc = _start(
        *FAST, "hydra.run.dir=job", "+callbacks.ctrl_c._target_=interrupt_helpers.CtrlCAtFitStart", cwd=tmp_path
    )
    line = _one_line(proc)
    run = tmp_path / "job"
    assert line == (
        f"vaelab-train: interrupted during training; nothing was trained yet; start it over with: "
        f"vaelab-train resume={run}"
    )
    assert read_metrics(run)["status"] == "interrupted"


def test_ctrl_c_during_the_final_evaluation_is_one_line_and_resume_finishes_it(tmp_path):
    evaluator = "+callbacks.diagnostics.evaluators.ctrl_c._target_=interrupt_helpers.CtrlCOnTest"
    proc = _start(*FAST, "hydra.run.dir=job", evaluator, cwd=tmp_path)
    line = _one_line(proc)
    run = tmp_path / "job"
    assert line == (
        "vaelab-train: interrupted during the final evaluation, after training; "
        f"continue with: vaelab-train resume={run}"
    )
    assert read_metrics(run)["status"] == "interrupted" and (run / "checkpoints" / "last.ckpt").is_file()
    log = (run / "train.log").read_text()
    assert "vaelab-train: interrupted during the final evaluation" in log  # train.log has the line too
    resumed = subprocess.run(
        [*SCRIPT, f"resume={run}", evaluator.replace("CtrlCOnTest", "Quiet")],
        cwd=tmp_path,
        env={**os.environ, "VAELAB_LOG_DIR": str(tmp_path / "outputs"), "PYTHONPATH": str(TESTS)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_metrics(run)["status"] == "completed"
