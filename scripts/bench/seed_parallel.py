"""Seed throughput of seed-parallel training: S members as one stacked model against S sequential single runs.

Both train the same config for the same ``--steps`` optimizer steps per seed on one thread
(``torch_threads=1``), with validation, diagnostics and loggers out of the way (only the training steps are
compared): the single runs are vaelab's own ``trainer.fit`` (built by ``vaelab.train.build``), the stacked run is
``vaelab.seed_parallel``'s loop over seeds 0 .. S - 1. Builds are not timed. Each repetition times one single
run and then the stacked run back to back (a shared machine's slow drifts cancel in their ratio); the
sequential time of S seeds is S x the single run (runs of one config take the same time whatever the seed).
The ratio reported (sequential / stacked: the gain in seeds trained per second) is the median over
repetitions of one invocation, in CPU time of this process (on a machine shared with other jobs, wall time also
counts the time the process waits for a core; wall-time ratios are listed too); absolute times depend on the
machine and its load (reported).

    python scripts/bench/seed_parallel.py --members 5 20 --steps 300 -- data.batch_size=128
    python scripts/bench/seed_parallel.py --members 5 20 --steps 200 -- experiment=ivae compile=false
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from common import load_average, machine, peak_rss_mb, write_result
from vaelab.config import compose_config
from vaelab.seed_parallel.members import build_member
from vaelab.seed_parallel.training import SeedParallelLoop
from vaelab.train import build

QUIET = [
    "torch_threads=1",
    "logger=none",
    "callbacks.progress_bar=null",
    "callbacks.convergence=null",  # its one-off local PCA of the data (learnable-gamma models) is no training step
    "trainer.max_epochs=100000",
    "trainer.check_val_every_n_epoch=100000",
    "callbacks.diagnostics.every_n_epochs=100000",
    "callbacks.last_checkpoint.every_n_seconds=null",
]


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of `fn()`."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def single_run_seconds(overrides: list[str], seed: int, workdir: str) -> tuple[float, float]:
    """(CPU, wall) seconds of one single run's ``trainer.fit`` (build not timed)."""
    run = build(compose_config([*overrides, f"seed={seed}"], output_dir=f"{workdir}/single_{seed}"))
    return timed(lambda: run.trainer.fit(run.module, datamodule=run.datamodule))


def stacked_seconds(overrides: list[str], members: int, workdir: str) -> tuple[float, float]:
    """(CPU, wall) seconds of one seed-parallel loop over seeds 0 .. members - 1 (builds not timed)."""
    cfg = compose_config(overrides, output_dir=f"{workdir}/stacked_{members}")
    loop = SeedParallelLoop([build_member(cfg, s, f"{cfg.paths.output_dir}/seed_{s}") for s in range(members)])
    return timed(loop.fit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[5], help="S values to measure")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per seed")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (one single run and one stacked run each)")
    parser.add_argument("--json", help="write the result here too")
    parser.add_argument("overrides", nargs="*", help="config overrides (after --)")
    args = parser.parse_args()
    overrides = [*QUIET, f"trainer.max_steps={args.steps}", *args.overrides]
    with tempfile.TemporaryDirectory() as workdir:
        single_run_seconds(overrides, 100, workdir)  # warm-up: Lightning imports parts of itself on first use
        rows = []
        for members in args.members:
            pairs = [
                (single_run_seconds(overrides, rep, workdir), stacked_seconds(overrides, members, workdir))
                for rep in range(args.reps)
            ]
            ratios = [members * single[0] / stacked[0] for single, stacked in pairs]
            wall_ratios = [members * single[1] / stacked[1] for single, stacked in pairs]
            rows.append(
                {
                    "members": members,
                    "seed_throughput_ratio": round(statistics.median(ratios), 2),
                    "ratios": [round(r, 2) for r in ratios],
                    "wall_ratios": [round(r, 2) for r in wall_ratios],
                    "single_run_cpu_s": [round(single[0], 3) for single, _ in pairs],
                    "stacked_cpu_s": [round(stacked[0], 3) for _, stacked in pairs],
                    "peak_rss_mb": peak_rss_mb(),  # of the process so far: S grows along the rows
                }
            )
    write_result(
        args.json,
        {
            "case": "seed_parallel",
            "overrides": args.overrides,
            "steps": args.steps,
            "rows": rows,
            "load_average": load_average(),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
