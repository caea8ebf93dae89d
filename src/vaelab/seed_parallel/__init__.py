"""Seed-parallel training: S seeds of one setting trained in one process as one batched model (issue #22).

``train_seeds(cfg, seeds)`` trains the seeds and writes each one's run directory as a single run would;
``STACKABLE`` names the models it takes (those whose networks are all MLPs).
"""

from vaelab.seed_parallel.runs import train_seeds
from vaelab.seed_parallel.stacking import STACKABLE

__all__ = ["STACKABLE", "train_seeds"]
