"""What a run reports to its Lightning loggers, and vaelab's own two loggers.

``report_final``: at the end, the config as hyperparameters and the final metrics (TensorBoard pairs the two in
its HPARAMS tab), at the run's last optimizer step. ``TensorBoardLogger`` and ``CSVLogger`` (conf/logger): Lightning's,
writing each tag at most once per step, at increasing steps (``OneValuePerStep``). Every vaelab scalar is logged
at the optimizer step (``trainer.global_step``) under ``train/``, ``val/``, ``test/``, ``final/`` or ``model/``.

In a sweep (``-m``) TensorBoard sees each job by a short name, its number and the overrides that differ between
the sweep's jobs (``3_manifold_dim=2,seed=1``: ``sweep_keys``, ``short_job_name``), in ``<sweep dir>/tensorboard/``
(``tensorboard_dir``), and its HPARAMS table compares exactly those keys; the job's run directory keeps everything
else as a single run has it (its ``tensorboard/`` folder says where the events are).

The logger classes are made on first use (module ``__getattr__``): importing this module does not import
Lightning, so the command line stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

HIDDEN_GROUPS = ("paths/", "logger/", "hydra/", "callbacks/progress_bar/")
HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")
FOLDER_SUFFIXES = ("dirpath", "_dir", "_path")
NAMED_CLASS_GROUPS = ("data", "model", "inference", "optimizer", "scheduler", "kl_warmup")


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The config as flat ``a/b/c`` keys with scalar values, for TensorBoard's HPARAMS tab: without folders
    (``paths/``, ``*dirpath``, ``*_dir``, ``*_path``), Hydra's own keys (``_target_``, ``_partial_`` ...) and the
    logger and progress bar settings. The class of a top-level group that picks one (data, model, inference,
    optimizer, scheduler, kl_warmup) stays, as ``<group>/class`` with its short name (``model/class: GaussianVAE``)."""
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
    kept: dict[str, Any] = {}
    for key, value in flat.items():
        group, _, name = key.rpartition("/")
        if key.startswith(HIDDEN_GROUPS) or name.endswith(FOLDER_SUFFIXES):
            continue
        if name == "_target_" and group in NAMED_CLASS_GROUPS:
            kept[f"{group}/class"] = str(value).rsplit(".", 1)[-1]
        elif name not in HYDRA_KEYS:
            kept[key] = value
    return kept


SWEEP_NAME_VALUE_CHARS = 24  # a value in a short job name is cut here


def sweep_keys(sweep_config: DictConfig | None) -> list[str] | None:
    """The override keys that vary between a sweep's jobs, in command-line order: those of its command line (and
    of an experiment's ``hydra.sweeper.params``) that sweep (``a=1,2``, ``range()``, ``choice()`` ...), read from
    the sweep's config (``<sweep dir>/multirun.yaml``); None when it has none to read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if sweep_config is None:
        return None
    hydra = sweep_config.get("hydra") or {}
    task = [str(o) for o in (OmegaConf.select(hydra, "overrides.task") or [])]
    params = OmegaConf.select(hydra, "sweeper.params") or {}
    lines = task + [f"{key}={value}" for key, value in params.items()]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception:  # not Hydra's syntax (another sweeper's search space): no keys to tell apart
        return None
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    return list(dict.fromkeys(keys))


def varying_values(keys: Sequence[str], job_overrides: Sequence[str]) -> dict[str, Any]:
    """``{key: value}`` of this job's overrides for `keys` (values typed as Hydra parses them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([str(o) for o in job_overrides])
    values = {o.key_or_group: o.value() for o in parsed if not o.is_sweep_override()}
    return {key: values[key] for key in keys if key in values}


def short_job_name(num: int, values: Mapping[str, Any]) -> str:
    """``<num>_<key>=<value>,...``: a job by its number and the values that tell it apart, each key by its last
    dotted part (two parts where two keys end alike), each value cut to SWEEP_NAME_VALUE_CHARS characters."""
    keys = list(values)

    def short(key: str) -> str:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(1 for k in keys if k == tail or k.endswith("." + tail)) == 1:
                return tail
        return key

    said = ",".join(f"{short(k)}={str(v)[:SWEEP_NAME_VALUE_CHARS]}" for k, v in values.items())
    name = f"{num}_{said}" if said else str(num)
    return name.replace("/", "_").replace(" ", "")


def _sweep_config(sweep_dir: str | Path) -> DictConfig | None:
    path = Path(sweep_dir) / "multirun.yaml"
    try:
        return OmegaConf.load(path) if path.is_file() else None
    except Exception:
        return None


def sweep_job() -> dict[str, Any] | None:
    """In a multirun job: ``{"name": short_job_name, "values": {key: value}, "sweep_dir": ...}``, the keys that vary
    between the sweep's jobs and this job's values of them (when the sweep's config is not readable: all of the
    job's overrides); None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from vaelab.cli import overrides

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra = HydraConfig.get()
    job_overrides = overrides()
    keys = sweep_keys(_sweep_config(hydra.sweep.dir))
    if keys is None:
        keys = [o.split("=", 1)[0].lstrip("+~") for o in job_overrides]
    values = varying_values(keys, job_overrides)
    return {"name": short_job_name(int(hydra.job.num), values), "values": values, "sweep_dir": str(hydra.sweep.dir)}


def place_tensorboard(cfg: DictConfig) -> str | None:
    """In a multirun job whose TensorBoard logger writes into the job's own directory (the default): points it at
    ``<sweep dir>/tensorboard/<short job name>`` instead, so that ``tensorboard --logdir <sweep dir>`` names the
    job in a few characters rather than by its directory (~150). Returns that folder (None: left as configured;
    write_pointer then says in the job's ``tensorboard/`` where it is). Edits `cfg` in place."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    node = (cfg.get("logger") or {}).get("tensorboard")
    job = sweep_job()
    if job is None or node is None or not str(node.get("_target_", "")).endswith("TensorBoardLogger"):
        return None
    own = Path(HydraConfig.get().runtime.output_dir).resolve()
    if Path(str(node.save_dir)).resolve() != own or Path(str(cfg.paths.output_dir)).resolve() != own:
        return None  # a folder chosen by hand, or a run inside the job (restarts, seed-parallel members)
    folder = Path(job["sweep_dir"]).resolve() / "tensorboard" / job["name"]
    with open_dict(node):
        node.save_dir, node.name, node.version = str(folder.parent), job["name"], ""
    return str(folder)


def write_pointer(run_dir: str | Path, folder: str) -> None:
    """``<run dir>/tensorboard/WHERE.txt``: where a sweep job's TensorBoard events are (place_tensorboard)."""
    pointer = Path(run_dir) / "tensorboard"
    pointer.mkdir(parents=True, exist_ok=True)
    sweep_dir = Path(folder).parent.parent
    (pointer / "WHERE.txt").write_text(
        f"This sweep job's TensorBoard events are in {folder}\n"
        f"(tensorboard --logdir {sweep_dir} names each job by the overrides that differ between the jobs).\n"
    )


def _hparam(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def report_final(trainer: Any, cfg: DictConfig, final: dict[str, float]) -> None:
    """Logs `cfg` and the ``final/<metric>`` values to each of the trainer's loggers at the last optimizer step
    (``trainer.global_step``: the end of the training curves, not step 0) and closes them (rank zero only).
    TensorBoard also gets the HPARAMS summaries, the config paired with these metrics: in a sweep job, the keys
    that vary between the jobs (``sweep_job``), so the table compares what the sweep varied."""
    if not trainer.is_global_zero:
        return
    from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoard

    step = trainer.global_step
    params = flat_hparams(cfg)
    job = sweep_job()
    compared = {k.replace(".", "/"): _hparam(v) for k, v in job["values"].items()} if job and job["values"] else params
    for logger in trainer.loggers:
        logger.log_hyperparams(params)  # hparams.yaml (no TensorBoard summaries without metrics)
        logger.log_metrics(final, step=step)
        if isinstance(logger, LightningTensorBoard):  # what log_hyperparams(params, metrics) writes, at `step`
            from torch.utils.tensorboard.summary import hparams

            writer = logger.experiment._get_file_writer()
            for summary in hparams(compared, final):
                writer.add_summary(summary, step)
        logger.finalize("success")


class OneValuePerStep:
    """A Lightning logger mixin: ``log_metrics`` leaves out a tag already written at this step or a later one, so
    each tag has one value per step and its steps increase, what TensorBoard needs to draw it (it keeps one value
    per step, and a step written out of order breaks the curve). The first value written wins: where the
    validation loop and the validation diagnostics run after the same step, the loop's ``val/loss``, ``val/kl``
    (what checkpoint selection reads)."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if step is not None:
            last: dict[str, int] = self.__dict__.setdefault("_last_step_by_tag", {})
            metrics = {tag: value for tag, value in metrics.items() if last.get(tag, -1) < step}
            if not metrics:
                return
            last.update(dict.fromkeys(metrics, step))
        super().log_metrics(metrics, step)


def _logger_class(name: str) -> type:
    from lightning.pytorch import loggers

    doc = f"Lightning's {name}, writing each tag at most once per step, at increasing steps (OneValuePerStep)."
    return type(name, (OneValuePerStep, getattr(loggers, name)), {"__module__": __name__, "__doc__": doc})


def __getattr__(name: str) -> Any:
    if name in ("TensorBoardLogger", "CSVLogger"):
        cls = globals()[name] = _logger_class(name)
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
