"""Config checks that no constructor makes before training starts; each message names the key and the fix.

Models and datasets check their own arguments (and their compatibility, through the DataSpec) in their
constructors. Free of torch/Lightning imports: ``check_config`` and ``check_run_options`` need only the config.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vaelab.errors import ConfigError
from vaelab.restarts import RESTART_SEED_STRIDE
from vaelab.schedules import takes_total_steps

PROBE_TOTAL_STEPS = 1000  # the run length a scheduler is probed with (the real one is known inside trainer.fit)
MAX_SEED = 2**32 - 1  # numpy's (and so Lightning's seed_everything's) largest seed
# the config groups whose vaelab class is checked (its arguments and their types) before torch loads
CHECKED_GROUPS = ("data", "model", "inference", "kl_warmup")
SCALAR_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


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
    ``trainer.fit``, the training length is Lightning's, the seed is numpy's), and of the arguments of vaelab's
    own classes (names and scalar types, read from their source: torch is not loaded)."""
    check_seed(cfg)
    for group in CHECKED_GROUPS:
        check_arguments(cfg, group)
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


def check_seed(cfg: DictConfig) -> None:
    """``seed`` (and every restart's seed) must be an integer numpy accepts."""
    seed, restarts = cfg.get("seed"), cfg.get("restarts", 1)
    last = seed + (restarts - 1) * RESTART_SEED_STRIDE if isinstance(restarts, int) and restarts > 1 else seed
    if not isinstance(seed, int) or isinstance(seed, bool) or not (0 <= seed and last <= MAX_SEED):
        raise ConfigError(
            f"seed={seed!r} must be an integer in 0..{MAX_SEED}"
            + (
                f" (with restarts={restarts}: 0..{MAX_SEED - (restarts - 1) * RESTART_SEED_STRIDE})"
                if last != seed
                else ""
            )
            + ", e.g. seed=0"
        )


@functools.cache
def constructor_arguments(target: str) -> dict[str, str | None] | None:
    """The keyword arguments of vaelab class or function `target` (``vaelab.models.gaussian_vae.GaussianVAE``) with
    their annotations as written, read from the source without importing it; None when they cannot be known
    (not a vaelab target, or ``**kwargs`` that reach a class outside vaelab)."""
    import vaelab

    module, _, name = target.rpartition(".")
    if module.split(".")[0] != "vaelab":
        return None
    path = Path(vaelab.__file__).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    imports = {
        a.asname or a.name: f"{n.module}.{a.name}" for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
    }
    node = next((n for n in tree.body if getattr(n, "name", None) == name), None)
    if node is None and name in imports:  # imported there from another vaelab module
        return constructor_arguments(imports[name])
    if isinstance(node, ast.FunctionDef):
        return _arguments(node.args)
    if not isinstance(node, ast.ClassDef):
        return None
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
        return {
            ast.unparse(n.target): ast.unparse(n.annotation)
            for n in node.body
            if isinstance(n, ast.AnnAssign) and not ast.unparse(n.annotation).startswith("ClassVar")
        }
    own = _arguments(init.args, open_ok=True) if init is not None else {}
    if init is not None and init.args.kwarg is None:
        return own
    if len(node.bases) != 1:  # **kwargs (or no __init__): the arguments go on to the base class
        return None
    imports = {
        a.asname or a.name: f"{n.module}.{a.name}" for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
    }
    base = ast.unparse(node.bases[0])
    inherited = constructor_arguments(imports.get(base, f"{module}.{base}"))
    return None if inherited is None else {**own, **inherited}


def _arguments(args: ast.arguments, open_ok: bool = False) -> dict[str, str | None] | None:
    if args.kwarg is not None and not open_ok:
        return None
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    return {a.arg: ast.unparse(a.annotation) if a.annotation else None for a in named if a.arg != "self"}


def _scalar_kinds(annotation: str | None) -> set[str] | None:
    """``"int | None"`` -> {"int", "None"}; None when the annotation is not a union of scalar types."""
    if annotation is None:
        return None
    kinds = {part.strip() for part in annotation.replace("Optional[", "").rstrip("]").split("|")}
    return kinds if kinds <= {*SCALAR_TYPES, "None"} else None


def _fits(value: Any, kinds: set[str]) -> bool:
    return (
        (value is None and "None" in kinds)
        or (isinstance(value, bool) and "bool" in kinds)
        or (isinstance(value, int) and not isinstance(value, bool) and kinds & {"int", "float"} != set())
        or (isinstance(value, float) and "float" in kinds)
        or (isinstance(value, str) and "str" in kinds)
    )


def check_arguments(cfg: DictConfig, group: str) -> None:
    """The keys of config group `group` (e.g. ``model``) must be arguments of its vaelab class, and values of
    scalar arguments (``latent_dim: int``) of their type; ConfigError naming the key, and the accepted keys."""
    node = cfg.get(group)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    accepted = constructor_arguments(str(node._target_))
    if accepted is None:
        return
    given = [k for k in node if not str(k).startswith("_")]
    unknown = [k for k in given if k not in accepted]
    if unknown:
        keys = ", ".join(k for k in accepted if k not in ("data", "model"))  # filled in by vaelab, not the config
        raise ConfigError(
            f"{', '.join(f'{group}.{k}' for k in unknown)}: {choice(group)} ({node._target_.rsplit('.', 1)[-1]}) "
            f"has no such argument; its keys are: {keys}"
        )
    for key in given:
        kinds = _scalar_kinds(accepted[key])
        value = OmegaConf.select(node, str(key), throw_on_missing=False)
        if kinds is not None and value is not None and not _fits(value, kinds):
            wanted = " or ".join(SCALAR_TYPES.get(k, "null") for k in [*SCALAR_TYPES, "None"] if k in kinds)
            raise ConfigError(f"{group}.{key}={value!r} must be {wanted}")


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
