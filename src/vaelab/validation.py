"""Config checks that no constructor makes before training starts; each message names the key and the fix.

Models and datasets check their own arguments (and their compatibility, through the DataSpec) in their
constructors. Free of torch/Lightning imports: ``check_config`` and ``check_run_options`` need only the config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from vaelab.errors import ConfigError
from vaelab.schedules import takes_total_steps

PROBE_TOTAL_STEPS = 1000  # the run length a scheduler is probed with (the real one is known inside trainer.fit)


def choice(group: str) -> str:
    """``group=<option>`` as chosen on the command line or by the config (``?`` outside a Hydra run)."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return f"{group}={choices.get(group, '?')}"


def number(key: str, value: Any) -> float:
    """`value` as a float; ConfigError naming `key` when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} must be a number") from None


def check_config(cfg: DictConfig) -> None:
    """Checks of keys that no constructor sees before training starts (the optimizer is built inside
    ``trainer.fit``, the training length is Lightning's)."""
    trainer = cfg.trainer
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if (max_epochs is None or max_epochs < 0) and (max_steps is None or max_steps < 0):
        raise ConfigError(
            f"trainer.max_epochs={max_epochs} and trainer.max_steps={max_steps} are both unlimited; "
            "set one of them (e.g. trainer.max_epochs=300)"
        )
    for key in ("log_every_n_steps", "check_val_every_n_epoch"):
        if trainer.get(key) is not None and trainer[key] < 1:
            raise ConfigError(f"trainer.{key}={trainer[key]} must be >= 1")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and not (math.isfinite(number("trainer.gradient_clip_val", clip)) and clip > 0):
        raise ConfigError(f"trainer.gradient_clip_val={clip} must be > 0 (or null for no clipping)")
    restarts = cfg.get("restarts", 1)
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 1:
        raise ConfigError(
            f"restarts={restarts!r} must be an integer >= 1 (1: one initialisation; K: train K and "
            "keep the best validation ELBO)"
        )
    optimizer = cfg.optimizer
    if "lr" in optimizer:
        lr = number("optimizer.lr", optimizer.lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"optimizer.lr={optimizer.lr} must be a finite number > 0 (e.g. optimizer.lr=5e-3)")
    for key in ("weight_decay", "eps", "momentum"):
        if key in optimizer and optimizer[key] is not None:
            value = number(f"optimizer.{key}", optimizer[key])
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"optimizer.{key}={optimizer[key]} must be a finite number >= 0")


def check_run_options(cfg: DictConfig, ckpt_path: str | None) -> None:
    """How the job runs: no multi-process trainer inside a multirun, no restarts when resuming."""
    _check_not_ddp_in_multirun(cfg)
    if int(cfg.get("restarts", 1)) > 1 and ckpt_path is not None:
        raise ConfigError(
            f"restarts={cfg.restarts} cannot resume from a checkpoint (ckpt_path / resume=): "
            "start the run again, or set restarts=1"
        )


def _check_not_ddp_in_multirun(cfg: DictConfig) -> None:
    """DDP re-launches the command line in new processes: inside ``-m`` that would re-run the whole sweep."""
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return
    t = cfg.trainer
    devices = t.get("devices", 1)
    if isinstance(devices, str):
        devices = (
            [d for d in devices.split(",") if d.strip()]
            if "," in devices
            else (int(devices) if devices.strip().lstrip("-").isdigit() else devices)
        )
    many = (
        devices == -1
        or (isinstance(devices, int) and devices > 1)
        or (not isinstance(devices, (int, str)) and len(devices) > 1)
    )
    if many or "ddp" in str(t.get("strategy", "")) or int(t.get("num_nodes") or 1) > 1:
        raise ConfigError(
            f"trainer={HydraConfig.get().runtime.choices.get('trainer')} (devices={devices}, "
            f"strategy={t.get('strategy', 'auto')}) starts several processes, which is not supported "
            "inside a -m multirun; run DDP jobs one at a time (without -m), or sweep with "
            "trainer=cpu / trainer=gpu (one device per job)"
        )


def check_checkpoint(ckpt_path: str | None) -> None:
    """A checkpoint to resume from must exist."""
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist; give a checkpoint file (e.g. "
            "<run dir>/checkpoints/last.ckpt) or resume=<run dir>"
        )


def probe_optimizer(optimizer: Callable[..., Any], scheduler: Callable[..., Any] | None, model: Any) -> None:
    """Builds a throwaway optimizer and scheduler on the model's parameters, so that the values torch rejects
    (betas, a OneCycle pct_start ...) fail now, naming the config group, rather than inside trainer.fit."""
    try:
        probe = optimizer(model.parameters())
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{choice('optimizer')}: {err}; fix the optimizer.* values") from None
    if scheduler is None:
        return
    kwargs = {"total_steps": PROBE_TOTAL_STEPS} if takes_total_steps(scheduler) else {}
    try:
        scheduler(probe, **kwargs)
    except (ValueError, TypeError, ZeroDivisionError) as err:
        raise ConfigError(f"{choice('scheduler')}: {err}; fix the scheduler.* values") from None
