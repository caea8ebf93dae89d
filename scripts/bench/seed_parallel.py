"""Seed throughput of seed-parallel training: S members as one stacked model against S sequential single runs.

Both train the same config for the same ``--steps`` optimizer steps per seed on one thread (``torch_threads=1``),
with validation, diagnostics (also the evaluation at the last epoch) and loggers out of the way (only the training
steps are compared): the single runs are vaelab's own ``trainer.fit`` (built by ``vaelab.build.build``), the
stacked run is ``vaelab.seed_parallel``'s loop over seeds 0 .. S - 1. Builds are not timed. Each repetition times
one single run and then the stacked run back to back (a shared machine's slow drifts cancel in their ratio); the
sequential time of S seeds is S x the single run (runs of one config take the same time whatever the seed). The
ratio reported (sequential / stacked: the gain in seeds trained per second) is the median over repetitions of one
invocation, in CPU time of this process (on a machine shared with other jobs, wall time also counts the time the
process waits for a core; wall-time ratios are listed too); absolute times depend on the machine and its load
(reported).

With ``compile=true`` both train compiled (``torch.compile`` of the single run's loss and of the stacked loss).
The untimed warm-up runs then pay the one-off compiles, once per process and S; they are reported
(``first_single_run_s`` and each row's ``first_stacked_run_s``: their seconds, compile included) and left out of
the ratio. Memory: one fresh process per S (and S = 1) builds the stacked members and trains
them ``--memory-steps`` steps (``--memory-members``: more S values, for memory alone); its peak RSS, less that
of S = 1, is what the S - 1 further members cost (it should grow no more than linearly in S). The peak RSS of
the timing process is listed too (it only grows). With ``--short-steps K`` every repetition also times both
at K steps; S x (single(N) - single(K)) / (stacked(N) - stacked(K)) is the ratio of the further steps alone,
what a long run approaches once each fit's fixed cost (setup, first-step compile, teardown) is spread thin.

    python scripts/bench/seed_parallel.py --members 5 20 --steps 300 -- data.batch_size=128
    python scripts/bench/seed_parallel.py --members 5 20 --steps 200 -- experiment=ivae compile=false
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import load_average, machine, peak_rss_mb, write_result
from vaelab.build import build
from vaelab.config import compose_config
from vaelab.seed_parallel.members import build_member
from vaelab.seed_parallel.training import SeedParallelLoop

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


def no_epoch_end_diagnostics() -> None:
    """The Diagnostics callback's epoch end does nothing in this process: it evaluates the validation split at
    the last epoch whatever ``every_n_epochs`` says, once per seed on both sides (a single run, each stacked
    member), and for the iVAE that pass (2-5 s) outweighs 200 training steps; the benchmark compares training."""
    from vaelab.callbacks import Diagnostics

    Diagnostics.on_train_epoch_end = lambda self, trainer, module: None


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of `fn()`."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def single_run_seconds(overrides: list[str], seed: int, workdir: str) -> tuple[float, float]:
    """(CPU, wall) seconds of one single run's ``trainer.fit`` (build not timed)."""
    run = build(compose_config([*overrides, f"seed={seed}"], output_dir=f"{workdir}/single_{seed}"))
    return timed(lambda: run.trainer.fit(run.module, datamodule=run.datamodule))


def rss_mb() -> float:
    """This process's resident set size now, MB (10^6 bytes); 0 where /proc is missing."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    import resource

    return round(pages * resource.getpagesize() / 1e6, 1)


def memory_probe(overrides: list[str], members: int) -> dict:
    """In this (fresh) process: the resident set before building `members` stacked members and the peak after
    training them (their optimizer states and activations included), MB."""
    with tempfile.TemporaryDirectory() as workdir:
        cfg = compose_config(overrides, output_dir=f"{workdir}/stacked")
        before = rss_mb()
        built: list = []
        for s in range(members):
            shared = built[0] if built else None  # one copy of the data, as train_seeds builds them
            built.append(build_member(cfg, s, f"{cfg.paths.output_dir}/seed_{s}", data_from=shared))
        SeedParallelLoop(built).fit()
    return {"members": members, "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}


def probe_in_subprocess(overrides: list[str], members: int, steps: int) -> dict:
    """memory_probe of `members` in a fresh process (a process's peak RSS only grows)."""
    cmd = [sys.executable, __file__, "--memory-probe", str(members), "--steps", str(steps), "--", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stacked_seconds(overrides: list[str], members: int, workdir: str) -> tuple[float, float]:
    """(CPU, wall) seconds of one seed-parallel loop over seeds 0 .. members - 1 (builds not timed; the
    members share one copy of the data, as ``vaelab-train seeds=[...]`` builds them)."""
    cfg = compose_config(overrides, output_dir=f"{workdir}/stacked_{members}")
    built: list = []
    for s in range(members):
        shared = built[0] if built else None  # one copy of the data, as train_seeds builds them
        built.append(build_member(cfg, s, f"{cfg.paths.output_dir}/seed_{s}", data_from=shared))
    return timed(SeedParallelLoop(built).fit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[5], help="S values to measure")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per seed")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (one single run and one stacked run each)")
    parser.add_argument("--json", help="write the result here too")
    parser.add_argument("--memory-steps", type=int, default=20, help="steps of each memory probe (0: no probes)")
    parser.add_argument(
        "--short-steps",
        type=int,
        help="also time both at this many steps: the per-step ratio without either's fixed cost per fit",
    )
    parser.add_argument(
        "--memory-members", type=int, nargs="*", default=[], help="more S values for the memory probes alone"
    )
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)  # internal: one probe, JSON on stdout
    parser.add_argument("overrides", nargs="*", help="config overrides (after --)")
    args = parser.parse_args()
    overrides = [*QUIET, f"trainer.max_steps={args.steps}", *args.overrides]
    no_epoch_end_diagnostics()
    if args.memory_probe:
        print(json.dumps(memory_probe(overrides, args.memory_probe)), flush=True)
        return
    memory = (
        [
            probe_in_subprocess(args.overrides, s, args.memory_steps)
            for s in sorted({1, *args.members, *args.memory_members})
        ]
        if args.memory_steps > 0
        else []
    )
    cfg = compose_config(overrides)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as workdir:
        # warm-up, not in the ratios: Lightning imports parts of itself on first use; compile=true compiles here
        first = single_run_seconds(overrides, 100, workdir)
        rows = []
        for members in args.members:
            # warm-up, not in the ratios: compile=true compiles the stacked loss of each S here
            first_stacked = stacked_seconds(overrides, members, workdir) if cfg.get("compile") else None
            pairs = [
                (single_run_seconds(overrides, rep, workdir), stacked_seconds(overrides, members, workdir))
                for rep in range(args.reps)
            ]
            ratios = [members * single[0] / stacked[0] for single, stacked in pairs]
            wall_ratios = [members * single[1] / stacked[1] for single, stacked in pairs]
            extra = {}  # the row's optional fields: the per-step ratio, the stacked compile's warm-up
            if args.short_steps:  # the same pair at --short-steps: the difference is what the further steps cost
                short = [f"trainer.max_steps={args.short_steps}"]
                shorts = [
                    (
                        single_run_seconds([*overrides, *short], rep, workdir),
                        stacked_seconds([*overrides, *short], members, workdir),
                    )
                    for rep in range(args.reps)
                ]
                marginal = [
                    members * (single[0] - short_single[0]) / (stacked[0] - short_stacked[0])
                    for (single, stacked), (short_single, short_stacked) in zip(pairs, shorts, strict=True)
                ]
                extra = {
                    "short_steps": args.short_steps,
                    "per_step_ratio": round(statistics.median(marginal), 2),
                    "per_step_ratios": [round(r, 2) for r in marginal],
                    "single_short_cpu_s": [round(single[0], 3) for single, _ in shorts],
                    "stacked_short_cpu_s": [round(stacked[0], 3) for _, stacked in shorts],
                }
            if first_stacked is not None:
                extra["first_stacked_run_s"] = {
                    "cpu": round(first_stacked[0], 3),
                    "wall": round(first_stacked[1], 3),
                }
            rows.append(
                {
                    **extra,
                    "members": members,
                    "seed_throughput_ratio": round(statistics.median(ratios), 2),
                    "ratios": [round(r, 2) for r in ratios],
                    "wall_ratios": [round(r, 2) for r in wall_ratios],
                    "single_run_cpu_s": [round(single[0], 3) for single, _ in pairs],
                    "stacked_cpu_s": [round(stacked[0], 3) for _, stacked in pairs],
                    "single_run_wall_s": [round(single[1], 3) for single, _ in pairs],
                    "stacked_wall_s": [round(stacked[1], 3) for _, stacked in pairs],
                    "peak_rss_mb": peak_rss_mb(),  # of the process so far: S grows along the rows
                }
            )
    write_result(
        args.json,
        {
            "kind": "seed_parallel",
            "case": "seed_parallel",
            "overrides": args.overrides,
            "batch_size": int(cfg.data.batch_size),
            "compile": bool(cfg.get("compile")),
            "steps": args.steps,
            "reps": args.reps,
            "threads": 1,
            "first_single_run_s": {"cpu": round(first[0], 3), "wall": round(first[1], 3)},
            "rows": rows,
            "memory": memory,  # one fresh process per S (S = 1 the baseline): RSS before building, peak after
            "load_before": load_before,
            "load_after": load_average(),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
