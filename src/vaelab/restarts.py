"""``restarts`` = K > 1: K initialisations of one run trained in full, and the one kept.

Restart i trains in ``restarts/<i>/`` inside the run directory with seed ``seed + i * RESTART_SEED_STRIDE``
(restart 0 is the plain run of the seed). Kept: among the restarts that say converged (all of them when none
does), the one with the best validation ELBO at the end of training; never a ground truth. A restart that
diverges is listed (``diverged``) and skipped; only when all K diverge does the run fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from vaelab.errors import DivergenceError
from vaelab.run_record import RunRecord

log = logging.getLogger("vaelab")
RESTART_SEED_STRIDE = 100_003  # restart i trains with seed + i * this (restart 0 is the plain run)


def restart_config(cfg: DictConfig, index: int) -> DictConfig:
    """Restart `index`'s config: its own seed, and its own folder ``restarts/<index>`` inside the run dir."""
    restart = cfg.copy()
    with open_dict(restart):
        restart.seed = int(cfg.seed) + index * RESTART_SEED_STRIDE
        restart.paths.output_dir = str(Path(cfg.paths.output_dir) / "restarts" / str(index))
    return restart


def fit_restarts(
    cfg: DictConfig, record: RunRecord, fit: Callable[[DictConfig, RunRecord], tuple[Any, Any]]
) -> tuple[Any, Any, dict[str, Any]]:
    """Trains ``cfg.restarts`` initialisations, each with ``fit(restart_cfg, record)`` (which returns the
    ``vaelab.build.Run`` and its Diagnostics callback). Returns the kept run, its diagnostics and the metrics.json
    fields describing all K (``restarts``, ``restart_kept``, ``restart_kept_dir``; ``restarts`` is also written as
    each one ends)."""
    attempts, trained = [], []
    for index in range(int(cfg.restarts)):
        restart_cfg = restart_config(cfg, index)
        attempt: dict[str, Any] = {"restart": index, "seed": int(restart_cfg.seed)}
        try:
            run, diagnostics = fit(restart_cfg, record)
        except DivergenceError as err:
            attempts.append({**attempt, "diverged": str(err)})
            record.update(restarts=attempts)
            log.warning("vaelab: restart %d/%d diverged: %s", index + 1, cfg.restarts, err)
            continue
        attempt |= trained_fields(diagnostics, run.convergence, run.module, run.trainer.current_epoch)
        attempts.append(attempt)
        trained.append((run, diagnostics, attempt))
        record.update(restarts=attempts)
        log.info(
            "vaelab: restart %d/%d: validation ELBO %.4g, active dims %d",
            index + 1,
            cfg.restarts,
            attempt["val_elbo"],
            attempt["val_active_dims"],
        )
    if not trained:
        raise DivergenceError(f"all restarts={cfg.restarts} initialisations diverged; see restarts/<i>/metrics.json")
    run, diagnostics, kept = max(trained, key=lambda t: preference(t[2]))
    return run, diagnostics, restart_fields(attempts, kept["restart"])


def trained_fields(diagnostics: Any, convergence: Any, module: Any, epochs: int) -> dict[str, Any]:
    """A trained restart's entry in ``restarts``: the last validation ELBO and active dims, its epochs, (with
    a Convergence callback) whether it converged and, where the data has true sources, its validation MCC (for
    the reader: the restart kept is chosen without it)."""
    last = diagnostics.history[-1]
    fields = {"val_elbo": -last["neg_elbo"], "val_active_dims": last["active_dims"], "epochs": epochs}
    if last.get("mcc") is not None:
        fields["val_mcc"] = last["mcc"]
    if convergence is not None:
        fields["converged"] = convergence.verdict(diagnostics.history, module)["converged"]
    return fields


def preference(attempt: dict[str, Any]) -> tuple[bool, float]:
    """The order in which restarts are kept: converged ones first, then the best validation ELBO."""
    return bool(attempt.get("converged")), attempt["val_elbo"]


def restart_fields(attempts: list[dict[str, Any]], kept: int) -> dict[str, Any]:
    """The metrics.json fields describing all K restarts and the one kept."""
    return {"restarts": attempts, "restart_kept": kept, "restart_kept_dir": str(Path("restarts") / str(kept))}
