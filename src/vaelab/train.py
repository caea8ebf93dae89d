"""``vaelab-train``: compose the config, train, test, write metrics.json and print a summary.

Usage: ``vaelab-train [group=option ...] [key=value ...]``, ``vaelab-train -m key=a,b`` for a grid,
``vaelab-train --help`` for the config groups, ``vaelab-train --cfg job`` for the composed config.
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import vaelab.config  # noqa: F401  (registers the job-folder resolver used by conf/hydra)
from vaelab.errors import ConfigError, DataError, DivergenceError, RunExistsError, RunInterrupted
from vaelab.run_record import RUN_CONTROL_KEYS, RunRecord, is_rank_zero

# Warnings that say nothing about the run: a torch/Lightning deprecation, and Lightning's note that an epoch
# has fewer iterations than log_every_n_steps (vaelab logs by optimizer step, several per iteration).
KNOWN_NOISE = (r".*LeafSpec.*", r"The number of training batches .* is smaller than the logging interval",
               r"Checkpoint directory .* exists and is not empty")  # a resumed run's own checkpoints
log = logging.getLogger("vaelab")
LAST_CKPT = Path("checkpoints") / "last.ckpt"


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _overrides() -> list[str]:
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return [o for o in task if _override_key(o) not in RUN_CONTROL_KEYS]


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run directory's metrics.json, None when there is none, {"status": "unreadable"} when it is corrupt."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}
    return data if isinstance(data, dict) else {"status": "unreadable"}


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
    whatever it is. Exceptions propagate after being recorded. A run directory that already holds a
    metrics.json is never overwritten (RunExistsError, nothing written) unless the job resumes it
    (``ckpt_path``) or ``skip_completed`` is set: then a completed run is returned as it is, and a run that was
    interrupted or killed continues from its ``checkpoints/last.ckpt`` (a failed or diverged one starts over).
    """
    run_dir = Path(cfg.paths.output_dir)
    ckpt_path = cfg.get("ckpt_path")
    previous = read_metrics(run_dir)
    if previous is not None:
        status = previous.get("status")
        if cfg.get("skip_completed") and status == "completed":
            log.info("vaelab: skipping %s: it already completed (skip_completed=true)", run_dir)
            return {**previous, "skipped": True}
        if ckpt_path is None and not cfg.get("skip_completed"):
            raise RunExistsError(
                f"{run_dir} already holds a run (status {status}); vaelab never overwrites a run: choose a new "
                f"hydra.run.dir, continue it with resume={run_dir}, or re-run a sweep's unfinished jobs with "
                "skip_completed=true")
        if ckpt_path is None and status in ("interrupted", "running") and (run_dir / LAST_CKPT).is_file():
            ckpt_path = str(run_dir / LAST_CKPT)  # skip_completed: the job continues where it stopped
    fields = {"resumed_from": str(ckpt_path)} if ckpt_path else {}
    try:
        record = RunRecord(run_dir, exclusive=previous is None, name=cfg.name, seed=cfg.seed,
                           overrides=_overrides(), run_dir=str(run_dir), **fields)
    except FileExistsError:  # another process claimed this directory in the meantime
        raise RunExistsError(f"{run_dir} was claimed by another run that started at the same time; vaelab never "
                             "shares a run directory: start again (or choose another hydra.run.dir)") from None
    try:
        return record.finish("completed", **_fit_and_test(cfg, record, ckpt_path))
    except DivergenceError as err:
        record.finish("diverged", error=str(err), **err.details)
        raise
    except RunInterrupted as err:
        record.finish("interrupted", error=str(err), checkpoint=err.checkpoint, interrupted_at_epoch=err.epoch,
                      interrupted_at_step=err.step)
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
            group = getattr(node, "_key", lambda: "?")()
            raise ConfigError(f"{_choice(group)}: {err.__cause__}; pick another option, e.g. trainer=cpu") from None
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

    check_config(cfg)
    datamodule = _instantiate(cfg.data)
    datamodule.train_dataloader()  # checks batch size against the data (the data is built once, and kept)
    model = _instantiate(cfg.model, _partial_=True, _convert_="all")(data=datamodule.spec)
    if cfg.get("inference"):  # e.g. inference=sa: SemiAmortized(model, ...)
        model = _instantiate(cfg.inference, _partial_=True, _convert_="all")(model)
    scheduler = _instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    _probe_optimizer(_instantiate(cfg.optimizer), scheduler, model)
    # optimisation is manual (several steps per Lightning iteration): the module clips gradients itself
    clip = {k: cfg.trainer.get(k) for k in ("gradient_clip_val", "gradient_clip_algorithm")}
    module = VAETrainingModule(model, _instantiate(cfg.optimizer), scheduler, eval_seed=cfg.seed,
                               gradient_clip_val=clip["gradient_clip_val"],
                               gradient_clip_algorithm=clip["gradient_clip_algorithm"] or "norm",
                               kl_warmup=_instantiate(cfg.kl_warmup) if cfg.get("kl_warmup") else None,
                               compile_loss=bool(cfg.get("compile", False)))
    callbacks = [_instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [_instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = _instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
                          gradient_clip_val=None, gradient_clip_algorithm=None)
    return Run(datamodule, model, module, callbacks, trainer)


def _choice(group: str) -> str:
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return f"{group}={choices.get(group, '?')}"


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} must be a number") from None


def check_config(cfg: DictConfig) -> None:
    """Checks of keys that no constructor sees before training starts (the optimizer is built inside
    ``trainer.fit``, the training length is Lightning's); each message names the key and the fix. Models and
    datasets check their own arguments (and their compatibility, through the DataSpec) in their constructors."""
    trainer = cfg.trainer
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if (max_epochs is None or max_epochs < 0) and (max_steps is None or max_steps < 0):
        raise ConfigError(f"trainer.max_epochs={max_epochs} and trainer.max_steps={max_steps} are both unlimited; "
                          "set one of them (e.g. trainer.max_epochs=300)")
    for key in ("log_every_n_steps", "check_val_every_n_epoch"):
        if trainer.get(key) is not None and trainer[key] < 1:
            raise ConfigError(f"trainer.{key}={trainer[key]} must be >= 1")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and not (math.isfinite(_number("trainer.gradient_clip_val", clip)) and clip > 0):
        raise ConfigError(f"trainer.gradient_clip_val={clip} must be > 0 (or null for no clipping)")
    restarts = cfg.get("restarts", 1)
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 1:
        raise ConfigError(f"restarts={restarts!r} must be an integer >= 1 (1: one initialisation; K: train K and "
                          "keep the best validation ELBO)")
    optimizer = cfg.optimizer
    if "lr" in optimizer:
        lr = _number("optimizer.lr", optimizer.lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"optimizer.lr={optimizer.lr} must be a finite number > 0 (e.g. optimizer.lr=5e-3)")
    for key in ("weight_decay", "eps", "momentum"):
        if key in optimizer and optimizer[key] is not None:
            value = _number(f"optimizer.{key}", optimizer[key])
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"optimizer.{key}={optimizer[key]} must be a finite number >= 0")


def _probe_optimizer(optimizer: Any, scheduler: Any, model: Any) -> None:
    """Builds a throwaway optimizer and scheduler on the model's parameters, so that the values torch rejects
    (betas, a OneCycle pct_start ...) fail now, naming the config group, rather than inside trainer.fit."""
    import inspect

    try:
        probe = optimizer(model.parameters())
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{_choice('optimizer')}: {err}; fix the optimizer.* values") from None
    if scheduler is None:
        return
    kwargs = {}
    if "total_steps" in inspect.signature(scheduler).parameters and \
            "total_steps" not in getattr(scheduler, "keywords", {}):
        kwargs["total_steps"] = 1000
    try:
        scheduler(probe, **kwargs)
    except (ValueError, TypeError, ZeroDivisionError) as err:
        raise ConfigError(f"{_choice('scheduler')}: {err}; fix the scheduler.* values") from None


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


RESTART_SEED_STRIDE = 100_003  # restart i trains with seed + i * this (restart 0 is the plain run)


def _fit(cfg: DictConfig, record: RunRecord, ckpt_path: str | None = None) -> tuple[Run, Any]:
    """Builds and trains one initialisation; returns the run and its Diagnostics callback."""
    from vaelab.callbacks import Diagnostics

    run = build(cfg)
    diagnostics = next((c for c in run.callbacks if isinstance(c, Diagnostics)), None)
    if diagnostics is None:
        raise ConfigError("callbacks.diagnostics is missing: it computes the final metrics; restore it")
    record.update(data=run.datamodule.spec.name, model=type(run.model).__name__, **_model_sizes(run.model), **{
        f"true_{k}": v for k, v in run.datamodule.spec.ground_truth.items()})
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; give a checkpoint file (e.g. "
                          "<run dir>/checkpoints/last.ckpt) or resume=<run dir>")
    run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=ckpt_path)
    return run, diagnostics


def _model_sizes(model: Any) -> dict[str, Any]:
    """The sizes a model resolved from the data (``latent_dim``, the iVAE's ``prior_mean``), for metrics.json."""
    inner = getattr(model, "base", model)  # SA-VAE wraps the model it refines
    sizes = {"model_latent_dim": getattr(model, "latent_dim", None)}
    if hasattr(inner, "prior_mean"):
        sizes["model_prior_mean"] = bool(inner.prior_mean)
    return {k: v for k, v in sizes.items() if v is not None}


def _restart_config(cfg: DictConfig, index: int) -> DictConfig:
    """Restart `index`'s config: its own seed, and its own folder ``restarts/<index>`` inside the run dir."""
    from omegaconf import open_dict

    restart = cfg.copy()
    with open_dict(restart):
        restart.seed = int(cfg.seed) + index * RESTART_SEED_STRIDE
        restart.paths.output_dir = str(Path(cfg.paths.output_dir) / "restarts" / str(index))
    return restart


def _fit_restarts(cfg: DictConfig, record: RunRecord) -> tuple[Run, Any, dict[str, Any]]:
    """``restarts`` = K > 1: K initialisations trained in full, each in ``restarts/<i>/`` with seed ``seed + i *
    RESTART_SEED_STRIDE``. Kept: among the restarts that say converged (all of them when none does), the one with
    the best validation ELBO at the end of training; never a ground truth. A restart that diverges is listed
    (``diverged``) and skipped; only when all K diverge does the run fail. Returns the kept run, its diagnostics
    and the metrics.json fields describing all K (also written while the restarts run)."""
    attempts, trained = [], []
    for index in range(int(cfg.restarts)):
        restart_cfg = _restart_config(cfg, index)
        attempt: dict[str, Any] = {"restart": index, "seed": int(restart_cfg.seed)}
        try:
            run, diagnostics = _fit(restart_cfg, record)
        except DivergenceError as err:
            attempts.append({**attempt, "diverged": str(err)})
            record.update(restarts=attempts)
            log.warning("vaelab: restart %d/%d diverged: %s", index + 1, cfg.restarts, err)
            continue
        last = diagnostics.history[-1]
        attempt.update(val_elbo=-last["neg_elbo"], val_active_dims=last["active_dims"],
                       epochs=run.trainer.current_epoch)
        convergence = _convergence(run)
        if convergence is not None:
            attempt["converged"] = convergence.verdict(diagnostics.history, run.module)["converged"]
        attempts.append(attempt)
        trained.append((run, diagnostics, attempt))
        record.update(restarts=attempts)
        log.info("vaelab: restart %d/%d: validation ELBO %.4g, active dims %d", index + 1, cfg.restarts,
                 attempt["val_elbo"], attempt["val_active_dims"])
    if not trained:
        raise DivergenceError(f"all restarts={cfg.restarts} initialisations diverged; see restarts/<i>/metrics.json")
    run, diagnostics, kept = max(trained, key=lambda t: (bool(t[2].get("converged")), t[2]["val_elbo"]))
    return run, diagnostics, {"restarts": attempts, "restart_kept": kept["restart"],
                              "restart_kept_dir": str(Path("restarts") / str(kept["restart"]))}


def _convergence(run: Run) -> Any:
    from vaelab.convergence import Convergence

    return next((c for c in run.callbacks if isinstance(c, Convergence)), None)


def _fit_and_test(cfg: DictConfig, record: RunRecord, ckpt_path: str | None = None) -> dict[str, Any]:
    from lightning.pytorch.loggers import TensorBoardLogger

    _check_not_ddp_in_multirun(cfg)
    if int(cfg.get("restarts", 1)) > 1:
        if ckpt_path is not None:
            raise ConfigError(f"restarts={cfg.restarts} cannot resume from a checkpoint (ckpt_path / resume=): "
                              "start the run again, or set restarts=1")
        run, diagnostics, restart_fields = _fit_restarts(cfg, record)
    else:
        run, diagnostics = _fit(cfg, record, ckpt_path)
        restart_fields = {}
    trainer = run.trainer
    metrics = {**diagnostics.run(trainer, run.module, "test"),  # on the final weights
               "epochs": trainer.current_epoch, "steps": trainer.global_step,
               "gamma_floor_reached_at_step": run.module.gamma_floor_step, **restart_fields}
    convergence = _convergence(run)
    if convergence is not None:
        metrics.update(convergence.verdict(diagnostics.history, run.module))
    final = {f"final/{k}": float(v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) or k == "converged"}
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
    if "converged" in result:
        lines.append(f"  converged: {'yes' if result['converged'] else 'NO'} ({result['convergence']['reason']})")
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
    (and an Optuna sweeper marks the trial failed); the sweep's end report lists the failures. An interrupted
    job (SIGINT/SIGTERM) stops the whole process, after saving its checkpoint, with exit code 128 + signal."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        result = train(cfg)
    except RunInterrupted as err:
        print(f"vaelab-train: interrupted: {err}; continue with: vaelab-train resume={cfg.paths.output_dir}"
              + (" (or re-run the sweep with skip_completed=true hydra.sweep.dir=...)" if multirun else ""),
              file=sys.stderr)
        sys.exit(128 + err.signum)
    except (ConfigError, DataError) as err:
        where = "" if isinstance(err, RunExistsError) else f" [recorded in {cfg.paths.output_dir}/metrics.json]"
        if multirun:
            log.error("vaelab-train: %s failed: %s%s", _job_label(), err, where)
            return math.nan
        print(f"vaelab-train: error: {err}{where}", file=sys.stderr)
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


def _option(argv: list[str], key: str) -> str | None:
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"{key}=")]
    return values[-1].strip("'\"") if values else None


def expand_resume(argv: list[str]) -> list[str]:
    """``resume=<run dir>``: the run's own overrides (``.hydra/overrides.yaml``) plus those given now (which
    replace saved ones with the same key), ``ckpt_path=<run dir>/checkpoints/last.ckpt`` and
    ``hydra.run.dir=<run dir>``, so the run continues in its directory. Raises ConfigError when the directory
    has no checkpoint or no saved config, or with -m."""
    from omegaconf import OmegaConf

    resume = _option(argv, "resume")
    if resume is None:
        return argv
    if "-m" in argv or "--multirun" in argv:
        raise ConfigError("resume= continues one run; to finish an interrupted sweep run it again with "
                          "skip_completed=true hydra.sweep.dir=<sweep dir>")
    run_dir = Path(resume).expanduser().resolve()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not (run_dir / LAST_CKPT).is_file():
        raise ConfigError(f"resume={resume}: no {LAST_CKPT} in that directory (a run saves it when training "
                          "starts); start the run again instead")
    if not saved.is_file():
        raise ConfigError(f"resume={resume}: no .hydra/overrides.yaml in that directory, so its config is "
                          "unknown; use ckpt_path=<checkpoint> with the run's overrides instead")
    given = [a for a in argv if _override_key(a) not in ("resume", "ckpt_path", "hydra.run.dir")]
    keys = {_override_key(a) for a in given}
    own = [str(o) for o in OmegaConf.load(saved) or []]
    own = [o for o in own if _override_key(o) not in RUN_CONTROL_KEYS and _override_key(o) not in keys]
    return [*own, *given, f"resume='{run_dir}'", f"ckpt_path='{run_dir / LAST_CKPT}'",
            f"hydra.run.dir='{run_dir}'"]


def check_run_dir(argv: list[str]) -> None:
    """A ``hydra.run.dir`` that already holds a run is refused before Hydra writes its .hydra/ files there."""
    run_dir = _option(argv, "hydra.run.dir")
    if run_dir is None or "-m" in argv or "--multirun" in argv or any(
            _option(argv, key) not in (None, "null", "false") for key in RUN_CONTROL_KEYS):
        return
    previous = read_metrics(run_dir)
    if previous is not None:
        raise RunExistsError(f"{run_dir} already holds a run (status {previous.get('status')}); vaelab never "
                             f"overwrites a run: choose a new hydra.run.dir, or continue it with resume={run_dir}")


GROUP_OFF_HINTS = {"kl_warmup": "where an experiment turned the warm-up on, kl_warmup.beta0=1 keeps the KL weight "
                                 "at 1 (no warm-up)"}


def null_group_override(argv: list[str]) -> str | None:
    """``group=null`` for a config group (e.g. kl_warmup=null) is not a Hydra override (it fails with a bare
    ValueError); returns what to write instead, or None."""
    import vaelab.conf

    conf = Path(vaelab.conf.__file__).resolve().parent
    for arg in argv:
        key, _, value = arg.partition("=")
        if value.strip("'\"") == "null" and (conf / key.lstrip("+")).is_dir():
            group = key.lstrip("+")
            hint = GROUP_OFF_HINTS.get(group, "one an experiment turned on stays on (its values would be left "
                                              "without their class): use a run without that experiment")
            return (f"{arg}: a config group cannot be set to null on the command line; pick one of its options "
                    f"({group}=<option>), or leave it out; {hint}")
    return None


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # outside training (where LastCheckpoint handles it) SIGTERM acts like Ctrl-C


def cli() -> None:
    """The ``vaelab-train`` console script: checks that a requested launcher/sweeper plugin is installed,
    expands ``resume=``, refuses to overwrite a run, then hands over to Hydra."""
    from vaelab.sweep import missing_plugin

    problem = missing_plugin(sys.argv[1:]) or null_group_override(sys.argv[1:])
    try:
        argv = expand_resume(sys.argv[1:])
        check_run_dir(argv)
    except ConfigError as err:
        problem = problem or str(err)
    if problem:
        print(f"vaelab-train: error: {problem}", file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = argv
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    main()


if __name__ == "__main__":
    cli()
