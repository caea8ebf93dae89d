"""How an error or an interrupt ends one ``vaelab-train`` job (vaelab.train.main): its line, its exit code, or
NaN as a multirun job's result. ``phase`` says where the job is, for the message of a Ctrl-C.

Free of torch/Lightning imports.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from vaelab.cli import continue_hint, job_label
from vaelab.console import FILE_ONLY, STDERR
from vaelab.errors import ConfigError, DataError, DivergenceError, RunExistsError, RunInterrupted

log = logging.getLogger("vaelab")
# where the job is, for the message of a Ctrl-C (run_job): set as a run moves on (vaelab.train)
STARTING, TRAINING, FINAL_EVALUATION = (
    "during start-up, before training",
    "during training",
    "during the final evaluation, after training",
)
phase = {"now": STARTING}


def run_job(output_dir: str, body: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    """Runs `body` (the job's training, with ``phase`` set to STARTING first) and returns its results, or None
    for a multirun job that failed or was stopped (vaelab.train.main returns NaN for it). Single runs: a
    config/data error is one line and exit code 2, a diverged run one line and exit code 1, any other error a line
    in train.log and its traceback. In a multirun every error is reported in one line (and recorded in the job's
    metrics.json where the job wrote one) and the job gives None, so the other jobs run (and an Optuna sweeper
    marks the trial failed); the sweep's end report lists the failures. An interrupted job (SIGINT/SIGTERM) stops
    the whole process, after saving its checkpoint, with exit code 128 + signal (a submitit job of a multirun
    gives None instead); the message names the command that continues it."""
    phase["now"] = STARTING
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return body()
    except RunInterrupted as err:
        log.warning("vaelab-train: interrupted: %s; %s", err, continue_hint(output_dir, multirun), extra=STDERR)
        if multirun and os.environ.get("SUBMITIT_FOLDER"):  # a submitit job: a result for the sweep, not an exit
            return None
        sys.exit(128 + err.signum)
    except (KeyboardInterrupt, SystemExit) as err:
        # LastCheckpoint turns a signal during training into RunInterrupted; this is one before the first step,
        # after training, or a second one (Lightning turns a Ctrl-C inside fit into SystemExit(1))
        if isinstance(err, SystemExit) and not isinstance(err.__context__, KeyboardInterrupt):
            raise
        log.warning("vaelab-train: interrupted %s; %s", phase["now"], continue_hint(output_dir, multirun), extra=STDERR)
        sys.exit(128 + signal.SIGINT)
    except (ConfigError, DataError) as err:
        recorded = not isinstance(err, RunExistsError) and Path(output_dir, "metrics.json").is_file()
        where = f" [recorded in {output_dir}/metrics.json]" if recorded else ""
        if multirun:
            log.error("vaelab-train: %s failed: %s%s", job_label(), err, where)
            return None
        log.error("vaelab-train: error: %s%s", err, where, extra=STDERR)
        sys.exit(2)
    except Exception as err:
        if not multirun:
            if not isinstance(err, DivergenceError):
                log.error("vaelab-train: failed: %s: %s [%s]", type(err).__name__, err, output_dir, extra=FILE_ONLY)
                raise  # a bug: its traceback
            log.error("vaelab-train: diverged: %s [recorded in %s/metrics.json]", err, output_dir, extra=STDERR)
            sys.exit(1)
        log.error(
            "vaelab-train: %s %s: %s: %s [%s]",
            job_label(),
            "diverged" if isinstance(err, DivergenceError) else "failed",
            type(err).__name__,
            err,
            output_dir,
        )
        return None
