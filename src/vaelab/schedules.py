"""Schedules over a run's optimizer steps: the run's length in steps (``total_steps``, the one place it is
computed), the learning-rate schedules that need it, and the KL warm-up.

Free of torch imports at load time: the config checks use it before Lightning and torch are imported.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from vaelab.errors import ConfigError

if TYPE_CHECKING:
    import torch


def total_steps(max_steps: int | None, max_epochs: int | None, steps_per_epoch: int) -> int:
    """Optimizer steps a run takes: the smaller of `max_steps` and `max_epochs` x `steps_per_epoch` (minibatches
    per epoch); None or a value <= 0 sets no limit of that kind. Raises ConfigError when neither limits the run."""
    limits = [max_steps] if max_steps is not None and max_steps > 0 else []
    if max_epochs is not None and max_epochs > 0:
        limits.append(max_epochs * steps_per_epoch)
    if not limits:
        raise ConfigError("trainer.max_epochs and trainer.max_steps are both unlimited; set one of them")
    return min(limits)


def takes_total_steps(factory: Callable[..., Any]) -> bool:
    """Whether a scheduler factory (a partial taking the optimizer) needs the run's length passed as
    ``total_steps`` (OneCycleLR, ``halving``): it has the parameter and the config does not set it."""
    return "total_steps" in inspect.signature(factory).parameters and "total_steps" not in getattr(
        factory, "keywords", {}
    )


def step_decay(
    optimizer: torch.optim.Optimizer, total_steps: int, at_fractions: Sequence[float] = (0.5,), factor: float = 0.1
) -> torch.optim.lr_scheduler.MultiStepLR:
    """The learning rate multiplied by `factor` at each of `at_fractions` of the run's optimizer steps (constant
    in between): a fixed version of a drop on a plateau (the reference iVAE's ReduceLROnPlateau, factor 0.1)."""
    import torch

    if not all(0 < f < 1 for f in at_fractions):
        raise ConfigError(f"scheduler.at_fractions={list(at_fractions)} must lie in (0, 1)")
    if not 0 < factor < 1:
        raise ConfigError(f"scheduler.factor={factor} must lie in (0, 1), e.g. 0.1")
    milestones = sorted({max(1, round(f * total_steps)) for f in at_fractions})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=factor)


def halving(
    optimizer: torch.optim.Optimizer, total_steps: int, at_fractions: Sequence[float] = (0.5, 0.67, 0.83)
) -> torch.optim.lr_scheduler.MultiStepLR:
    """The learning rate halved at each of `at_fractions` of the run's optimizer steps (constant before), a fixed
    version of the text VAEs' "halve the lr in the last epochs" (Kim et al. 2018 halve it on validation
    plateaus)."""
    return step_decay(optimizer, total_steps, at_fractions, 0.5)


class KLWarmup:
    """KL warm-up (annealing): the KL weight beta grows linearly from ``beta0`` to 1 over ``epochs`` epochs or
    ``steps`` optimizer steps (give exactly one), then stays at 1. Training minimises
    ``recon_nll + beta * kl``; beta is derived from the optimizer step, so a resumed run continues the schedule.
    Config: ``kl_warmup=linear`` (conf/kl_warmup/linear.yaml), e.g. ``kl_warmup.epochs=10 kl_warmup.beta0=0.1``.
    """

    def __init__(self, beta0: float = 0.1, epochs: float | None = None, steps: int | None = None):
        if not 0 <= beta0 <= 1:
            raise ConfigError(f"kl_warmup.beta0={beta0} must be in [0, 1]")
        if (epochs is None) == (steps is None):
            raise ConfigError(f"kl_warmup.epochs={epochs} and kl_warmup.steps={steps}: set exactly one of them")
        if (epochs if epochs is not None else steps) <= 0:
            raise ConfigError(f"kl_warmup.epochs={epochs} / kl_warmup.steps={steps} must be > 0")
        self.beta0, self.epochs, self.steps = float(beta0), epochs, steps

    def length(self, steps_per_epoch: int) -> float:
        """Optimizer steps until beta reaches 1."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    def weight(self, step: int, steps_per_epoch: int) -> float:
        """beta at optimizer step `step` (0-based) with `steps_per_epoch` optimizer steps per epoch."""
        return min(1.0, self.beta0 + (1.0 - self.beta0) * step / self.length(steps_per_epoch))

    def check_fits(self, run_steps: int, steps_per_epoch: int) -> None:
        """ConfigError when beta would not reach 1 within the run's `run_steps` optimizer steps: the run would
        end minimising another objective than the ELBO it reports."""
        if self.length(steps_per_epoch) > run_steps:
            key = f"kl_warmup.steps={self.steps}" if self.steps is not None else f"kl_warmup.epochs={self.epochs}"
            raise ConfigError(
                f"{key} is longer than the run ({run_steps} optimizer steps, {steps_per_epoch} per epoch): the KL "
                f"weight would never reach 1; shorten the warm-up or train longer (trainer.max_epochs)"
            )
