"""What a run reports to its Lightning loggers at the end: the config as hyperparameters and the final metrics
(TensorBoard pairs the two in its HPARAMS tab)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
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


def report_final(trainer: Any, cfg: DictConfig, final: dict[str, float]) -> None:
    """Logs `cfg` and the ``final/<metric>`` values to each of the trainer's loggers and closes them (rank zero
    only)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # the HPARAMS tab pairs the config with these metrics
            logger.log_hyperparams(flat_hparams(cfg), metrics=final)
        else:
            logger.log_hyperparams(flat_hparams(cfg))
            logger.log_metrics(final, step=trainer.global_step)
        logger.finalize("success")
