"""``build``: one training job's objects (data, model, training module, callbacks, loggers, trainer) from its
composed config, as ``Run``; every config and data error is raised here, before training.

Lightning and torch are imported inside ``build``: importing this module stays light (vaelab.cli, ``--help``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from vaelab.errors import ConfigError, DataError
from vaelab.loggers import place_tensorboard
from vaelab.schedules import total_steps
from vaelab.validation import check_config, choice, probe_optimizer

# Warnings that say nothing about the run: a torch/Lightning deprecation, and Lightning's note that an epoch
# has fewer iterations than log_every_n_steps (vaelab logs by optimizer step, several per iteration).
KNOWN_NOISE = (
    r".*LeafSpec.*",
    r"The number of training batches .* is smaller than the logging interval",
    r"Checkpoint directory .* exists and is not empty",
    r"The .srun. command is available on your system but is not used",  # SLURM installed, run outside it
)  # a resumed run's own checkpoints


@dataclass
class Run:
    """Everything one training job needs, built (and so validated) from the config."""

    datamodule: Any
    model: Any
    module: Any
    callbacks: list
    trainer: Any
    tensorboard_dir: str | None = None  # a sweep job's TensorBoard folder, outside its run dir (vaelab.loggers)

    @property
    def convergence(self) -> Any:
        """The Convergence callback, None when the config has none."""
        from vaelab.convergence import Convergence

        return next((c for c in self.callbacks if isinstance(c, Convergence)), None)


def instantiate(node: Any, *args: Any, **kwargs: Any) -> Any:
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
            raise ConfigError(f"{choice(group)}: {err.__cause__}; pick another option, e.g. trainer=cpu") from None
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
    datamodule = instantiate(cfg.data)
    per_epoch = datamodule.train_dataloader().num_batches()  # checks batch size against the data (built once)
    model = instantiate(cfg.model, _partial_=True, _convert_="all")(data=datamodule.spec)
    if cfg.get("inference"):  # e.g. inference=sa: SemiAmortized(model, ...)
        model = instantiate(cfg.inference, _partial_=True, _convert_="all")(model)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    probe_optimizer(instantiate(cfg.optimizer), scheduler, model)
    # optimisation is manual (several steps per Lightning iteration): the module clips gradients itself
    clip = {k: cfg.trainer.get(k) for k in ("gradient_clip_val", "gradient_clip_algorithm")}
    module = VAETrainingModule(
        model,
        instantiate(cfg.optimizer),
        scheduler,
        eval_seed=cfg.seed,
        gradient_clip_val=clip["gradient_clip_val"],
        gradient_clip_algorithm=clip["gradient_clip_algorithm"] or "norm",
        kl_warmup=instantiate(cfg.kl_warmup) if cfg.get("kl_warmup") else None,
        compile_loss=bool(cfg.get("compile", False)),
    )
    if module.kl_warmup is not None:
        run_steps = total_steps(cfg.trainer.get("max_steps"), cfg.trainer.get("max_epochs"), per_epoch)
        module.kl_warmup.check_fits(run_steps, per_epoch)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    tensorboard_dir = place_tensorboard(cfg)  # a sweep job: <sweep dir>/tensorboard/<short name>
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        gradient_clip_val=None,
        gradient_clip_algorithm=None,
    )
    return Run(datamodule, model, module, callbacks, trainer, tensorboard_dir)
