"""Learning-rate schedules that need the run's length (the training module passes ``total_steps``)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from vaelab.errors import ConfigError


def halving(optimizer: torch.optim.Optimizer, total_steps: int,
            at_fractions: Sequence[float] = (0.5, 0.67, 0.83)) -> torch.optim.lr_scheduler.MultiStepLR:
    """The learning rate halved at each of `at_fractions` of the run's optimizer steps (constant before), a fixed
    version of the text VAEs' "halve the lr in the last epochs" (Kim et al. 2018 halve it on validation
    plateaus)."""
    if not all(0 < f < 1 for f in at_fractions):
        raise ConfigError(f"scheduler.at_fractions={list(at_fractions)} must lie in (0, 1)")
    milestones = sorted({max(1, round(f * total_steps)) for f in at_fractions})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.5)
