"""The one LightningModule that trains every LatentVariableModel."""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import lightning as L
import torch

from vaelab.errors import ConfigError, DivergenceError
from vaelab.models.base import Batch, LatentVariableModel


class VAETrainingModule(L.LightningModule):
    """Minimises ``model.loss(batch)["loss"]`` (negative ELBO, nats per sample).

    optimizer: partial taking the parameters (e.g. ``torch.optim.Adam`` with ``_partial_: true``);
    scheduler: partial taking the optimizer, or None; stepped after every optimizer step, with
    ``total_steps`` filled in when it asks for it (OneCycleLR). gradient_clip_val / _algorithm: as Lightning's.

    Training batches come stacked, (k, batch_size, ...): one optimizer step per minibatch (see
    TensorBatchLoader), so optimisation is manual. Training terms go straight to the loggers every
    ``trainer.log_every_n_steps`` optimizer steps (no per-step logging work otherwise); validation runs with the
    global RNG forked and seeded by ``eval_seed`` so it never shifts the training random stream, and
    checkpoints carry the RNG state, so a resumed run continues the same stream.
    """

    def __init__(self, model: LatentVariableModel, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, eval_seed: int = 0,
                 gradient_clip_val: float | None = None, gradient_clip_algorithm: str = "norm"):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.eval_seed = eval_seed
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.last_train_terms: dict[str, float] = {}
        self._train_rng_states: dict | None = None

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        log_every = self.trainer.log_every_n_steps
        max_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else None
        for i in range(len(batch["x"])):
            if max_steps is not None and self.global_step >= max_steps:
                self.trainer.should_stop = True  # Lightning checks max_steps only between fetches
                return
            terms = self.model.loss({k: v[i] for k, v in batch.items()})
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(terms["loss"])
            if self.gradient_clip_val:
                self.clip_gradients(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if self.global_step % log_every == 0:
                self._log_train(terms, optimizer)

    def _log_train(self, terms: dict[str, torch.Tensor], optimizer) -> None:
        values = {f"train/{k}": float(v.detach()) for k, v in terms.items()}
        if not all(map(math.isfinite, values.values())):
            raise DivergenceError(f"training loss terms became non-finite at step {self.global_step}: {values}")
        values.update({f"model/{k}": float(v) for k, v in self.model.scalars().items()})
        values["train/lr"] = optimizer.param_groups[0]["lr"]
        self.last_train_terms = values
        if self.trainer.is_global_zero:
            for logger in self.loggers:
                logger.log_metrics(values, step=self.global_step)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        terms = self.model.loss(batch)
        # every process evaluates the whole split; sync_dist only averages identical values (and is
        # a no-op on one process)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True,
                      batch_size=len(batch["x"]), sync_dist=True)

    def _rng_states(self) -> dict[str, Any]:
        states = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def _set_rng_states(self, states: dict[str, Any]) -> None:
        torch.set_rng_state(states["torch"])
        if "cuda" in states and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"], self.device)

    def _fork_rng(self) -> None:
        self._train_rng_states = self._rng_states()
        torch.manual_seed(self.eval_seed)

    def _join_rng(self) -> None:
        if self._train_rng_states is not None:
            self._set_rng_states(self._train_rng_states)
            self._train_rng_states = None

    on_validation_epoch_start = _fork_rng
    on_validation_epoch_end = _join_rng

    def total_steps(self) -> int:
        """Optimizer steps the run will take: the smaller of max_steps and max_epochs x minibatches per epoch."""
        trainer = self.trainer
        limits = [trainer.max_steps] if trainer.max_steps > 0 else []
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            limits.append(trainer.max_epochs * trainer.datamodule.train_dataloader().num_batches())
        if not limits:
            raise ConfigError("trainer.max_epochs and trainer.max_steps are both unlimited; set one of them")
        return min(limits)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if "total_steps" in inspect.signature(self.scheduler_factory).parameters and \
                "total_steps" not in getattr(self.scheduler_factory, "keywords", {}):
            kwargs["total_steps"] = self.total_steps()
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer, **kwargs)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = self._rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            self._set_rng_states(checkpoint["rng_states"])
