"""Seed throughput of seed-parallel training: S members as one stacked model against S sequential single runs.

Both train the same config for the same ``--steps`` optimizer steps per seed on one thread
(``torch_threads=1``), with validation, diagnostics and loggers out of the way (only the training steps are
compared): the single runs are vaelab's own ``trainer.fit`` (built by ``vaelab.train.build``, one seed after
the other), the stacked run is ``vaelab.seed_parallel``'s loop over the same seeds. Builds are not timed.
Sequential time for S seeds is S x the median single run over ``--single-runs`` seeds (runs of one config take
the same time whatever the seed). Ratios (sequential / stacked: the gain in seeds trained per second) come from
one invocation; absolute times depend on the machine and its load (reported).

    python scripts/bench/seed_parallel.py --members 5 --steps 300 -- data.batch_size=128
    python scripts/bench/seed_parallel.py --members 5 20 --steps 200 -- experiment=ivae compile=false
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import load_average, machine, write_result
from vaelab.config import compose_config
from vaelab.seed_parallel.members import build_member
from vaelab.seed_parallel.training import SeedParallelLoop
from vaelab.train import build

QUIET = ["torch_threads=1", "logger=none", "callbacks.progress_bar=null", "callbacks.convergence.extend=false",
         "trainer.max_epochs=100000", "trainer.check_val_every_n_epoch=100000",
         "callbacks.diagnostics.every_n_epochs=100000", "callbacks.last_checkpoint.every_n_seconds=null"]


def single_run_seconds(overrides: list[str], seed: int, workdir: str) -> float:
    """Wall time of one single run's ``trainer.fit`` (build not timed)."""
    run = build(compose_config([*overrides, f"seed={seed}"], output_dir=f"{workdir}/single_{seed}"))
    start = time.perf_counter()
    run.trainer.fit(run.module, datamodule=run.datamodule)
    return time.perf_counter() - start


def stacked_seconds(overrides: list[str], members: int, workdir: str) -> float:
    """Wall time of one seed-parallel loop over seeds 0 .. members - 1 (builds not timed)."""
    cfg = compose_config(overrides, output_dir=f"{workdir}/stacked_{members}")
    loop = SeedParallelLoop([build_member(cfg, s, f"{cfg.paths.output_dir}/seed_{s}") for s in range(members)])
    start = time.perf_counter()
    loop.fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[5], help="S values to measure")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per seed")
    parser.add_argument("--single-runs", type=int, default=3, help="single runs timed for the sequential baseline")
    parser.add_argument("--json", help="write the result here too")
    parser.add_argument("overrides", nargs="*", help="config overrides (after --)")
    args = parser.parse_args()
    overrides = [*QUIET, f"trainer.max_steps={args.steps}", *args.overrides]
    with tempfile.TemporaryDirectory() as workdir:
        single_run_seconds(overrides, 100, workdir)  # warm-up: Lightning imports parts of itself on first use
        singles = [single_run_seconds(overrides, s, workdir) for s in range(args.single_runs)]
        per_seed = statistics.median(singles)
        rows = []
        for members in args.members:
            stacked = stacked_seconds(overrides, members, workdir)
            rows.append({"members": members, "stacked_s": round(stacked, 3),
                         "sequential_s": round(members * per_seed, 3),
                         "seed_throughput_ratio": round(members * per_seed / stacked, 2)})
    write_result(args.json, {"case": "seed_parallel", "overrides": args.overrides, "steps": args.steps,
                             "single_run_s": [round(s, 3) for s in singles], "rows": rows,
                             "load_average": load_average(), "machine": machine()})


if __name__ == "__main__":
    main()
