"""Run-directory policy: a directory holds one run, and vaelab never overwrites it.

A job whose directory already holds a metrics.json stops with RunExistsError (nothing written) unless it resumes
(``ckpt_path``) or ``skip_completed`` is set: then a completed run is returned as it is, and a run that was
interrupted or killed continues from its ``checkpoints/last.ckpt`` (a failed or diverged one starts over).
Free of torch/Lightning imports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.errors import RunExistsError
from vaelab.run_record import RunRecord, read_metrics

LAST_CKPT = Path("checkpoints") / "last.ckpt"  # inside the run directory, saved while training


@dataclass(frozen=True)
class RunStart:
    """What a job does with its run directory."""

    previous: dict[str, Any] | None  # the metrics.json already there; None: a new directory
    ckpt_path: str | None  # the checkpoint training continues from; None: from the start
    skip: bool  # the run already completed and skip_completed is set: `previous` is the result, no training


def decide(directory: str | os.PathLike, ckpt_path: str | None, skip_completed: bool) -> RunStart:
    """How a job with `ckpt_path` and `skip_completed` uses its run `directory`; raises RunExistsError when it
    would overwrite a run."""
    run_dir = Path(directory)
    previous = read_metrics(run_dir)
    if previous is None:
        return RunStart(None, ckpt_path, skip=False)
    status = previous.get("status")
    if skip_completed and status == "completed":
        return RunStart(previous, ckpt_path, skip=True)
    if ckpt_path is None and not skip_completed:
        raise RunExistsError(existing_run_message(run_dir, previous))
    if ckpt_path is None and status in ("interrupted", "running") and (run_dir / LAST_CKPT).is_file():
        ckpt_path = str(run_dir / LAST_CKPT)  # skip_completed: the job continues where it stopped
    return RunStart(previous, ckpt_path, skip=False)


def existing_run_message(directory: str | os.PathLike, previous: dict[str, Any]) -> str:
    """Why a job may not start in `directory`, which holds the run `previous` (its metrics.json), and the one
    action that works for a run in that state."""
    status = previous.get("status")
    if status == "completed":
        action = "choose a new hydra.run.dir (in a sweep: skip_completed=true keeps completed jobs)"
    elif status in ("interrupted", "running"):  # running: killed (kill -9, a node lost) without a word
        action = f"continue it with: vaelab-train resume={directory}"
    else:  # failed or diverged: there is nothing to continue
        action = "fix the config and choose a new hydra.run.dir, or add skip_completed=true to start it over there"
    return f"{directory} already holds a run (status {status}); vaelab never overwrites a run: {action}"


def claim(directory: str | os.PathLike, start: RunStart, **fields: Any) -> RunRecord:
    """The run's metrics.json (status ``running``, `fields`, ``resumed_from`` when it continues a checkpoint);
    a new directory is claimed atomically, and RunExistsError says another run claimed it first."""
    resumed = {"resumed_from": str(start.ckpt_path)} if start.ckpt_path else {}
    try:
        return RunRecord(directory, exclusive=start.previous is None, **fields, **resumed)
    except FileExistsError:  # another process claimed this directory in the meantime
        raise RunExistsError(
            f"{directory} was claimed by another run that started at the same time; vaelab never "
            "shares a run directory: start again (or choose another hydra.run.dir)"
        ) from None
