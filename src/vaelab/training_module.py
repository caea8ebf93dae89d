"""The one LightningModule that trains every LatentVariableModel."""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from vaelab.errors import ConfigError, DivergenceError
from vaelab.models.base import Batch, LatentVariableModel
from vaelab.schedules import KLWarmup, takes_total_steps, total_steps

log = logging.getLogger("vaelab")

STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def log_interval(log_every_n_steps: int, steps_per_epoch: int) -> int:
    """Optimizer steps between two logged training points: ``trainer.log_every_n_steps``, but at least one point
    per epoch, so a short run (fewer steps than the interval) still has its training curve."""
    return max(1, min(int(log_every_n_steps), int(steps_per_epoch)))


def plain_single_device(trainer: L.Trainer) -> bool:
    """Whether an optimizer step can skip Lightning's per-step dispatch (backward and optimizer.step through the
    strategy and precision plugin, and the ``STEP_HOOKS`` of every callback and of the module): one device,
    full precision, and no callback or module that overrides a step hook. This dispatch was about a tenth of a
    profiled 1500-step CPU fit at batch 1024. Otherwise (DDP, mixed precision, a callback with step hooks)
    every step goes through Lightning."""
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities.model_helpers import is_overridden

    if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
        return False
    hooked = [(callback, L.Callback) for callback in trainer.callbacks]
    hooked.append((trainer.lightning_module, L.LightningModule))
    return not any(is_overridden(hook, obj, parent) for obj, parent in hooked for hook in STEP_HOOKS)


def require_cpp_compiler() -> None:
    """Raises ConfigError when torch.compile's inductor finds no working C++ compiler (it would fail at the
    first training step otherwise)."""
    try:
        from torch._inductor import cpp_builder  # torch >= 2.4
    except ImportError:  # older torch: look for the compiler inductor calls by default
        if shutil.which(os.environ.get("CXX", "g++")) is None:
            raise ConfigError(
                "compile=true needs a C++ compiler for torch.compile (none found: set CXX or install "
                "g++) or set compile=false"
            ) from None
        return
    try:
        cpp_builder.get_cpp_compiler()
    except Exception as err:  # InvalidCxxCompiler (its module path moves between torch versions)
        raise ConfigError(
            f"compile=true needs a C++ compiler for torch.compile ({err}); install one (e.g. g++) or set compile=false"
        ) from None


class VAETrainingModule(L.LightningModule):
    """Minimises ``model.loss(batch)["loss"]`` (negative ELBO, nats per sample).

    optimizer: partial taking the parameters (e.g. ``torch.optim.Adam`` with ``_partial_: true``);
    scheduler: partial taking the optimizer, or None; stepped after every optimizer step, with
    ``total_steps`` filled in when it asks for it (OneCycleLR). gradient_clip_val / _algorithm: as Lightning's.

    Training batches come stacked, (k, batch_size, ...): one optimizer step per minibatch (see
    TensorBatchLoader), so optimisation is manual. Every scalar is logged at the optimizer step (``global_step``),
    the one step axis of the run: training terms go straight to the loggers every ``log_interval`` optimizer steps
    (``trainer.log_every_n_steps``, at least once per epoch; no per-step logging work otherwise), and the
    validation loop's ``val/<term>`` (means over the split) once per validation run, at the step it ran after
    (Lightning's own logging, which counts batches, is kept for checkpoint selection and the progress bar, not
    the loggers). The loss is checked at
    every step, and the gradient norm when clipping by norm: a NaN/Inf stops the run at once with a
    DivergenceError before the step is taken. ``kl_warmup`` (a KLWarmup or None): the minimised loss is
    ``loss + (beta - 1) * kl`` (= recon_nll + beta * kl for the plain ELBO), logged as ``train/kl_weight``;
    a model with a ``kl_weight`` attribute (SemiAmortized) gets beta set during training steps and 1 otherwise.
    ``compile_loss``: training steps call ``torch.compile(model.loss)`` (evaluation stays eager); the compiled
    graph draws its random numbers as eager code does (inductor's ``fallback_random``); without a C++ compiler
    the constructor raises ConfigError. Validation runs with the
    global RNG forked and seeded by ``eval_seed`` so it never shifts the training random stream, and
    checkpoints carry the RNG state, so a resumed run continues the same stream.
    """

    def __init__(
        self,
        model: LatentVariableModel,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        eval_seed: int = 0,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        kl_warmup: KLWarmup | None = None,
        compile_loss: bool = False,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.eval_seed = eval_seed
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.last_train_terms: dict[str, float] = {}
        self._last_logged_step: int | None = None
        self.last_finite_loss: float | None = None
        self.gamma_floor_step: int | None = None  # first logged step with gamma at model.gamma_floor
        self._train_rng_states: dict | None = None
        self.kl_warmup = kl_warmup
        self._steps_per_epoch: int | None = None
        self._log_every = 1  # set when training starts: see log_interval
        self._val_sums: dict[str, float] = {}
        self._val_count = 0
        self._step_kl_weight = 1.0
        self._model_takes_kl_weight = hasattr(model, "kl_weight")  # once: nn.Module attribute misses are slow
        self._fast_steps = False  # set when training starts: see plain_single_device
        if compile_loss and kl_warmup is not None and self._model_takes_kl_weight:
            raise ConfigError(
                "compile=true with a KL warm-up and inference=sa: the SVI steps read the KL weight "
                "as a Python number, so the compiled loss would be recompiled at every step; "
                "drop compile=true (or the warm-up)"
            )
        if compile_loss:
            require_cpp_compiler()
        self.compile_loss = compile_loss
        self._train_loss = model.loss  # compiled when training starts (in the training process: picklable)

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (minibatches of the training split)."""
        if self._steps_per_epoch is None:
            loader = self.trainer.datamodule.train_dataloader()
            self._steps_per_epoch = loader.num_batches() if hasattr(loader, "num_batches") else len(loader)
        return self._steps_per_epoch

    def on_train_start(self) -> None:
        self._log_every = log_interval(self.trainer.log_every_n_steps, self.steps_per_epoch())
        optimizer = self.optimizers()  # the fast path uses the step-counting hooks Lightning installs on it
        self._fast_steps = plain_single_device(self.trainer) and all(
            hasattr(optimizer, name) for name in ("_on_before_step", "_on_after_step", "optimizer")
        )
        if self.compile_loss:
            import torch._inductor.config as inductor_config

            inductor_config.fallback_random = True  # the same random stream as eager code (seeded runs)
            # dynamic=None: a second batch shape (text: one length per bucket) compiles one dynamic graph
            self._train_loss = torch.compile(self.model.loss)

    def kl_weight(self) -> float:
        """The KL weight beta of the current optimizer step (1 without warm-up)."""
        if self.kl_warmup is None:
            return 1.0
        return self.kl_warmup.weight(self.global_step, self.steps_per_epoch())

    def _set_model_kl_weight(self, beta: float) -> None:
        if self._model_takes_kl_weight:
            self.model.kl_weight = beta

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        log_every = self._log_every
        max_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else None
        fast = self._fast_steps
        for i in range(len(batch["x"])):
            if max_steps is not None and self.global_step >= max_steps:
                self.trainer.should_stop = True  # Lightning checks max_steps only between fetches
                break
            if self.kl_warmup is not None:  # no per-step work without warm-up (beta stays 1)
                beta = self._step_kl_weight = self.kl_weight()
                self._set_model_kl_weight(beta)
            else:
                beta = 1.0
            terms = self._train_loss({k: v[i] for k, v in batch.items()})
            if beta != 1.0:
                terms["loss"] = terms["loss"] + (beta - 1.0) * terms["kl"]
            loss = terms["loss"].item()  # the divergence check, every step (a few microseconds on CPU)
            if not math.isfinite(loss):
                self._diverged("loss", loss, terms)
            optimizer.zero_grad(set_to_none=True)
            if fast:
                terms["loss"].backward()
            else:
                self.manual_backward(terms["loss"])
            # a finite loss can still give an infinite gradient: checked every step, before the weights move
            grad_norm = self._clip_gradients(optimizer) if self.gradient_clip_val else self._gradient_norm(optimizer)
            if grad_norm is not None and not math.isfinite(grad_norm):
                self._diverged("gradient norm", grad_norm, terms)
            if fast:  # what LightningOptimizer.step does, without the strategy/precision/callback hook dispatch
                optimizer._on_before_step()
                optimizer.optimizer.step()
                optimizer._on_after_step()
            else:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            self.last_finite_loss = loss  # the step was taken on finite values
            if self.global_step % log_every == 0:
                self._log_train(terms, optimizer)
        if self.kl_warmup is not None:
            self._set_model_kl_weight(1.0)

    @staticmethod
    def _gradient_norm(optimizer) -> float:
        """The total gradient norm of the optimizer's parameters."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    def _clip_gradients(self, optimizer) -> float | None:
        """Clips as Lightning would; returns the total gradient norm (before clipping) for "norm"."""
        if self.gradient_clip_algorithm == "norm":
            return float(
                torch.nn.utils.clip_grad_norm_(
                    [p for group in optimizer.param_groups for p in group["params"]], self.gradient_clip_val
                )
            )
        self.clip_gradients(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)
        return None

    def _diverged(self, what: str, value: float, terms: dict[str, torch.Tensor]) -> None:
        """Stops the run at once: no optimizer step is taken on non-finite values, so the weights stay those of
        the last good step (and no checkpoint is written from here on, see LastCheckpoint)."""
        step = self.global_step
        details: dict[str, Any] = {
            "diverged_at_step": step,
            "diverged_on": what,
            "diverged_value": str(value),
            "last_finite_step": step - 1 if step > 0 else None,
            "last_finite_loss": self.last_finite_loss,
        }
        # the weights are still those after the last finite step
        details.update({f"last_finite/model/{k}": v for k, v in self.model.scalars().items()})
        if self.last_train_terms:
            details["last_logged_step"] = self._last_logged_step
            details.update({f"last_logged/{k}": v for k, v in self.last_train_terms.items()})
        raise DivergenceError(
            f"the {what} became {value} at optimizer step {step} (epoch {self.current_epoch}); "
            f"the last finite loss was {self.last_finite_loss} at step {step - 1}; lower "
            "optimizer.lr or set trainer.gradient_clip_val",
            details,
        )

    def _log_train(self, terms: dict[str, torch.Tensor], optimizer) -> None:
        values = {f"train/{k}": float(v.detach()) for k, v in terms.items()}
        if not all(map(math.isfinite, values.values())):
            bad = next(k for k, v in values.items() if not math.isfinite(v))
            self._diverged(bad, values[bad], terms)
        values.update({f"model/{k}": float(v) for k, v in self.model.scalars().items()})
        values["train/lr"] = optimizer.param_groups[0]["lr"]
        values["train/kl_weight"] = self._step_kl_weight  # the weight the logged step used
        self.last_train_terms, self._last_logged_step = values, self.global_step
        if values.get("model/gamma_at_floor") and self.gamma_floor_step is None:
            self.gamma_floor_step = self.global_step
            log.warning(
                "vaelab: gamma reached model.gamma_floor at step %d (gamma = %.3g); it is reported as "
                "gamma_at_floor in metrics.json; lower the floor if it should go further",
                self.global_step,
                values.get("model/gamma", math.nan),
            )
        if self.trainer.is_global_zero:
            for logger in self.loggers:
                logger.log_metrics(values, step=self.global_step)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        terms = self.model.loss(batch)
        n = len(batch["x"])
        # every process evaluates the whole split; sync_dist only averages identical values (and is
        # a no-op on one process). logger=False: Lightning would log at its batch count (another step axis)
        # and add an unprefixed "epoch"; the loggers get the means at the optimizer step (on_validation_epoch_end)
        self.log_dict(
            {f"val/{k}": v for k, v in terms.items()},
            on_step=False,
            on_epoch=True,
            batch_size=n,
            sync_dist=True,
            logger=False,
        )
        for k, v in terms.items():
            self._val_sums[k] = self._val_sums.get(k, 0.0) + float(v) * n
        self._val_count += n

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

    def on_validation_epoch_start(self) -> None:
        self._val_sums, self._val_count = {}, 0
        self._fork_rng()

    def on_validation_epoch_end(self) -> None:
        self._join_rng()
        sums, count = self._val_sums, self._val_count
        self._val_sums, self._val_count = {}, 0
        if count and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            values = {f"val/{k}": total / count for k, total in sums.items()}
            for logger in self.loggers:
                logger.log_metrics(values, step=self.global_step)

    def total_steps(self) -> int:
        """Optimizer steps the run will take (see ``schedules.total_steps``)."""
        trainer = self.trainer
        per_epoch = trainer.datamodule.train_dataloader().num_batches()
        return total_steps(trainer.max_steps, trainer.max_epochs, per_epoch)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {"total_steps": self.total_steps()} if takes_total_steps(self.scheduler_factory) else {}
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer, **kwargs)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = self._rng_states()
        checkpoint["vaelab"] = {"gamma_floor_step": self.gamma_floor_step, "last_finite_loss": self.last_finite_loss}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            self._set_rng_states(checkpoint["rng_states"])
        state = checkpoint.get("vaelab", {})
        self.gamma_floor_step = state.get("gamma_floor_step")
        self.last_finite_loss = state.get("last_finite_loss")
