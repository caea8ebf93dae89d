"""The members of a seed-parallel run: each built exactly as a single run with its seed builds itself.

``build_member`` composes the member's config (the run's, with ``seed`` and ``paths.output_dir`` set) and calls
``vaelab.train.build`` on it: same seeding, data, model initialisation, training-module settings, diagnostics,
convergence callback and loggers as ``vaelab-train seed=<s>``. The global random state right after the build,
which a single run's first training step draws its noise from, becomes the member's own generator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

STATUSES = ("training", "finished", "diverged")


@dataclass
class TrainerView:
    """What the Diagnostics and Convergence callbacks and ``report_final`` read of a Lightning Trainer, for one
    member: its data, its loggers, and the member's step and epoch counters."""

    datamodule: Any
    loggers: list
    max_epochs: int
    global_step: int = 0
    current_epoch: int = 0
    should_stop: bool = False
    is_global_zero: bool = True


@dataclass
class Member:
    """One seed of a seed-parallel run: its config, its single-run build (``vaelab.train.Run``), its random
    stream, its trainer view and its state (``status`` one of STATUSES; a diverged member keeps ``divergence``,
    the metrics.json fields a single run records when it diverges)."""

    seed: int
    cfg: DictConfig
    run: Any
    noise: torch.Generator
    view: TrainerView
    status: str = "training"
    divergence: dict[str, Any] = field(default_factory=dict)
    last_finite_loss: float | None = None
    last_logged: dict[str, float] = field(default_factory=dict)
    last_logged_step: int | None = None
    gamma_floor_step: int | None = None

    @property
    def diagnostics(self) -> Any:
        from vaelab.callbacks import Diagnostics

        return next((c for c in self.run.callbacks if isinstance(c, Diagnostics)), None)

    @property
    def convergence(self) -> Any:
        return self.run.convergence

    @property
    def directory(self) -> Path:
        return Path(self.cfg.paths.output_dir)


def member_config(cfg: DictConfig, seed: int, output_dir: str | Path) -> DictConfig:
    """`cfg` with ``seed`` = `seed` and ``paths.output_dir`` = `output_dir` (interpolations such as
    ``data.shuffle_seed: ${seed}`` follow)."""
    member = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(member):
        member.seed = seed
        member.paths.output_dir = str(output_dir)
        member.pop("seeds", None)
    return member


def build_member(cfg: DictConfig, seed: int, output_dir: str | Path) -> Member:
    """The member for `seed`, built by ``vaelab.train.build`` (see the module docstring)."""
    from vaelab.train import build

    member_cfg = member_config(cfg, seed, output_dir)
    run = build(member_cfg)
    noise = torch.Generator()
    noise.set_state(torch.get_rng_state())
    view = TrainerView(run.datamodule, list(run.trainer.loggers), run.trainer.max_epochs)
    return Member(seed, member_cfg, run, noise, view)
