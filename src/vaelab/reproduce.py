"""Paper reproductions: each row of a table is a setting run as one ``vaelab-train -m`` multirun over seeds.

A topic script (``scripts/reproduce_<topic>.py``) lists its ``Setting``s and calls ``main(SETTINGS, title)``.
Every setting gets its own sweep folder under ``--out`` and is run with ``skip_completed=true``, so running
the script again finishes an interrupted reproduction instead of starting over; ``--table-only`` rebuilds the
table from what is on disk. The table (Markdown) lists per setting the expected value, mean ± std of the
chosen metrics over the completed seeds, jobs completed/all, seconds per run and pass/fail, and names the
command and the machine that produced it.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vaelab.summarize import RunResult, load_runs

Check = Callable[[list[dict[str, float]]], bool]


@dataclass
class Setting:
    """One table row. ``overrides``: the vaelab-train overrides (e.g. ``["experiment=ivae"]``); ``full``: extra
    overrides for ``--full`` (the paper's sizes); ``expected``: text for the table; ``check``: takes the metrics
    of every completed seed and says whether the row reproduces the claim (None: no pass/fail)."""

    label: str
    overrides: list[str]
    expected: str = ""
    check: Check | None = None
    full: list[str] = field(default_factory=list)


def all_equal(metric: str, value: float) -> Check:
    """Passes when every seed has `metric` == value (e.g. active_dims == r in every seed)."""
    return lambda runs: bool(runs) and all(r.get(metric) == value for r in runs)


def mean_at_least(metric: str, value: float) -> Check:
    """Passes when the mean of `metric` over seeds is >= value."""
    return lambda runs: bool(runs) and statistics.fmean(r.get(metric, math.nan) for r in runs) >= value


def sweep_dir(out: Path, setting: Setting) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in setting.label)
    return out / safe


def command(setting: Setting, seeds: Sequence[int], directory: Path, n_jobs: int, full: bool,
            extra: Sequence[str] = ()) -> list[str]:
    """The ``vaelab-train -m`` command line of one setting."""
    launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"] if n_jobs > 1 else []
    return [sys.executable, "-m", "vaelab.train", "-m", *setting.overrides, *(setting.full if full else []),
            *extra, f"seed={','.join(map(str, seeds))}", f"hydra.sweep.dir={directory}", "skip_completed=true",
            "callbacks.progress_bar=null", *launcher]


def run_setting(setting: Setting, seeds: Sequence[int], out: Path, n_jobs: int = 1, full: bool = False,
                extra: Sequence[str] = ()) -> list[RunResult]:
    """Runs (or finishes) one setting's multirun; a failing job does not stop the others. Returns its runs."""
    directory = sweep_dir(out, setting)
    cmd = command(setting, seeds, directory, n_jobs, full, extra)
    print(f"[{time.strftime('%H:%M:%S')}] {setting.label}: {shlex.join(cmd[2:])}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"  exit {proc.returncode}: " + " | ".join(tail), flush=True)
    return load_runs(directory) if directory.is_dir() else []


def mean_std(values: list[float]) -> str:
    """'mean ± std' (ddof 1) of the values, one value alone, '-' for none."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {statistics.stdev(values):.2g}"


def completed_runs(out: Path, setting: Setting) -> tuple[dict, int]:
    """{seed: metrics} of the setting's completed runs under `out` (of two runs of one seed, e.g. one from a
    one-seed job and one from a full sweep, the newer) and the number of runs found, any status."""
    directory = sweep_dir(out, setting)
    runs = load_runs(directory) if directory.is_dir() else []
    done = sorted((r for r in runs if r.status == "completed"),
                  key=lambda r: (directory / r.path / "metrics.json").stat().st_mtime)
    return {r.metrics.get("seed", r.path): r.metrics for r in done}, len(runs)


def seed_of(run: RunResult) -> int | str:
    """A run's seed: metrics.json's ``seed``, else the job's ``seed=`` override, else its folder."""
    if "seed" in run.metrics:
        return int(run.metrics["seed"])
    value = run.overrides.get("seed", "")
    return int(value) if value.lstrip("-").isdigit() else run.path


def runs_by_seed(out: Path, setting: Setting) -> dict[int | str, RunResult]:
    """{seed: run} of the setting under `out`, any status: a seed's newest completed run, else its newest run of
    another status (failed, diverged, interrupted, running, missing: what became of that seed)."""
    directory = sweep_dir(out, setting)
    if not directory.is_dir():
        return {}

    def age(run: RunResult) -> float:
        path = directory / run.path / "metrics.json"
        return path.stat().st_mtime if path.is_file() else 0.0

    chosen: dict[int | str, RunResult] = {}
    for run in sorted(load_runs(directory), key=lambda r: (r.status == "completed", age(r))):
        chosen[seed_of(run)] = run  # later wins: completed over the rest, newer over older
    return chosen


def table_rows(settings: Sequence[Setting], out: Path, metrics: Sequence[str]) -> list[list[str]]:
    """One row per setting from the runs on disk (one per seed): label, expected, metrics, jobs, s/run,
    pass/fail."""
    rows = []
    for setting in settings:
        by_seed, n_runs = completed_runs(out, setting)
        done = list(by_seed.values())
        cells = [mean_std([m[k] for m in done if k in m and math.isfinite(m[k])]) for k in metrics]
        times = [m["wall_time_s"] for m in done if "wall_time_s" in m]
        verdict = "-" if setting.check is None or not done else ("pass" if setting.check(done) else "FAIL")
        rows.append([setting.label, setting.expected, *cells, f"{len(done)}/{n_runs}",
                     f"{statistics.fmean(times):.0f}" if times else "-", verdict])
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; a "|" inside a cell (e.g. the label c=|Au|^0.5) is escaped."""
    def line(cells: Sequence) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def machine() -> str:
    """A one-line description of where the table was made."""
    import torch

    return (f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, torch {torch.__version__}, torch_threads per job from the config").strip()


Table = Callable[[list[Setting], Path], tuple[str, bool]]


def default_table(metrics: Sequence[str]) -> Table:
    """One row per setting (table_rows); failed when any row's check fails."""
    def table(chosen: list[Setting], out: Path) -> tuple[str, bool]:
        rows = table_rows(chosen, out, metrics)
        header = ["setting", "expected", *metrics, "jobs", "s/run", "result"]
        return markdown_table(header, rows), any(row[-1] == "FAIL" for row in rows)
    return table


def main(settings: Sequence[Setting] | Callable[[bool], Sequence[Setting]], title: str, metrics: Sequence[str],
         argv: Sequence[str] | None = None, default_seeds: int = 3, table: Table | None = None) -> int:
    """Command line of a topic script: runs the settings (or a subset), then writes and prints the table.

    settings: the rows, or a function of ``--full`` returning them (for scripts whose full rows differ in more
    than extra overrides); table: builds the Markdown from the chosen settings' runs under the output folder
    (default: default_table(metrics)). Exit code 1 when a row fails its check."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--seeds", type=int, default=default_seeds, help="seeds 0..N-1 per setting")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel jobs (joblib launcher) per setting")
    parser.add_argument("--out", type=Path, default=None, help="folder of the sweeps (default outputs/reproduce/<script>)")
    parser.add_argument("--only", default=None, help="run only settings whose label contains this text")
    parser.add_argument("--full", action="store_true", help="the paper's sizes (hours on a CPU)")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from the runs on disk")
    parser.add_argument("--list", action="store_true", help="print the settings and their commands, run nothing")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every job, e.g. trainer=gpu")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.n_jobs < 1:
        parser.error("--seeds and --n-jobs must be >= 1")
    settings = list(settings(args.full) if callable(settings) else settings)
    script = Path(sys.argv[0]).stem
    out = args.out or Path(os.environ.get("VAELAB_LOG_DIR", "outputs")) / "reproduce" / (script + ("_full" if args.full else ""))
    chosen = [s for s in settings if args.only is None or args.only in s.label]
    if not chosen:
        parser.error(f"--only {args.only!r} matches none of: {', '.join(s.label for s in settings)}")
    seeds = list(range(args.seeds))
    if args.list:
        for s in chosen:
            print(f"{s.label}: {shlex.join(command(s, seeds, sweep_dir(out, s), args.n_jobs, args.full, args.overrides)[2:])}")
        return 0
    if not args.table_only:
        for setting in chosen:
            run_setting(setting, seeds, out, args.n_jobs, args.full, args.overrides)
    markdown, failed = (table or default_table(metrics))(chosen, out)
    invocation = shlex.join(["python", *sys.argv])
    where = "the runs' own (table rebuilt from disk)" if args.table_only else machine()
    text = f"## {title}\n\n{markdown}\n\nCommand: `{invocation}`  \nMachine: {where}  \nRuns: `{out}`\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    print(text)
    return 1 if failed else 0
