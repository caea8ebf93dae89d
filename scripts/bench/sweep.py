"""Sweep throughput: the same grid through Hydra's sequential launcher and through joblib with 2 jobs.

Each launcher runs the whole `vaelab-train -m` command in a fresh process (start-up included, as a user sees
it); the figure is jobs per second, and the ratio joblib / sequential. Runs alternate between the launchers
so slow drifts of a shared machine hit both. Nothing else should run on the machine meanwhile.

    python scripts/bench_sweep.py                      # the README grid: manifold_dim 2,3 x seed 0,1,2
    python scripts/bench_sweep.py --epochs 100 --repeats 2 --json bench_sweep.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCHERS = {"sequential": [], "joblib_2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


def run_grid(grid: list[str], launcher: list[str], out: Path) -> float:
    """Wall seconds of one `vaelab-train -m` over `grid`; raises if any job did not complete."""
    cmd = [sys.executable, "-m", "vaelab.train", "-m", *grid, *launcher, "logger=none",
           "callbacks.progress_bar=null", f"hydra.sweep.dir={out}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="data.manifold_dim=2,3 seed=0,1,2", help="sweep overrides")
    parser.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (default: the config's)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    grid = args.grid.split() + ([f"trainer.max_epochs={args.epochs}"] if args.epochs else [])
    n_jobs = 1
    for item in args.grid.split():
        n_jobs *= len(item.partition("=")[2].split(","))
    times: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, launcher in LAUNCHERS.items():
                seconds = run_grid(grid, launcher, Path(tmp) / f"{name}_{rep}")
                times[name].append(seconds)
                print(f"{name:>10}: {n_jobs} jobs in {seconds:6.1f} s ({n_jobs / seconds:.3f} jobs/s)", flush=True)
    best = {name: min(ts) for name, ts in times.items()}
    ratio = best["sequential"] / best["joblib_2"]
    print(f"throughput joblib (2 jobs) / sequential = {ratio:.2f}x  (best of {args.repeats}; "
          f"{os.cpu_count()} cores)")
    if args.json:
        Path(args.json).write_text(json.dumps({"grid": grid, "n_jobs": n_jobs, "seconds": times,
                                               "throughput_ratio": ratio, "cpu_count": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
