"""Paper reproductions as part of the package: ``vaelab-reproduce <study>`` (vaelab.reproduce.cli).

A study (one module here: manifold, ivae, skip, generalization) lists its ``Setting``s. A setting is one table
row: a label, the ``vaelab-train`` overrides, the seeds, the expected answer with its pass rule
(vaelab.reproduce.rules) and the table or half it belongs to. Every setting is run as one resumable
``vaelab-train -m`` multirun over its seeds in its own sweep folder under ``--out`` (``skip_completed=true``:
running again finishes what is missing). ``Runs`` reads the run files (``metrics.json``, vaelab.run_record)
back; a comparison (vaelab.reproduce.table) turns them into rows and verdicts, and vaelab.reproduce.document
into a page with the commands, the git commit, the date and the machine.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vaelab.summarize import RunResult, load_runs

Judgement = tuple[str, str]  # (verdict: pass | FAIL | incomplete | not run | -, why: one line, for a failure)
Rule = Callable[["Setting", "Runs"], Judgement]


@dataclass
class Setting:
    """One table row. overrides: the vaelab-train overrides; seeds: one job per seed; expected: the claim as
    text; rule: its pass rule (None: numbers only); table: the table or half it belongs to; sweep: the label
    of the setting whose multirun holds this row's runs ("" its own; e.g. one union run gives a row per
    class); smoke: overrides that shrink it to a plumbing test (--smoke); params: the numbers the label
    names (for figures and tests); reference: the label of the setting its rule compares it with (run with it);
    row: False for a setting that is run (e.g. a reference) but is not a row of its own."""

    label: str
    overrides: list[str]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    expected: str = ""
    rule: Rule | None = None
    table: str = ""
    sweep: str = ""
    smoke: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    reference: str = ""
    row: bool = True


def folder_name(label: str) -> str:
    """A label as a folder name: every character but letters, digits and -_. becomes _."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


def sweep_dir(out: Path, setting: Setting) -> Path:
    """The folder of the multirun that holds `setting`'s runs."""
    return out / folder_name(setting.sweep or setting.label)


def seed_of(run: RunResult) -> int | str:
    """A run's seed: metrics.json's ``seed``, else the job's ``seed=`` override, else its folder."""
    if "seed" in run.metrics:
        return int(run.metrics["seed"])
    value = run.overrides.get("seed", "")
    return int(value) if value.lstrip("-").isdigit() else run.path


def runs_by_seed(directory: Path) -> dict[int | str, RunResult]:
    """{seed: run} of one sweep folder, any status: a seed's newest completed run, else its newest run of
    another status (failed, diverged, interrupted, running, missing: what became of that seed)."""
    if not directory.is_dir():
        return {}

    def age(run: RunResult) -> float:
        path = directory / run.path / "metrics.json"
        return path.stat().st_mtime if path.is_file() else 0.0

    chosen: dict[int | str, RunResult] = {}
    for run in sorted(load_runs(directory), key=lambda r: (r.status == "completed", age(r))):
        chosen[seed_of(run)] = run  # later wins: completed over the rest, newer over older
    return chosen


class Runs:
    """The run files under `out` of a study's settings (all of them, so that a row can be compared with a
    reference that is not shown), each sweep folder read once."""

    def __init__(self, out: Path, settings: Sequence[Setting]):
        self.out = out
        self.settings = {s.label: s for s in settings}
        self._folders: dict[Path, dict[int | str, RunResult]] = {}

    def setting(self, label: str) -> Setting:
        return self.settings[label]

    def by_seed(self, setting: Setting | str) -> dict[int, RunResult | None]:
        """{seed: its run, None when there is none} for each of the setting's seeds, in seed order."""
        setting = self.settings[setting] if isinstance(setting, str) else setting
        folder = sweep_dir(self.out, setting)
        if folder not in self._folders:
            self._folders[folder] = runs_by_seed(folder)
        return {seed: self._folders[folder].get(seed) for seed in setting.seeds}

    def completed(self, setting: Setting | str) -> dict[int, RunResult]:
        return {s: r for s, r in self.by_seed(setting).items() if r is not None and r.status == "completed"}

    def values(self, setting: Setting | str, key: str) -> dict[int, float]:
        """{seed: value} of `key` over the completed runs where it is a finite number."""
        return {
            s: r.metrics[key] for s, r in self.completed(setting).items() if math.isfinite(r.metrics.get(key, math.nan))
        }

    def record(self, setting: Setting, run: RunResult) -> dict:
        """The whole metrics.json of a run (with its per-dimension lists, which RunResult leaves out)."""
        return json.loads((sweep_dir(self.out, setting) / run.path / "metrics.json").read_text())


def command(
    setting: Setting, out: Path, n_jobs: int, extra: Sequence[str] = (), stacked: Sequence[int] = ()
) -> list[str]:
    """The ``vaelab-train -m`` command line of one setting: its overrides, `extra`, its seeds, its sweep
    folder, skip_completed and (n_jobs > 1) the joblib launcher. `stacked`: these seeds train in one job as
    one stacked model (``seeds=[...]``, vaelab.seed_parallel) instead of one job per seed."""
    seeds = [f"seeds=[{','.join(map(str, stacked))}]"] if stacked else [f"seed={','.join(map(str, setting.seeds))}"]
    launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"] if n_jobs > 1 and not stacked else []
    return [
        sys.executable,
        "-m",
        "vaelab.train",
        "-m",
        *setting.overrides,
        *extra,
        *seeds,
        f"hydra.sweep.dir={sweep_dir(out, setting)}",
        "skip_completed=true",
        "callbacks.progress_bar=null",
        *launcher,
    ]


def shown_command(
    setting: Setting, out: Path, n_jobs: int, extra: Sequence[str] = (), stacked: Sequence[int] = ()
) -> str:
    """command() as one would type it: ``vaelab-train -m ...``."""
    return shlex.join(["vaelab-train", *command(setting, out, n_jobs, extra, stacked)[3:]])


def stacked_seeds(setting: Setting, runs: Runs | None, extra: Sequence[str] = ()) -> list[int]:
    """The seeds of `setting` to train as one stacked model: those without a completed run in `runs` (a study
    run again trains what is missing; None: every seed, as the setting's command from scratch shows them), when
    there are at least two and the composed config can train seed-parallel; [] otherwise (one job per seed)."""
    from vaelab.config import compose_config
    from vaelab.seed_parallel.runs import stacking_refusal

    missing = [s for s in setting.seeds if runs is None or s not in runs.completed(setting)]
    if len(missing) < 2 or stacking_refusal(compose_config([*setting.overrides, *extra])) is not None:
        return []
    return missing


def run_setting(
    setting: Setting, out: Path, n_jobs: int = 1, extra: Sequence[str] = (), stacked: Sequence[int] = ()
) -> int:
    """Runs (or finishes) one setting's multirun; a failing job does not stop the others. Returns the exit
    code of the multirun."""
    shown = shown_command(setting, out, n_jobs, extra, stacked)
    print(f"[{time.strftime('%H:%M:%S')}] {setting.label}: {shown}", flush=True)
    proc = subprocess.run(command(setting, out, n_jobs, extra, stacked), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"  exit {proc.returncode}: " + " | ".join(tail), flush=True)
    return proc.returncode
