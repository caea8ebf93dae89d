"""Seed-parallel training: S seeds of one setting trained in one process as one batched model (issue #22).

``train_seeds(cfg, seeds)`` trains the seeds and writes each one's run directory as a single run would;
``vaelab.seed_parallel.restarts.fit_restarts`` trains ``restarts=K`` initialisations the same way;
``STACKABLE`` names the models they take (those whose networks are all MLPs).
"""

from vaelab.seed_parallel.runs import train_seeds
from vaelab.seed_parallel.stacking import STACKABLE

__all__ = ["STACKABLE", "train_seeds"]
