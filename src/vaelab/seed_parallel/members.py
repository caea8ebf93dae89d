"""The members of a seed-parallel run: each built exactly as a single run with its seed builds itself.

``build_member`` composes the member's config (the run's, with ``seed`` and ``paths.output_dir`` set) and calls
``vaelab.build.build`` on it: same seeding, data, model initialisation, training-module settings, diagnostics,
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
    max_steps: int = -1
    global_step: int = 0
    current_epoch: int = 0
    should_stop: bool = False
    is_global_zero: bool = True


@dataclass
class Member:
    """One seed of a seed-parallel run: its config, its single-run build (``vaelab.build.Run``), its random
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

    @torch.no_grad()
    def log_validation_loss(self) -> dict[str, float]:
        """What a single run's Lightning validation loop logs: ``val/<term>``, the model's loss terms over the
        whole validation split (chunks of ``data.eval_batch_size``, averaged per sample), in eval mode as Lightning
        evaluates, the global random state forked and seeded with the run's seed. Evaluates ``run.model``, which
        must hold the member's weights."""
        model, datamodule = self.run.model, self.run.datamodule
        split, size = datamodule.split("val"), datamodule.eval_batch_size
        sums: dict[str, float] = {}
        was_training = model.training
        model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.run.module.eval_seed)
            for start in range(0, len(split["x"]), size):
                batch = {k: v[start : start + size] for k, v in split.items()}
                for key, value in model.loss(batch).items():
                    sums[key] = sums.get(key, 0.0) + float(value) * len(batch["x"])
        model.train(was_training)
        values = {f"val/{k}": v / len(split["x"]) for k, v in sums.items()}
        for logger in self.view.loggers:
            logger.log_metrics(values, step=self.view.global_step)
        return values


def member_config(cfg: DictConfig, seed: int, output_dir: str | Path) -> DictConfig:
    """`cfg` with ``seed`` = `seed` and ``paths.output_dir`` = `output_dir` (interpolations such as
    ``data.shuffle_seed: ${seed}`` follow)."""
    member = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(member):
        member.seed = seed
        member.paths.output_dir = str(output_dir)
        member.pop("seeds", None)
    return member


def build_member(cfg: DictConfig, seed: int, output_dir: str | Path, data_from: Member | None = None) -> Member:
    """The member for `seed`, built by ``vaelab.build.build`` (see the module docstring). With `data_from`
    (another member), the member's data splits become that member's tensors when they are equal (the data
    depends on ``data.data_seed``, not on ``seed``): one copy of the data in memory, whatever S."""
    from vaelab.build import build

    member_cfg = member_config(cfg, seed, output_dir)
    run = build(member_cfg)
    noise = torch.Generator()
    noise.set_state(torch.get_rng_state())
    if data_from is not None and same_splits(run.datamodule.splits, data_from.run.datamodule.splits):
        run.datamodule.splits = data_from.run.datamodule.splits
    view = TrainerView(run.datamodule, list(run.trainer.loggers), run.trainer.max_epochs)
    return Member(seed, member_cfg, run, noise, view)


def same_splits(a: dict[str, dict[str, torch.Tensor]] | None, b: dict[str, dict[str, torch.Tensor]] | None) -> bool:
    """Whether two datamodules' splits ({split: {name: tensor}}) hold equal tensors."""
    if a is None or b is None or a.keys() != b.keys():
        return False
    return all(a[k].keys() == b[k].keys() and all(torch.equal(a[k][n], b[k][n]) for n in a[k]) for k in a)
