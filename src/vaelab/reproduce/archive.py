"""The results archive: one ``metrics.json`` per run of a study, kept in the repository beside its page
(``docs/results/runs/<study>/``), so that a results page is rebuilt from run files in any checkout, and runs made
in different sessions (``--only`` one table today, another tomorrow) add up to one page.

Layout: ``<archive>/<sweep folder>/seed_<s>/metrics.json``, the sweep folders named as under ``--out``, so that
``Runs(archive, settings)`` reads it like a study's output folder. Each copy is the run's whole metrics.json plus
``archived``: the git commit, date and machine of the checkout that archived it (right after the runs).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from vaelab.reproduce import Runs, Setting, sweep_dir
from vaelab.reproduce.document import git_commit, machine


def seed_file(archive: Path, setting: Setting, seed: int) -> Path:
    return sweep_dir(archive, setting) / f"seed_{seed}" / "metrics.json"


def archive_runs(runs: Runs, settings: Sequence[Setting], archive: Path) -> int:
    """Copies every run of `settings` found in `runs` into `archive` (a completed run replaces the archived copy
    of its seed; a run of another status is archived only where no completed copy is; a run archived already
    keeps its copy and stamp; a job without a readable metrics.json is skipped). Returns the count written."""
    stamp = {"commit": git_commit(), "date": time.strftime("%Y-%m-%d"), "machine": machine()}
    written = set()
    for setting in settings:
        for seed, run in runs.by_seed(setting).items():
            target = seed_file(archive, setting, seed)
            if run is None or target in written:
                continue
            try:
                record = runs.record(setting, run)
            except (OSError, json.JSONDecodeError):  # a job that never wrote a readable metrics.json
                continue
            if target.is_file():
                kept = json.loads(target.read_text())
                kept.pop("archived", None)
                if kept == record or (run.status != "completed" and kept.get("status") == "completed"):
                    continue  # archived already (keeps its stamp), or a completed copy that a failure must not replace
            record["archived"] = stamp
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record, indent=1) + "\n")
            written.add(target)
    return len(written)


def archived_seeds(archive: Path, setting: Setting) -> list[int]:
    folder = sweep_dir(archive, setting)
    found = (p.name.removeprefix("seed_") for p in folder.glob("seed_*") if (p / "metrics.json").is_file())
    return sorted(int(s) for s in found if s.lstrip("-").isdigit())


def with_archived_seeds(settings: Sequence[Setting], archive: Path) -> list[Setting]:
    """Each setting with the seeds the page shows: its own seeds while every archived seed is one of them (a
    missing one shows as not run), else the archived seeds (a study run on other seeds, e.g. held-out ones)."""
    shown = []
    for setting in settings:
        seeds = archived_seeds(archive, setting)
        shown.append(setting if set(seeds) <= set(setting.seeds) else replace(setting, seeds=seeds))
    return shown


def archive_note(archive: Path) -> str:
    """One line per (commit, date, machine) that archived runs here, with how many."""
    stamps = Counter()
    for path in archive.rglob("metrics.json"):
        stamp = json.loads(path.read_text()).get("archived", {})
        stamps[(stamp.get("commit", "?")[:12], stamp.get("date", "?"), stamp.get("machine", "?"))] += 1
    return "\n".join(
        f"- {n} run file(s): commit {commit}, {date}, {where}"
        for (commit, date, where), n in sorted(stamps.items(), key=lambda item: item[0][1])
    )
