"""``vaelab-train``: compose the config, train, test, write metrics.json and print a summary.

Usage: ``vaelab-train [group=option ...] [key=value ...]``, ``vaelab-train -m key=a,b`` for a grid,
``vaelab-train --help`` for the config groups, ``vaelab-train --cfg job`` for the composed config.

Around this module: the command line before Hydra and the console lines (vaelab.cli), the config checks
(vaelab.validation), the job's objects (vaelab.build), the run-directory policy (vaelab.run_dir), restarts
(vaelab.restarts), what metrics.json says of a trained run (vaelab.outcome) and the file itself
(vaelab.run_record), how an error or an interrupt ends a job (vaelab.job_errors).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

import vaelab.config  # noqa: F401  (registers the job-folder resolver used by conf/hydra)
from vaelab import run_dir
from vaelab.build import Run, build
from vaelab.cli import format_summary, member_line, overrides, run_reporting_errors, start_line
from vaelab.console import FILE_ONLY
from vaelab.console import install as install_console
from vaelab.entry import load_libraries
from vaelab.errors import ConfigError, DivergenceError
from vaelab.job_errors import FINAL_EVALUATION, TRAINING, phase, run_job
from vaelab.loggers import report_final, write_pointer
from vaelab.outcome import final_metrics, final_scalars, run_fields
from vaelab.restarts import fit_restarts
from vaelab.run_record import RunRecord, is_rank_zero, recording_failures
from vaelab.validation import check_checkpoint, check_config, check_run_options

log = logging.getLogger("vaelab")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Runs one training job described by `cfg`; returns the final metrics.json content.

    Everything is instantiated (and so validated) before training starts; metrics.json records the outcome
    whatever it is. Exceptions propagate after being recorded. A run directory that already holds a run is
    never overwritten (RunExistsError, nothing written) unless the job resumes it (``ckpt_path``) or
    ``skip_completed`` is set: see vaelab.run_dir.
    """
    directory = Path(cfg.paths.output_dir)
    start = run_dir.decide(directory, cfg.get("ckpt_path"), bool(cfg.get("skip_completed")))
    if start.skip:
        log.info("vaelab: skipping %s: it already completed (skip_completed=true)", directory)
        return {**start.previous, "skipped": True}
    record = run_dir.claim(
        directory, start, name=cfg.name, seed=cfg.seed, overrides=overrides(), run_dir=str(directory)
    )
    with recording_failures(record):
        return record.finish("completed", **_fit_and_test(cfg, record, start.ckpt_path))


def _fit(cfg: DictConfig, record: RunRecord, ckpt_path: str | None = None) -> tuple[Run, Any]:
    """Builds and trains one initialisation; returns the run and its Diagnostics callback."""
    from vaelab.callbacks import Diagnostics

    run = build(cfg)
    diagnostics = next((c for c in run.callbacks if isinstance(c, Diagnostics)), None)
    if diagnostics is None:
        raise ConfigError("callbacks.diagnostics is missing: it computes the final metrics; restore it")
    fields = run_fields(run)
    if run.tensorboard_dir is not None:
        write_pointer(cfg.paths.output_dir, run.tensorboard_dir)
        fields["tensorboard_dir"] = run.tensorboard_dir
    record.update(**fields)
    check_checkpoint(ckpt_path)
    log.info("vaelab: %s", start_line(cfg, fields, ckpt_path), extra=FILE_ONLY)
    if "startup_s" not in record.data:  # imports, data and model: reported apart from wall_time_s
        record.update(startup_s=round(time.perf_counter() - record.start, 3))
    phase["now"] = TRAINING  # LastCheckpoint handles a signal from the first step on (RunInterrupted)
    run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=ckpt_path)
    return run, diagnostics


def _fit_and_test(cfg: DictConfig, record: RunRecord, ckpt_path: str | None = None) -> dict[str, Any]:
    """Trains (one initialisation, or ``restarts`` of them), tests the final weights, reports to the loggers;
    returns the metrics.json fields. DivergenceError when a final metric is not finite."""
    check_config(cfg)  # before torch and Lightning load: a config error is reported in about a second
    check_run_options(cfg, ckpt_path)
    load_libraries()
    if int(cfg.get("restarts", 1)) > 1:
        run, diagnostics, restart_fields = fit_restarts(cfg, record, _fit)
    else:
        run, diagnostics = _fit(cfg, record, ckpt_path)
        restart_fields = {}
    trainer = run.trainer
    phase["now"] = FINAL_EVALUATION
    metrics = final_metrics(trainer, run.module, diagnostics, run.convergence, run.module.gamma_floor_step)
    metrics |= restart_fields
    final = final_scalars(metrics)
    bad = [k for k, v in final.items() if not math.isfinite(v)]
    if bad:
        raise DivergenceError(f"non-finite final metrics {bad} after {trainer.global_step} steps")
    report_final(trainer, cfg, final)
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://vaelab.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One job: trains one run (or the seeds of ``seeds=[...]`` as members), prints the summary and returns the
    optimized metric (the mean over the runs; NaN unless every run completed with a number for it). An error or
    an interrupt ends the job as vaelab.job_errors.run_job says: one line and an exit code, or NaN as a multirun
    job's result."""
    install_console()  # vaelab's lines: on the console as before, and in the job's train.log
    results = run_job(
        cfg.paths.output_dir, lambda: train_members(cfg) if cfg.get("seeds") is not None else [train(cfg)]
    )
    if results is None:  # a multirun job that failed or was stopped, reported by run_job
        return math.nan
    if is_rank_zero():
        log.info("\n".join(format_summary(r) if r.get("status") == "completed" else member_line(r) for r in results))
    values = [r.get(cfg.optimized_metric) for r in results if r.get("status") == "completed"]
    values = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if len(values) == len(results) else math.nan


def train_members(cfg: DictConfig) -> list[dict[str, Any]]:
    """``seeds=[...]``: the seeds trained in one process as one stacked model (vaelab.seed_parallel), each in its
    own run directory ``<run dir>/seed_<s>/``; returns their metrics.json contents in seed order."""
    load_libraries()
    from vaelab.seed_parallel import train_seeds

    return train_seeds(cfg, list(cfg.seeds), overrides=overrides())


def cli() -> None:
    """The ``vaelab-train`` console script: the command line checked and rewritten (vaelab.cli), then ``main``;
    Hydra's own errors (an unknown key, a missing option) and an interrupt before a job starts are one line,
    with exit codes 2 and 130 (HYDRA_FULL_ERROR=1 shows Hydra's tracebacks instead)."""
    run_reporting_errors(main)  # vaelab.cli.prepare_command_line first


if __name__ == "__main__":
    cli()
