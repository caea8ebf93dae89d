"""The seed-parallel training loop: S members' optimizer steps as one step of the stacked model.

Per step, as ``VAETrainingModule.training_step`` does for one run: the KL weight of the step, each member's
loss on its own minibatch with its own noise (``loss.member_terms``), the divergence check, backward of the sum
of the training members' losses (members do not share parameters, so each gets its own gradient), gradient
clipping per member (a member's total norm over its own parameters), one optimizer step on the stacked
parameters, held as one (S, P) tensor (``stacking.flatten_parameters``; the optimizers allowed are elementwise,
so this is S independent optimizers; fused where the optimizer has a fused kernel) and the scheduler step
(schedules depend on the step count only, the same for every member). At epoch ends, per member: the
validation diagnostics and the convergence decision of a single run (``Diagnostics`` and ``Convergence``).

A member stops alone: one whose loss or gradient norm is not finite is ``diverged`` with its last finite
values, one whose single run would end (its training length reached and, with ``Convergence`` extending
runs, converged or out of budget) is ``finished``. A stopped member's parameters are frozen (restored after
every optimizer step) and its loss leaves the summed backward; the loop ends when no member is training.
Members that train on all do so in step: extensions happen at the same epochs for every member, so the ones
that continue share a fresh schedule.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelab.callbacks import LastCheckpoint
from vaelab.convergence import extension_record
from vaelab.errors import ConfigError, RunInterrupted
from vaelab.schedules import takes_total_steps, total_steps
from vaelab.seed_parallel.checkpoint import Interruptions, save
from vaelab.seed_parallel.loss import member_terms
from vaelab.seed_parallel.members import Member
from vaelab.seed_parallel.stacking import StackedModel, flatten_parameters
from vaelab.training_module import log_interval

# optimizers whose update of an element depends only on that element's gradient and state (so one optimizer
# over stacked tensors is S optimizers)
ELEMENTWISE_OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam")


def fused(factory: Callable[..., torch.optim.Optimizer], flat: nn.Parameter) -> torch.optim.Optimizer:
    """The optimizer over the flat stacked parameter, with its fused kernel where it has one (Adam, AdamW, SGD,
    Adagrad): one pass over the (S, P) tensor instead of one per operation of the update (``foreach`` on a single
    tensor is no cheaper than the plain update); the same update up to float rounding."""
    optimizer = factory([flat])
    if "fused" in inspect.signature(type(optimizer).__init__).parameters and not optimizer.defaults.get("fused"):
        optimizer = factory([flat], foreach=False, fused=True)
    return optimizer


class SeedParallelLoop:
    """Trains `members` (built by ``members.build_member`` from one config) as one stacked model."""

    def __init__(self, members: list[Member]):
        self.members = members
        first = members[0].run
        self.stacked = StackedModel([m.run.model for m in members])
        self.flat = flatten_parameters(list(self.stacked.parameters()))  # (S, P): member s's parameters in row s
        module = first.module
        self.optimizer = fused(module.optimizer_factory, self.flat)
        if type(self.optimizer).__name__ not in ELEMENTWISE_OPTIMIZERS:
            raise ConfigError(
                f"optimizer={type(self.optimizer).__name__} is not elementwise; seed-parallel training "
                f"takes one of {list(ELEMENTWISE_OPTIMIZERS)}"
            )
        # compile=true: the stacked loss compiled as a single run compiles its own (the noise comes from outside,
        # so the graph draws no random numbers)
        self.member_terms = torch.compile(member_terms) if module.compile_loss else member_terms
        self.scheduler_factory, self.kl_warmup = module.scheduler_factory, module.kl_warmup
        self.clip_val, self.clip_algorithm = module.gradient_clip_val, module.gradient_clip_algorithm
        self.loaders = [m.run.datamodule.train_dataloader() for m in members]
        self.steps_per_epoch = self.loaders[0].num_batches()
        trainer_cfg = members[0].cfg.trainer
        # Lightning's limits: None or a value <= 0 is no limit of that kind
        self.max_epochs = trainer_cfg.get("max_epochs") if (trainer_cfg.get("max_epochs") or -1) > 0 else None
        self.max_steps = trainer_cfg.get("max_steps") if (trainer_cfg.get("max_steps") or -1) > 0 else None
        self.log_every = log_interval(int(trainer_cfg.get("log_every_n_steps") or 50), self.steps_per_epoch)
        self.check_val_every = int(trainer_cfg.get("check_val_every_n_epoch") or 1)
        self.scheduler = self._scheduler(total_steps(self.max_steps, self.max_epochs, self.steps_per_epoch))
        self.global_step, self.epoch = 0, 0
        self.frozen = torch.zeros(len(members), dtype=torch.bool)
        self.frozen_values = self.flat.detach().clone()  # (S, P): a stopped member's row, restored after each step
        self._saved_at = time.monotonic()

    def _scheduler(self, steps: int) -> Any:
        if self.scheduler_factory is None:
            return None
        scheduler = self.scheduler_factory(
            self.optimizer, **({"total_steps": steps} if takes_total_steps(self.scheduler_factory) else {})
        )
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ConfigError(
                "scheduler: a schedule driven by each run's own loss (ReduceLROnPlateau) cannot be "
                "shared by the members of a seed-parallel run; pick a step-based one"
            )
        return scheduler

    def fit(self, checkpoint: Path | None = None) -> None:
        """Trains until every member has finished or diverged. With `checkpoint` (a file path), the loop's state is
        saved there at epoch ends as the members' ``callbacks.last_checkpoint`` says (every N epochs, every T
        seconds, and on SIGINT/SIGTERM, after which RunInterrupted stops the run); a loop whose state was loaded
        (``checkpoint.load_loop_state``) continues from it."""
        self._prepare_convergence()
        saving = next((c for c in self.members[0].run.callbacks if isinstance(c, LastCheckpoint)), None)
        if checkpoint is None or saving is None:
            self._train_epochs(None)
            return
        with Interruptions(checkpoint) if saving.on_signal else nullcontext() as interruptions:
            self._train_epochs(lambda: self._save(checkpoint, saving, interruptions))

    def _train_epochs(self, after_epoch: Callable[[], None] | None) -> None:
        while self.training_members():
            for loader in self.loaders:
                loader.sampler.set_epoch(self.epoch)
            stopped = self._epoch()
            self._end_epoch(stopped)
            self.epoch += 1
            if after_epoch is not None:
                after_epoch()

    def _save(self, path: Path, saving: LastCheckpoint, interruptions: Interruptions | None) -> None:
        """At an epoch end: saves when due (as LastCheckpoint would), and stops after a signal."""
        received = interruptions.received if interruptions is not None else None
        now = time.monotonic()
        due = (
            self.epoch % saving.every_n_epochs == 0
            or received is not None
            or (saving.every_n_seconds is not None and now - self._saved_at >= saving.every_n_seconds)
        )
        if due and self.training_members() or received is not None:
            save(self, path)
            self._saved_at = now
        if received is not None:
            raise RunInterrupted(received[0], received[1], str(path), self.epoch - 1, self.global_step)

    def _prepare_convergence(self) -> None:
        """What Lightning's fit start does for each member's Convergence callback (its budget check, the data's
        local dimension)."""
        checked = None  # the data's local dimension: a property of the data, which every member shares
        for member in (m for m in self.members if m.convergence is not None):
            member.convergence.setup(member.view, member.run.module, "fit")  # as Lightning calls it
            if checked is None:
                member.convergence.on_fit_start(member.view, member.run.module)
                checked = member.convergence
            member.convergence.data_dimension = checked.data_dimension
            member.convergence.group_data_dimensions = checked.group_data_dimensions

    def training_members(self) -> list[int]:
        return [s for s, m in enumerate(self.members) if m.status == "training"]

    def _epoch(self) -> bool:
        """One epoch (every member's own batch order); True when max_steps stopped it."""
        for fetches in zip(*self.loaders, strict=True):
            batches = self._fold_fetches(fetches)
            for j in range(len(batches["x"])):
                if self.max_steps is not None and self.global_step >= self.max_steps:
                    return True
                self._step({k: v[j].reshape(-1, *v.shape[3:]) for k, v in batches.items()})
                if not self.training_members():
                    return True
        return self.max_steps is not None and self.global_step >= self.max_steps

    def _fold_fetches(self, fetches: tuple[dict[str, torch.Tensor], ...]) -> dict[str, torch.Tensor]:
        """Each member's fetch (k minibatches, (k, B, ...)) transformed as its single run transforms it, stacked
        as (k, S, B, ...)."""
        out = [member_fetch(m, fetch) for m, fetch in zip(self.members, fetches, strict=True)]
        return {k: torch.stack([f[k] for f in out], 1) for k in out[0]}

    def _step(self, batch: dict[str, torch.Tensor]) -> None:
        """One optimizer step of every member (see the module docstring); `batch` member-folded, (S * B, ...),
        member s's minibatch in rows [s * B, (s + 1) * B); each member's noise, (B, latent_dim), from its own
        generator."""
        members = len(self.members)
        beta = 1.0 if self.kl_warmup is None else self.kl_warmup.weight(self.global_step, self.steps_per_epoch)
        batch_size = len(batch["x"]) // members
        noise = torch.cat(
            [torch.randn(batch_size, self.stacked.template.latent_dim, generator=m.noise) for m in self.members]
        )
        terms = self.member_terms(self.stacked, batch, noise)
        if beta != 1.0:
            terms["loss"] = terms["loss"] + (beta - 1.0) * terms["kl"]
        losses = terms["loss"].detach().tolist()
        for s, loss in enumerate(losses):
            if not self.frozen[s] and not math.isfinite(loss):
                self._diverge(s, "loss", loss)
        self.flat.grad.zero_()  # the stacked parameters' gradients are views of it: never set to None
        torch.where(self.frozen, torch.zeros_like(terms["loss"]), terms["loss"]).sum().backward()
        self._mask_frozen_grads()
        # a finite loss can still give an infinite gradient: checked every step, before any weight moves
        norms = self._clip_gradients() if self.clip_val else self._gradient_norms().tolist()
        for s, norm in enumerate(norms):
            if norm is not None and not self.frozen[s] and not math.isfinite(norm):
                self._diverge(s, "gradient norm", norm)
        self._mask_frozen_grads()
        self.optimizer.step()
        self._restore_frozen()
        if self.scheduler is not None:
            self.scheduler.step()
        self.global_step += 1
        for s, member in enumerate(self.members):
            if not self.frozen[s]:
                member.last_finite_loss = losses[s]
                member.view.global_step = self.global_step
        if self.global_step % self.log_every == 0:
            self._log_train(terms, beta)

    def _clip_gradients(self) -> list[float | None]:
        """Clips each member's gradients as ``clip_grad_norm_`` / ``clip_grad_value_`` clip one run's; returns
        the members' total norms before clipping (None for "value")."""
        if self.clip_algorithm == "value":
            self.flat.grad.clamp_(-self.clip_val, self.clip_val)
            return [None] * len(self.members)
        norms = self._gradient_norms()
        self.flat.grad.mul_((self.clip_val / (norms + 1e-6)).clamp(max=1.0).unsqueeze(1))
        return norms.tolist()

    def _gradient_norms(self) -> torch.Tensor:
        """Each member's total gradient norm, (S,)."""
        return self.flat.grad.norm(dim=1)

    def _mask_frozen_grads(self) -> None:
        if self.frozen.any():
            self.flat.grad[self.frozen] = 0.0

    def _restore_frozen(self) -> None:
        if self.frozen.any():
            with torch.no_grad():
                self.flat[self.frozen] = self.frozen_values[self.frozen]

    def _freeze(self, s: int) -> None:
        self.frozen[s] = True
        with torch.no_grad():
            self.frozen_values[s] = self.flat[s]

    def _diverge(self, s: int, what: str, value: float) -> None:
        """Member `s` diverged at this step: no step is taken for it (its weights stay those of its last finite
        step); records what a single run records in metrics.json."""
        member, step = self.members[s], self.global_step
        self._freeze(s)
        member.status = "diverged"
        scalars = self.unstack(s).scalars()
        member.divergence = {
            "error": f"the {what} became {value} at optimizer step {step} (epoch {self.epoch}); the last finite loss "
            f"was {member.last_finite_loss} at step {step - 1}; lower optimizer.lr or set "
            "trainer.gradient_clip_val",
            "diverged_at_step": step,
            "diverged_on": what,
            "diverged_value": str(value),
            "last_finite_step": step - 1 if step > 0 else None,
            "last_finite_loss": member.last_finite_loss,
            **{f"last_finite/model/{k}": v for k, v in scalars.items()},
        }
        if member.last_logged:
            member.divergence["last_logged_step"] = member.last_logged_step
            member.divergence.update({f"last_logged/{k}": v for k, v in member.last_logged.items()})
        member.view.current_epoch = self.epoch

    def unstack(self, s: int) -> Any:
        """Member `s`'s current weights in its own model instance (``member.run.model``)."""
        return self.stacked.unstack(s, self.members[s].run.model)

    def _log_train(self, terms: dict[str, torch.Tensor], beta: float) -> None:
        """Every ``log_every_n_steps``: each training member's terms, model scalars, lr and KL weight to its
        loggers (the keys of a single run)."""
        per_member = {k: v.detach().tolist() for k, v in terms.items()}
        lr = self.optimizer.param_groups[0]["lr"]
        for s in self.training_members():
            member = self.members[s]
            values = {f"train/{k}": v[s] for k, v in per_member.items()}
            values.update({f"model/{k}": float(v) for k, v in self.unstack(s).scalars().items()})
            values.update({"train/lr": lr, "train/kl_weight": beta})
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if bad:
                self._diverge(s, bad[0], values[bad[0]])
                continue
            member.last_logged, member.last_logged_step = values, self.global_step
            if values.get("model/gamma_at_floor") and member.gamma_floor_step is None:
                member.gamma_floor_step = self.global_step
            for logger in member.view.loggers:
                logger.log_metrics(values, step=self.global_step)

    def _end_epoch(self, stopped: bool) -> None:
        """Every training member's epoch end, as a single run's callbacks see it: the validation loss (every
        ``check_val_every_n_epoch`` epochs), the Diagnostics callback's own epoch end, then the convergence
        decision once the training length is reached (extend, or finish)."""
        done_epochs = self.epoch + 1
        last = self.max_epochs is not None and done_epochs >= self.max_epochs
        extend: list[int] = []
        for s in self.training_members():
            member, view = self.members[s], self.members[s].view
            view.current_epoch, view.should_stop, view.max_steps = self.epoch, stopped, self.max_steps or -1
            self.unstack(s)  # into member.run.model, which member.run.module evaluates
            if done_epochs % self.check_val_every == 0:
                member.log_validation_loss()
            member.diagnostics.on_train_epoch_end(view, member.run.module)
            view.current_epoch = done_epochs  # Lightning's count once the epoch is over
            if stopped or last:
                if not stopped and self._extends(member):
                    extend.append(s)
                else:
                    member.status = "finished"
                    self._freeze(s)
        if extend:
            self._extend([self.members[s] for s in extend])

    def _extends(self, member: Member) -> bool:
        """Whether a single run's ``Convergence.on_train_epoch_end`` would lengthen this member's training."""
        convergence = member.convergence
        if convergence is None or not convergence.extends(member.run.module):
            return False
        verdict = convergence.verdict(member.diagnostics.history, member.run.module)
        if verdict["converged"] and len(convergence.extensions) >= convergence.min_extensions:
            return False
        extension, maximum = convergence.budget(convergence.base_epochs)
        if self.max_epochs + extension > maximum:
            return False
        convergence.extensions.append(
            extension_record(
                self.max_epochs, self.global_step, extension, member.diagnostics.history[-1]["active_dims"], verdict
            )
        )
        # the member's log gamma: its entry of the stacked scalars (a view of its row of the flat parameters)
        log_gamma = self.stacked.scalars["log_gamma"][self.members.index(member)]
        convergence.move_gamma(log_gamma, convergence.gamma_shift(verdict, log_gamma.item()))
        return True

    def _extend(self, members: list[Member]) -> None:
        """One more cycle for the members that extend (the same length for all: one config)."""
        epochs = members[0].convergence.extensions[-1]["epochs"]
        self.max_epochs += epochs
        for member in members:
            member.view.max_epochs = self.max_epochs
        if self.max_steps is not None:
            self.max_steps += epochs * self.steps_per_epoch
        if self.scheduler_factory is not None and takes_total_steps(self.scheduler_factory):
            self.scheduler = self._scheduler(total_steps(None, epochs, self.steps_per_epoch))


def member_fetch(member: Member, fetch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A member's training fetch as its single run's datamodule hands it to the training step: stored values
    converted (``on_after_batch_transfer``); MNIST's ``binarize=dynamic`` draws its fresh binary images from
    the member's own random stream, as the single run draws them from its seeded global one."""
    datamodule = member.run.datamodule
    fetch = datamodule.on_after_batch_transfer(fetch, 0)
    if getattr(datamodule, "binarize", None) == "dynamic":
        fetch = {**fetch, "x": torch.bernoulli(fetch["x"], generator=member.noise)}
    return fetch
