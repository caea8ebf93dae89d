"""``vaelab-summarize DIR``: one table over every run under DIR, grouped by overrides, mean ± std over seeds.

Reads each ``metrics.json`` below DIR (a multirun, a folder of runs, or one run). A group is a set of runs that
share every override except the ignored keys (``seed`` by default); its statistics use completed runs only
(std with ddof = 1). Jobs that failed, diverged, were interrupted, are still running or never wrote a
metrics.json (a job folder without one, or a grid point of ``multirun.yaml`` with no folder) are counted per
group and listed with their error; they never break the summary. Writes ``summary.csv``, ``summary.md`` and
``runs.csv`` (one row per run) next to the runs and prints the Markdown; ``--plot`` adds PNG figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vaelab.run_record import RUN_CONTROL_KEYS

# train_time_s: wall_time_s less startup_s (imports, data, model: the first job of a sweep loads torch and
# Lightning, the others find them loaded); runs written before startup_s was recorded show wall_time_s instead
DEFAULT_METRICS = (
    "active_dims",
    "active_dims_saturated",
    "active_units",
    "active_units_0.02",
    "mcc",
    "elbo",
    "recon_mse",
    "kl",
    "mi",
    "mi_saturated",
    "iw_nll",
    "probe_accuracy_linear",
    "probe_accuracy_knn",
    "probe_accuracy_mlp",
    "gamma",
    "train_time_s",
    "startup_s",
    "wall_time_s",
)
# integer-valued per run: integer y ticks
INTEGER_METRICS = ("active_dims", "active_units", "active_units_0.01", "active_units_0.02", "epochs", "steps")
# run files written before a key was renamed: old key -> the key it is read as (when the new one is absent)
RENAMED = {"probe_accuracy": "probe_accuracy_linear"}  # issue 19: one probe became three
# true/false in metrics.json, read as 1/0 (a group's mean: the share of its runs)
FLAGS = ("mi_saturated", "active_dims_saturated")
DEFAULT_IGNORE = ("seed",)
PROBLEM_STATUSES = ("failed", "diverged", "interrupted", "running", "missing", "unreadable")


@dataclass
class RunResult:
    """One run: where it is, how it ended, its overrides as key -> value strings and its numeric metrics."""

    path: str
    status: str
    overrides: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    converged: bool | None = None  # metrics.json's verdict (vaelab.convergence); None: not recorded


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``["data.manifold_dim=2", "+x=1", "~y"]`` -> ``{"data.manifold_dim": "2", "x": "1", "y": "~"}``."""
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if key.startswith("~"):
            parsed[key[1:]] = "~"
        else:
            parsed[key.lstrip("+")] = value if sep else ""
    return {k: v for k, v in parsed.items() if k not in RUN_CONTROL_KEYS}  # how a job was run, not what


def _numeric(data: dict) -> dict[str, float]:
    """The numeric fields (the FLAGS as 1/0, RENAMED keys of older run files under their new names), and
    ``train_time_s`` (wall time less start-up) where both are recorded."""
    numbers = {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    numbers.update({k: float(data[k]) for k in FLAGS if isinstance(data.get(k), bool)})
    for old, new in RENAMED.items():
        if old in numbers:
            numbers.setdefault(new, numbers[old])
    if "wall_time_s" in numbers and "startup_s" in numbers:
        numbers["train_time_s"] = numbers["wall_time_s"] - numbers["startup_s"]
    return numbers


def _read_run(path: Path, root: Path) -> RunResult:
    rel = str(path.parent.relative_to(root)) if path.parent != root else "."
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return RunResult(rel, "unreadable", _hydra_overrides(path.parent) or {}, error=f"{path.name}: {err}")
    converged = data.get("converged")
    return RunResult(
        rel,
        str(data.get("status", "unreadable")),
        parse_overrides(data.get("overrides") or []),
        _numeric(data),
        data.get("error"),
        converged if isinstance(converged, bool) else None,
    )


def _hydra_overrides(job_dir: Path) -> dict[str, str] | None:
    """The overrides Hydra saved in ``.hydra/overrides.yaml`` before the job started, or None."""
    saved = job_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return None
    from omegaconf import OmegaConf

    return parse_overrides([str(o) for o in OmegaConf.load(saved) or []])


def expected_grid(multirun_yaml: Path) -> list[dict[str, str]]:
    """Every job of a basic-sweeper grid saved in ``multirun.yaml`` (its sweeper params and command-line
    overrides expanded); empty for other sweepers (e.g. Optuna, whose trials are not known in advance)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(multirun_yaml)
    sweeper = OmegaConf.select(cfg, "hydra.sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return []
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    params += list(OmegaConf.select(cfg, "hydra.overrides.task") or [])
    overrides = OverridesParser.create().parse_overrides(params)
    (jobs,) = BasicSweeper.split_arguments(overrides, None)
    return [member for job in jobs for member in seed_members(parse_overrides(job))]


def seed_members(job: dict[str, str]) -> list[dict[str, str]]:
    """A job of ``seeds=[a,b]`` (seed-parallel training) as the runs it writes, one per seed with ``seed=<s>``;
    any other job as itself."""
    if "seeds" not in job:
        return [job]
    rest = {k: v for k, v in job.items() if k not in ("seeds", "seed")}
    return [{**rest, "seed": s.strip()} for s in job["seeds"].strip("[]").split(",") if s.strip()]


def load_runs(root: str | Path) -> list[RunResult]:
    """All runs under `root`: every metrics.json, every Hydra job folder without one, and every grid point of
    a ``multirun.yaml`` below `root` that has no job at all (status ``missing``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is not a directory; pass a run or multirun directory (e.g. outputs/multiruns/<date>/<time>_<name>)"
        )
    runs = [_read_run(p, root) for p in sorted(root.rglob("metrics.json"))]
    seen = {run.path for run in runs}
    for saved in sorted(root.rglob(".hydra/overrides.yaml")):
        job_dir = saved.parent.parent
        rel = str(job_dir.relative_to(root)) if job_dir != root else "."
        members_present = any(_is_below(root / path, job_dir) for path in seen)  # seed-parallel: <job>/seed_<s>
        if rel not in seen and not members_present and not (job_dir / "multirun.yaml").exists():
            runs.append(RunResult(rel, "missing", _hydra_overrides(job_dir) or {}, error="no metrics.json"))
    for multirun in sorted(root.rglob("multirun.yaml")):
        sweep_dir = multirun.parent
        present = [r.overrides for r in runs if _is_below(root / r.path, sweep_dir)]
        for job in expected_grid(multirun):
            if job in present:
                present.remove(job)
            else:
                rel = str(sweep_dir.relative_to(root)) if sweep_dir != root else "."
                runs.append(RunResult(rel, "missing", job, error="job never started (no folder)"))
    return runs


def _is_below(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


@dataclass
class Summary:
    """Grouped statistics; ``rows`` are dicts with the group keys, job counts and ``<metric>_mean/_std/_n``."""

    group_keys: list[str]
    metrics: list[str]
    rows: list[dict]
    runs: list[RunResult]
    common: dict[str, str]

    def problems(self) -> list[RunResult]:
        return [r for r in self.runs if r.status != "completed"]

    def has_convergence(self) -> bool:
        return any(r.converged is not None for r in self.runs)

    def markdown(self) -> str:
        verdicts = self.has_convergence()
        head = self.group_keys + ["jobs"] + (["converged"] if verdicts else []) + self.metrics
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = [row[k] for k in self.group_keys] + [_jobs_cell(row)]
            cells += [_converged_cell(row)] if verdicts else []
            cells += [_stat_cell(row, m) for m in self.metrics]
            lines.append("| " + " | ".join(cells) + " |")
        text = []
        if self.common:
            text.append("Common overrides: " + " ".join(f"{k}={v}" for k, v in self.common.items()) + "\n")
        text += [
            "\n".join(lines),
            "",
            "mean ± std over completed runs (std with ddof 1); jobs = completed/all."
            + (
                "; converged = completed runs that converged / completed runs with a verdict (metrics.json `converged`)"
                if verdicts
                else ""
            ),
        ]
        if self.problems():
            text += ["", "Not completed:", ""]
            for run in self.problems():
                where = " ".join(f"{k}={v}" for k, v in run.overrides.items()) or "(no overrides)"
                text.append(f"- `{run.path}` [{where}]: **{run.status}**" + (f": {run.error}" if run.error else ""))
        return "\n".join(text) + "\n"


def _fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}" if abs(value) >= 1 else f"{value:.3g}"
    return f"{value:.2e}"


def _stat_cell(row: dict, metric: str) -> str:
    n, mean, std = row[f"{metric}_n"], row[f"{metric}_mean"], row[f"{metric}_std"]
    if n == 0:
        return "–"
    return _fmt(mean) if n == 1 else f"{_fmt(mean)} ± {_fmt(std)}"


def _jobs_cell(row: dict) -> str:
    cell = f"{row['completed']}/{row['jobs']}"
    bad = [f"{row[s]} {s}" for s in PROBLEM_STATUSES if row.get(s)]
    return cell + (f" ({', '.join(bad)})" if bad else "")


def _converged_cell(row: dict) -> str:
    """``converged/judged``: completed runs with a verdict; runs written before verdicts existed are not counted
    as unconverged but named."""
    cell = f"{row['converged']}/{row['judged']}" + ("" if row["converged"] == row["judged"] else " (**unconverged**)")
    unjudged = row["completed"] - row["judged"]
    return cell + (f" ({unjudged} without a verdict)" if unjudged else "")


def _sort_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def summarize(
    runs: list[RunResult],
    metrics: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    sort: Sequence[str] | None = None,
) -> Summary:
    """Groups `runs` by `group_by` (default: every override key that varies, minus `ignore`) and computes
    mean, std (ddof 1) and n of each metric over the completed runs of each group."""
    if not runs:
        raise ValueError("no runs found (no metrics.json or Hydra job folder below the directory)")
    keys = list(dict.fromkeys(k for r in runs for k in r.overrides))
    values = {k: {r.overrides.get(k, "") for r in runs} for k in keys}
    common = {k: next(iter(v)) for k, v in values.items() if len(v) == 1 and k not in ignore}
    if group_by is None:
        group_keys = [k for k in keys if k not in ignore and k not in common]
    else:
        unknown = [k for k in group_by if k not in keys]
        if unknown:
            raise ValueError(f"--group-by {unknown} is not an override of these runs; overridden keys: {keys}")
        group_keys = list(group_by)
    completed = [r for r in runs if r.status == "completed"]
    available = list(dict.fromkeys(k for r in completed for k in r.metrics))
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in available]
        if "train_time_s" in metrics:  # reported as training time and start-up apart
            metrics.remove("wall_time_s")
    else:
        unknown = [m for m in metrics if m not in available and completed]
        if unknown:
            raise ValueError(f"--metrics {unknown} not found in any completed run; available: {available}")
    groups: dict[tuple, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(tuple(run.overrides.get(k, "") for k in group_keys), []).append(run)
    rows = [_group_row(dict(zip(group_keys, key, strict=True)), members, metrics) for key, members in groups.items()]
    for spec in reversed(list(sort or group_keys)):  # stable sorts, last key first; "-key" sorts descending
        key = spec.lstrip("-")
        column = key if key in group_keys else f"{key}_mean"
        if rows and column not in rows[0]:
            raise ValueError(f"--sort {key!r} is neither a group key {group_keys} nor a metric {list(metrics)}")
        sign = -1.0 if spec.startswith("-") else 1.0
        if key in group_keys:
            rows.sort(key=lambda row: _sort_key(row[column]), reverse=sign < 0)
        else:  # groups without a value (NaN) last either way
            rows.sort(key=lambda row: (math.isnan(row[column]), sign * row[column]))
    return Summary(group_keys, list(metrics), rows, runs, common)


def _group_row(keys: dict[str, str], members: list[RunResult], metrics: Sequence[str]) -> dict:
    row: dict = {
        **keys,
        "jobs": len(members),
        "completed": sum(r.status == "completed" for r in members),
        "converged": sum(r.status == "completed" and r.converged is True for r in members),
        "judged": sum(r.status == "completed" and r.converged is not None for r in members),
    }
    for status in PROBLEM_STATUSES:
        row[status] = sum(r.status == status for r in members)
    for metric in metrics:
        vals = [
            r.metrics[metric]
            for r in members
            if r.status == "completed" and math.isfinite(r.metrics.get(metric, math.nan))
        ]
        n = len(vals)
        mean = sum(vals) / n if n else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
        row.update({f"{metric}_mean": mean, f"{metric}_std": std, f"{metric}_n": n})
    return row


def write(summary: Summary, out_dir: str | Path) -> list[Path]:
    """summary.csv (one row per group), runs.csv (one row per run) and summary.md in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "summary.csv", out / "runs.csv", out / "summary.md"]
    with paths[0].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary.rows[0]))
        writer.writeheader()
        writer.writerows(
            {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in summary.rows
        )
    keys = list(dict.fromkeys(k for r in summary.runs for k in r.overrides))
    with paths[1].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "status", "converged", *keys, *summary.metrics, "error"])
        for run in summary.runs:
            writer.writerow(
                [
                    run.path,
                    run.status,
                    "" if run.converged is None else run.converged,
                    *(run.overrides.get(k, "") for k in keys),
                    *(run.metrics.get(m, "") for m in summary.metrics),
                    run.error or "",
                ]
            )
    paths[2].write_text(summary.markdown())
    return paths


def plot(summary: Summary, out_dir: str | Path, x: str | None = None) -> list[Path]:
    """One PNG per metric: mean ± std against the swept key `x` (default: the first group key), one series per
    combination of the other group keys; a numeric x gives lines, a categorical one bars. Each point is labelled
    with n, the completed runs it averages; an integer key and an integer metric get integer ticks. active_dims
    against a manifold dimension gets the y = x line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not summary.group_keys:
        raise ValueError("nothing to plot against: the runs share all their overrides (apart from the seed)")
    x = x or summary.group_keys[0]
    if x not in summary.group_keys:
        raise ValueError(f"--x {x!r} is not a group key; choose one of {summary.group_keys}")
    others = [k for k in summary.group_keys if k != x]
    series: dict[str, list[dict]] = {}
    for row in summary.rows:
        label = ", ".join(f"{k}={row[k]}" for k in others) or None
        series.setdefault(label, []).append(row)
    xs_all = [row[x] for row in summary.rows]
    numeric = all(_sort_key(v)[0] == 0 for v in xs_all)
    integer_x = numeric and all(float(v).is_integer() for v in xs_all)
    categories = sorted(set(xs_all), key=_sort_key)
    paths = []
    for metric in summary.metrics:
        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
        for i, (label, rows) in enumerate(series.items()):
            rows = sorted(rows, key=lambda r: _sort_key(r[x]))
            ys = [r[f"{metric}_mean"] for r in rows]
            err = [0.0 if math.isnan(r[f"{metric}_std"]) else r[f"{metric}_std"] for r in rows]
            if numeric:
                pos = [float(r[x]) for r in rows]
                ax.errorbar(pos, ys, yerr=err, marker="o", capsize=3, label=label)
            else:
                width = 0.8 / len(series)
                pos = [categories.index(r[x]) + (i - (len(series) - 1) / 2) * width for r in rows]
                ax.bar(pos, ys, width, yerr=err, capsize=3, label=label)
            for px, y, e, r in zip(pos, ys, err, rows, strict=True):  # how many runs each point averages
                if math.isfinite(y):
                    ax.annotate(
                        f"n={r[f'{metric}_n']}",
                        (px, y + e),
                        textcoords="offset points",
                        xytext=(0, 3),
                        ha="center",
                        fontsize=6,
                    )
        if not numeric:
            ax.set_xticks(range(len(categories)), categories, rotation=20)
        elif integer_x:  # an integer key (a dimension, a seed count): ticks at integers only
            values = sorted({int(float(v)) for v in xs_all})
            if len(values) <= 12:
                ax.set_xticks(values)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(y=0.12)  # room for the n= labels
        if metric in INTEGER_METRICS:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            lo, hi = ax.get_ylim()
            if hi - lo < 2:  # e.g. every point at 0: at least one integer step either side
                mid = round((lo + hi) / 2)
                ax.set_ylim(min(lo, mid - 1), max(hi, mid + 1))
        if metric == "active_dims" and numeric and x.endswith("manifold_dim"):
            lo, hi = min(map(float, xs_all)), max(map(float, xs_all))
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / f"{metric}_vs_{x.replace('/', '_')}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def summarize_dir(
    root: str | Path,
    metrics: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    sort: Sequence[str] | None = None,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    out_dir: str | Path | None = None,
) -> Summary:
    """load_runs + summarize + write (into `out_dir`, default `root`)."""
    summary = summarize(load_runs(root), metrics, group_by, ignore, sort)
    write(summary, out_dir or root)
    return summary


def _csv_list(text: str | None) -> list[str] | None:
    return [t for t in text.split(",") if t] if text else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vaelab-summarize",
        description=__doc__.split("\n\n")[1],
        epilog="example: vaelab-summarize outputs/multiruns/2026-11-21/10-00-00.000000_vae_manifold --plot",
    )
    parser.add_argument("dir", help="a multirun directory, or any directory with runs below it")
    parser.add_argument(
        "--metrics", help=f"comma-separated metric names (default: those of {DEFAULT_METRICS} that the runs have)"
    )
    parser.add_argument("--group-by", help="comma-separated override keys (default: every varying one but seed)")
    parser.add_argument(
        "--ignore",
        default=",".join(DEFAULT_IGNORE),
        help="override keys averaged over instead of grouped by (default: seed)",
    )
    parser.add_argument(
        "--sort",
        help="comma-separated group keys or metrics to sort by, '-name' for descending (default: the group keys)",
    )
    parser.add_argument("--out", help="where to write summary.csv/md, runs.csv and plots (default: DIR)")
    parser.add_argument("--plot", action="store_true", help="also write a PNG per metric against --x")
    parser.add_argument("--x", help="the swept key on the x axis of the plots (default: the first group key)")
    args = parser.parse_args(argv)
    try:
        summary = summarize(
            load_runs(args.dir),
            _csv_list(args.metrics),
            _csv_list(args.group_by),
            _csv_list(args.ignore) or (),
            _csv_list(args.sort),
        )
        out = args.out or args.dir
        files = write(summary, out)
        if args.plot:
            files += plot(summary, out, args.x)
    except (ValueError, FileNotFoundError) as err:
        print(f"vaelab-summarize: error: {err}", file=sys.stderr)
        return 2
    print(summary.markdown())
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
