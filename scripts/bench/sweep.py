"""Sweep throughput: the same grid through Hydra's sequential launcher and through joblib with 2 jobs.

Each launcher runs the whole `vaelab-train -m` command in a fresh process (start-up included, as a user sees
it); the figure is jobs per second, and the ratio joblib / sequential of the medians. Runs alternate between
the launchers so slow drifts of a shared machine hit both. Every job uses one thread (the default).

    python scripts/bench/sweep.py                                  # manifold_dim 2,3 x seed 0,1, 100 epochs
    python scripts/bench/sweep.py --grid "data.manifold_dim=2,3 seed=0,1,2" --epochs 300 --reps 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import load_average, summary, write_result

LAUNCHERS = {"sequential": [], "joblib_2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


def run_grid(grid: list[str], launcher: list[str], out: Path) -> float:
    """Wall seconds of one `vaelab-train -m` over `grid`; raises if any job did not complete."""
    cmd = [
        sys.executable,
        "-m",
        "vaelab.train",
        "-m",
        *grid,
        *launcher,
        "logger=none",
        "callbacks.progress_bar=null",
        f"hydra.sweep.dir={out}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed


def measure(grid: list[str], reps: int) -> dict:
    n_jobs = 1
    for item in grid:
        if "," in item:
            n_jobs *= len(item.partition("=")[2].split(","))
    times: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            order = list(LAUNCHERS) if rep % 2 == 0 else list(LAUNCHERS)[::-1]
            for name in order:
                times[name].append(run_grid(grid, LAUNCHERS[name], Path(tmp) / f"{name}_{rep}"))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "kind": "sweep",
        "grid": grid,
        "n_jobs": n_jobs,
        "reps": reps,
        "cpu_count": os.cpu_count(),
        "seconds": {name: summary(ts) for name, ts in times.items()},
        "jobs_per_s": {name: round(n_jobs / m, 3) for name, m in medians.items()},
        "throughput_ratio": round(medians["sequential"] / medians["joblib_2"], 3),
        "load_before": load_before,
        "load_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="data.manifold_dim=2,3 seed=0,1", help="sweep overrides")
    parser.add_argument("--epochs", type=int, default=100, help="trainer.max_epochs of every job")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("overrides", nargs="*", help="more config overrides for every job")
    args = parser.parse_args()
    grid = [*args.grid.split(), f"trainer.max_epochs={args.epochs}", *args.overrides]
    write_result(args.json, measure(grid, args.reps))


if __name__ == "__main__":
    main()
