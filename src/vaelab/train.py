"""``vaelab-train``: compose the config, train, test, write metrics.json and print a summary.

Usage: ``vaelab-train [group=option ...] [key=value ...]``, ``vaelab-train -m key=a,b`` for a grid,
``vaelab-train --help`` for the config groups, ``vaelab-train --cfg job`` for the composed config.
"""
from __future__ import annotations

import logging
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vaelab.errors import ConfigError, DataError, DivergenceError
from vaelab.run_record import RunRecord, is_rank_zero

# Warnings that say nothing about the run: a torch/Lightning deprecation, and Lightning's note that an epoch
# has fewer iterations than log_every_n_steps (vaelab logs by optimizer step, several per iteration).
KNOWN_NOISE = (r".*LeafSpec.*", r"The number of training batches .* is smaller than the logging interval")
log = logging.getLogger("vaelab")


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The config as flat ``a/b/c`` keys with scalar values, for TensorBoard's HPARAMS tab."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}" if prefix else str(key))
        elif isinstance(node, (int, float, str, bool)):
            flat[prefix] = node
        elif node is not None:
            flat[prefix] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return {k: v for k, v in flat.items() if not k.startswith(("paths/", "logger/", "callbacks/progress_bar"))}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Runs one training job described by `cfg`; returns the final metrics.json content.

    Everything is instantiated (and so validated) before training starts; metrics.json records the outcome
    whatever it is. Exceptions propagate after being recorded.
    """
    run_dir = Path(cfg.paths.output_dir)
    record = RunRecord(run_dir, name=cfg.name, seed=cfg.seed, overrides=_overrides(), run_dir=str(run_dir))
    try:
        return record.finish("completed", **_fit_and_test(cfg, record))
    except DivergenceError as err:
        record.finish("diverged", error=str(err))
        raise
    except (KeyboardInterrupt, SystemExit) as err:  # Ctrl-C reaches here as Lightning's SystemExit
        record.finish("interrupted", error=type(err).__name__)
        raise
    except Exception as err:
        record.finish("failed", error=f"{type(err).__name__}: {err}")
        raise


@dataclass
class Run:
    """Everything one training job needs, built (and so validated) from the config."""

    datamodule: Any
    model: Any
    module: Any
    callbacks: list
    trainer: Any


def _instantiate(node: Any, *args: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, re-raising vaelab's own errors unwrapped (their message is the whole story)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, (ConfigError, DataError)):
            raise err.__cause__ from None
        if isinstance(err.__cause__, MisconfigurationException):  # e.g. trainer=gpu without a GPU
            raise ConfigError(f"{err.__cause__} (from the config node {getattr(node, '_key', lambda: '?')()}; "
                              "pick another option, e.g. trainer=cpu)") from None
        raise


def build(cfg: DictConfig) -> Run:
    """Instantiates data, model, training module, callbacks, loggers and trainer; raises ConfigError/DataError
    before any training when the config is invalid."""
    import lightning as L  # imported here: `--help` and `--cfg` stay fast
    import torch
    from lightning.pytorch.callbacks import ProgressBar

    from vaelab.training_module import VAETrainingModule

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for noise in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=noise)
    if cfg.torch_threads is not None:
        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = _instantiate(cfg.data)
    model = _instantiate(cfg.model, _partial_=True, _convert_="all")(data=datamodule.spec)
    scheduler = _instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    # optimisation is manual (several steps per Lightning iteration): the module clips gradients itself
    clip = {k: cfg.trainer.get(k) for k in ("gradient_clip_val", "gradient_clip_algorithm")}
    module = VAETrainingModule(model, _instantiate(cfg.optimizer), scheduler, eval_seed=cfg.seed,
                               gradient_clip_val=clip["gradient_clip_val"],
                               gradient_clip_algorithm=clip["gradient_clip_algorithm"] or "norm")
    callbacks = [_instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [_instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = _instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
                          gradient_clip_val=None, gradient_clip_algorithm=None)
    return Run(datamodule, model, module, callbacks, trainer)


def _check_not_ddp_in_multirun(cfg: DictConfig) -> None:
    """DDP re-launches the command line in new processes: inside ``-m`` that would re-run the whole sweep."""
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return
    t = cfg.trainer
    devices = t.get("devices", 1)
    if isinstance(devices, str):
        devices = [d for d in devices.split(",") if d.strip()] if "," in devices else (
            int(devices) if devices.strip().lstrip("-").isdigit() else devices)
    many = devices == -1 or (isinstance(devices, int) and devices > 1) or (
        not isinstance(devices, (int, str)) and len(devices) > 1)
    if many or "ddp" in str(t.get("strategy", "")) or int(t.get("num_nodes") or 1) > 1:
        raise ConfigError(f"trainer={HydraConfig.get().runtime.choices.get('trainer')} (devices={devices}, "
                          f"strategy={t.get('strategy', 'auto')}) starts several processes, which is not supported "
                          "inside a -m multirun; run DDP jobs one at a time (without -m), or sweep with "
                          "trainer=cpu / trainer=gpu (one device per job)")


def _fit_and_test(cfg: DictConfig, record: RunRecord) -> dict[str, Any]:
    from lightning.pytorch.loggers import TensorBoardLogger

    from vaelab.callbacks import Diagnostics

    _check_not_ddp_in_multirun(cfg)
    run = build(cfg)
    trainer, datamodule = run.trainer, run.datamodule
    diagnostics = next((c for c in run.callbacks if isinstance(c, Diagnostics)), None)
    if diagnostics is None:
        raise ConfigError("callbacks.diagnostics is missing: it computes the final metrics; restore it")
    record.update(data=datamodule.spec.name, model=type(run.model).__name__, **{
        f"true_{k}": v for k, v in datamodule.spec.ground_truth.items()})

    trainer.fit(run.module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {**diagnostics.run(trainer, run.module, "test"),  # on the final weights
               "epochs": trainer.current_epoch, "steps": trainer.global_step}
    final = {f"final/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    bad = [k for k, v in final.items() if not math.isfinite(v)]
    if bad:
        raise DivergenceError(f"non-finite final metrics {bad} after {trainer.global_step} steps")
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):  # the HPARAMS tab pairs the config with these metrics
                logger.log_hyperparams(_flat_hparams(cfg), metrics=final)
            else:
                logger.log_hyperparams(_flat_hparams(cfg))
                logger.log_metrics(final, step=trainer.global_step)
            logger.finalize("success")
    return metrics


def format_summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal after a completed run: active dims, gamma, reconstruction error, where the
    files are."""
    truth = f" (manifold_dim = {result['true_manifold_dim']})" if "true_manifold_dim" in result else ""
    numbers = "   ".join(f"{k} = {result[k]:.4g}{unit}" for k, unit in
                           (("gamma", ""), ("recon_mse", ""), ("elbo", " nats"), ("kl", " nats")) if k in result)
    lines = [f"vaelab: {result['status']} in {result['wall_time_s']:.1f} s",
             f"  active_dims = {result['active_dims']}{truth}   active_units = {result['active_units']}",
             f"  {numbers}",
             "  sorted encoder variances: " + " ".join(f"{v:.2g}" for v in sorted(result["per_dim_encoder_var"]))]
    if result.get("gamma_at_floor"):
        lines.append("  warning: gamma reached model.gamma_floor; lower the floor or check the data")
    lines.append(f"  run dir: {result.get('run_dir')}  (metrics.json, checkpoints/, tensorboard/)")
    return "\n".join(lines)


def _job_label() -> str:
    job = HydraConfig.get().job
    return f"job {job.num} ({' '.join(_overrides()) or 'no overrides'})"


@hydra.main(version_base="1.3", config_path="pkg://vaelab.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One job. Single runs: a config/data error is one line and exit code 2. In a multirun every error is
    recorded in the job's metrics.json, reported in one line, and the job returns NaN, so the other jobs run
    (and an Optuna sweeper marks the trial failed); the sweep's end report lists the failures."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        result = train(cfg)
    except (ConfigError, DataError) as err:
        if multirun:
            log.error("vaelab-train: %s failed: %s", _job_label(), err)
            return math.nan
        print(f"vaelab-train: error: {err} [recorded in {cfg.paths.output_dir}/metrics.json]", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if not multirun:
            raise
        log.error("vaelab-train: %s %s: %s: %s [%s]", _job_label(),
                  "diverged" if isinstance(err, DivergenceError) else "failed", type(err).__name__, err,
                  cfg.paths.output_dir)
        return math.nan
    if is_rank_zero():
        print(format_summary(result))
    value = result.get(cfg.optimized_metric)
    return float(value) if isinstance(value, (int, float)) else math.nan


def cli() -> None:
    """The ``vaelab-train`` console script: checks that a requested launcher/sweeper plugin is installed,
    then hands over to Hydra."""
    from vaelab.sweep import missing_plugin

    problem = missing_plugin(sys.argv[1:])
    if problem:
        print(f"vaelab-train: error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
