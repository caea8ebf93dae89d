"""What a run reports to its Lightning loggers, and vaelab's own two loggers.

``report_final``: at the end, the config as hyperparameters and the final metrics (TensorBoard pairs the two in
its HPARAMS tab), at the run's last optimizer step. ``TensorBoardLogger`` and ``CSVLogger`` (conf/logger): Lightning's,
writing each tag at most once per step, at increasing steps (``OneValuePerStep``). Every vaelab scalar is logged
at the optimizer step (``trainer.global_step``) under ``train/``, ``val/``, ``test/``, ``final/`` or ``model/``.

The logger classes are made on first use (module ``__getattr__``): importing this module does not import
Lightning, so the command line stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def report_final(trainer: Any, cfg: DictConfig, final: dict[str, float]) -> None:
    """Logs `cfg` and the ``final/<metric>`` values to each of the trainer's loggers at the last optimizer step
    (``trainer.global_step``: the end of the training curves, not step 0) and closes them (rank zero only).
    TensorBoard also gets the HPARAMS summaries, the config paired with these metrics."""
    if not trainer.is_global_zero:
        return
    from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoard

    step = trainer.global_step
    params = flat_hparams(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(params)  # hparams.yaml (no TensorBoard summaries without metrics)
        logger.log_metrics(final, step=step)
        if isinstance(logger, LightningTensorBoard):  # what log_hyperparams(params, metrics) writes, at `step`
            from torch.utils.tensorboard.summary import hparams

            writer = logger.experiment._get_file_writer()
            for summary in hparams(params, final):
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
