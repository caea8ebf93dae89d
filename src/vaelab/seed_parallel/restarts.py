"""``restarts`` = K > 1 trained as one stacked model: ``vaelab.restarts.fit_restarts``'s contract, the K
initialisations (seed + i x RESTART_SEED_STRIDE, each in ``restarts/<i>/``) trained at once by the seed-parallel
loop instead of one after the other. The kept restart is chosen by the same rule (converged first, then the best
validation ELBO; diverged restarts listed and skipped)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vaelab.errors import DivergenceError
from vaelab.outcome import run_fields
from vaelab.restarts import RESTART_SEED_STRIDE, preference, restart_fields, trained_fields
from vaelab.run_record import RunRecord
from vaelab.seed_parallel.members import Member, build_member
from vaelab.seed_parallel.training import SeedParallelLoop

log = logging.getLogger("vaelab")


def fit_restarts(cfg: DictConfig, record: RunRecord) -> tuple[Any, Any, dict[str, Any]]:
    """Trains ``cfg.restarts`` initialisations as one stacked model. Returns what
    ``vaelab.restarts.fit_restarts`` returns: the kept restart as a ``vaelab.build.Run`` (its ``trainer`` the
    member's TrainerView: datamodule, loggers, step and epoch counters), its Diagnostics callback, and the
    metrics.json fields ``restarts``, ``restart_kept``, ``restart_kept_dir``. DivergenceError when all diverge."""
    members: list[Member] = []
    for index in range(int(cfg.restarts)):
        seed = int(cfg.seed) + index * RESTART_SEED_STRIDE
        directory = Path(cfg.paths.output_dir) / "restarts" / str(index)
        members.append(build_member(cfg, seed, directory, data_from=members[0] if members else None))
    record.update(**run_fields(members[0].run))
    loop = SeedParallelLoop(members)
    loop.fit()
    attempts, trained = [], []
    for index, member in enumerate(members):
        attempt: dict[str, Any] = {"restart": index, "seed": member.seed}
        if member.status == "diverged":
            attempts.append({**attempt, "diverged": member.divergence["error"]})
            log.warning("vaelab: restart %d/%d diverged: %s", index + 1, len(members), member.divergence["error"])
            continue
        attempt |= trained_fields(member.diagnostics, member.convergence, member.run.module, member.view.current_epoch)
        attempts.append(attempt)
        trained.append((index, attempt))
    record.update(restarts=attempts)
    if not trained:
        raise DivergenceError(f"all restarts={cfg.restarts} initialisations diverged; see metrics.json restarts")
    kept, _ = max(trained, key=lambda t: preference(t[1]))
    member = members[kept]
    loop.unstack(kept)  # into member.run.model, which member.run.module evaluates
    member.run.module.gamma_floor_step = member.gamma_floor_step
    run = dataclasses.replace(member.run, trainer=member.view)
    return run, member.diagnostics, restart_fields(attempts, kept)
