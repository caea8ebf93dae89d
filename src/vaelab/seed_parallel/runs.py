"""``train_seeds``: S seeds of one config trained in one process, each writing the run directory a single run
with its seed writes (metrics.json with the same fields, TensorBoard scalars, the model's weights).

What differs from S single runs: the members train as one stacked model (vaelab.seed_parallel.training);
no ``best-epoch*.ckpt`` (Lightning's ModelCheckpoint on ``val/loss``); each member's checkpoint is its final
model (``checkpoints/model.ckpt``, a Lightning-style ``state_dict`` of the training module), and the state
to resume from is one file for all members, ``<paths.output_dir>/checkpoints/last.ckpt``
(vaelab.seed_parallel.checkpoint: ``ckpt_path=`` that file, or ``resume=<paths.output_dir>``, continues every
member); ``compile=true`` compiles the stacked loss (one graph for all members, compiled once per process).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from vaelab import run_dir
from vaelab.errors import ConfigError
from vaelab.outcome import final_metrics, final_scalars, run_fields
from vaelab.run_record import RunRecord, recording_failures
from vaelab.seed_parallel import checkpoint
from vaelab.seed_parallel.members import Member, build_member
from vaelab.seed_parallel.training import SeedParallelLoop

CHECKPOINT = Path("checkpoints") / "model.ckpt"
log = logging.getLogger("vaelab")


def check_seeds(seeds: Any) -> list[int]:
    """`seeds` as a list of distinct ints; ConfigError naming ``seeds`` otherwise."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) and not hasattr(seeds, "__iter__"):
        raise ConfigError(f"seeds={seeds!r} must be a list of integer seeds, e.g. seeds=[0,1,2,3,4]")
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("seeds=[] is empty; give the seeds to train, e.g. seeds=[0,1,2,3,4]")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"seeds={seeds} must be integers, e.g. seeds=[0,1,2,3,4]")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"seeds={seeds} repeats {repeated}; each seed trains one member, list it once")
    return seeds


def check_options(cfg: DictConfig) -> None:
    """The run options seed-parallel training does not combine with: one-line ConfigErrors naming the key."""
    devices, strategy = cfg.trainer.get("devices", 1), str(cfg.trainer.get("strategy", "auto"))
    if (
        "ddp" in strategy
        or devices == -1
        or (isinstance(devices, int) and devices > 1)
        or int(cfg.trainer.get("num_nodes") or 1) > 1
    ):
        raise ConfigError(
            f"trainer.devices={devices} trainer.strategy={strategy}: seed-parallel training runs in "
            "one process on one device; use trainer=cpu or trainer=gpu"
        )
    if cfg.trainer.get("accelerator") not in (None, "cpu", "auto"):
        raise ConfigError(
            f"trainer.accelerator={cfg.trainer.accelerator}: seed-parallel training runs on the CPU "
            "for now; use trainer=cpu"
        )
    if int(cfg.get("restarts", 1)) != 1:
        raise ConfigError(f"restarts={cfg.restarts} cannot be combined with seed-parallel training yet; set restarts=1")


def stacking_refusal(cfg: DictConfig) -> str | None:
    """Why `cfg` cannot train seed-parallel, or None when it can: its run options, then its model as a run builds
    it (data, model, inference wrapper) through ``check_stackable``; a model class that cannot stack is refused
    before any data is built. For callers that choose between ``seeds=[...]`` and one process per seed, e.g.
    ``vaelab-reproduce``."""
    from hydra.utils import get_class

    from vaelab.build import instantiate
    from vaelab.seed_parallel.stacking import STACKABLE, STACKABLE_MODELS, check_stackable

    try:
        check_options(cfg)
        if not issubclass(get_class(cfg.model._target_), STACKABLE_MODELS):
            return f"model={cfg.model._target_} cannot be trained seed-parallel; it takes model={STACKABLE}"
        model = instantiate(cfg.model, _partial_=True, _convert_="all")(data=instantiate(cfg.data).spec)
        if cfg.get("inference"):
            model = instantiate(cfg.inference, _partial_=True, _convert_="all")(model)
        check_stackable(model)
    except ConfigError as err:
        return str(err)
    return None


def train_seeds(
    cfg: DictConfig, seeds: Sequence[int], run_dirs: Sequence[str | Path] | None = None, overrides: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Trains `seeds` of `cfg` in one process; returns each member's metrics.json content, in seed order.

    run_dirs: each member's run directory (default ``<cfg.paths.output_dir>/seed_<s>``); overrides: the
    command line's, recorded in every member's metrics.json with ``seed=<s>`` in place of ``seeds``/``seed``.
    A directory that already holds a run is left alone as a single run leaves it (RunExistsError, nothing
    written), or skipped with ``skip_completed`` when it completed. Config errors (a model that cannot be
    stacked, bad seeds) are raised before anything is written."""
    seeds = check_seeds(seeds)
    check_options(cfg)
    dirs = (
        [Path(d) for d in run_dirs]
        if run_dirs is not None
        else [Path(cfg.paths.output_dir) / f"seed_{s}" for s in seeds]
    )
    if len(dirs) != len(seeds):
        raise ConfigError(f"{len(dirs)} run directories for {len(seeds)} seeds")
    ckpt_path = cfg.get("ckpt_path")
    starts = [run_dir.decide(d, ckpt_path, bool(cfg.get("skip_completed"))) for d in dirs]
    if ckpt_path is None and cfg.get("skip_completed"):  # a re-run sweep continues an interrupted stacked job
        ckpt_path = _interrupted_checkpoint(Path(cfg.paths.output_dir) / run_dir.LAST_CKPT, starts)
        if ckpt_path is not None:
            starts = [replace(start, ckpt_path=ckpt_path) for start in starts]
    state = _resumed_state(ckpt_path, seeds)
    resumable = [str(d) for d, start in zip(dirs, starts, strict=True) if start.ckpt_path and not ckpt_path]
    if resumable:
        raise ConfigError(
            f"skip_completed=true would continue the interrupted single runs in {resumable} from "
            "their own checkpoints; continue them one at a time (vaelab-train resume=<run dir>)"
        )
    todo = [i for i, start in enumerate(starts) if not start.skip]
    if state is not None and len(todo) != len(seeds):
        raise ConfigError(f"ckpt_path={ckpt_path} continues every member; drop skip_completed=true")
    results: dict[int, dict[str, Any]] = {
        i: {**starts[i].previous, "skipped": True} for i in range(len(seeds)) if starts[i].skip
    }
    if todo:
        members: list[Member] = []
        for i in todo:
            members.append(build_member(cfg, seeds[i], dirs[i], data_from=members[0] if members else None))
        loop = SeedParallelLoop(members)  # checks that the model stacks before a directory is claimed
        if state is not None:
            checkpoint.load_loop_state(loop, state)
        kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("seed", "seeds")]
        records = [
            run_dir.claim(
                m.directory,
                starts[i],
                name=cfg.name,
                seed=m.seed,
                overrides=[*kept, f"seed={m.seed}"],
                run_dir=str(m.directory),
                seed_parallel=len(members),
            )
            for i, m in zip(todo, members, strict=True)
        ]
        results.update(zip(todo, _train(loop, records, Path(cfg.paths.output_dir) / run_dir.LAST_CKPT), strict=True))
    return [results[i] for i in range(len(seeds))]


def _interrupted_checkpoint(path: Path, starts: Sequence[run_dir.RunStart]) -> str | None:
    """`path` (the job's seed-parallel last.ckpt) when every member stopped before finishing (interrupted, or
    ``running`` when the process was killed) and none is to be skipped: what ``skip_completed=true`` continues;
    None otherwise (the members that did not complete start over)."""
    stopped = all(
        start.previous is not None and start.previous.get("status") in ("interrupted", "running") and not start.skip
        for start in starts
    )
    return str(path) if stopped and path.is_file() else None


def _resumed_state(ckpt_path: str | None, seeds: list[int]) -> dict[str, Any] | None:
    """The seed-parallel state `ckpt_path` holds (None without one); ConfigError naming ``ckpt_path`` when it is
    missing or not a seed-parallel checkpoint of `seeds`."""
    if not ckpt_path:
        return None
    if not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist; give the checkpoint a seed-parallel run saved "
            "(<run dir>/checkpoints/last.ckpt) or resume=<run dir>"
        )
    try:
        return checkpoint.read(ckpt_path, seeds)
    except ValueError as err:
        raise ConfigError(f"ckpt_path={ckpt_path}: {err}; resume it with the seeds it was started with") from None


def _train(loop: SeedParallelLoop, records: list[RunRecord], checkpoint_path: Path) -> list[dict[str, Any]]:
    """Trains the members (saving the loop's state to `checkpoint_path`) and finishes each one's metrics.json;
    an interruption or an error that stops the whole loop is recorded in every member's and raised."""
    for member, record in zip(loop.members, records, strict=True):
        record.update(**run_fields(member.run))
    with recording_failures(*records):
        loop.fit(checkpoint_path)
    return [_finish(loop, s, record) for s, record in enumerate(records)]


def _finish(loop: SeedParallelLoop, s: int, record: RunRecord) -> dict[str, Any]:
    """Member `s`'s outcome into its metrics.json: diverged with its last finite values, or its final test
    metrics (as ``vaelab.train`` computes them, on the member's own model instance) and its checkpoint."""
    member = loop.members[s]
    if member.status == "diverged":
        for logger in member.view.loggers:
            logger.finalize("failed")
        return record.finish("diverged", **member.divergence)
    try:
        loop.unstack(s)  # into member.run.model, which member.run.module evaluates
        view = member.view
        metrics = final_metrics(
            view, member.run.module, member.diagnostics, member.convergence, member.gamma_floor_step
        )
        save_checkpoint(member, loop)
    except Exception as err:
        log.error("vaelab: seed %d failed: %s: %s", member.seed, type(err).__name__, err)
        return record.finish("failed", error=f"{type(err).__name__}: {err}")
    final = final_scalars(metrics)
    bad = [k for k, v in final.items() if not math.isfinite(v)]
    if bad:
        return record.finish(
            "diverged", error=f"non-finite final metrics {bad} after {member.view.global_step} steps", **metrics
        )
    from vaelab.loggers import report_final

    report_final(member.view, member.cfg, final)
    return record.finish("completed", **metrics)


def save_checkpoint(member: Member, loop: SeedParallelLoop) -> Path:
    """``checkpoints/model.ckpt``: the member's final weights as a Lightning checkpoint's ``state_dict`` (keys of
    the training module, ``model.<name>``), with its epoch, step and seed."""
    path = member.directory / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": member.run.module.state_dict(),
            "epoch": member.view.current_epoch,
            "global_step": member.view.global_step,
            "seed": member.seed,
        },
        path,
    )
    return path
