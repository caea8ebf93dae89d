"""bench.json -> Markdown tables (one per kind of case), with each target and whether it was met.

python scripts/bench/report.py bench/bench.json      # prints the tables again
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _range(s: dict, fmt: str = "{:.3g}") -> str:
    """'median (min-max)' of a summary dict."""
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def _verdict(value: float, limit: float | None, fmt: str = "{:g}") -> str:
    if limit is None:
        return "-"
    return f"<= {fmt.format(limit)}: {'met' if value <= limit else 'MISSED'}"


def _load(r: dict) -> str:
    before, after = r.get("load_before"), r.get("load_after")
    return f"{before[0]:.1f} / {after[0]:.1f}" if before and after else "?"


def _loop(rows: dict) -> list[str]:
    lines = [
        "| case | device | batch | steps | hand (steps/s) | vaelab (steps/s) | ratio, median of pairs "
        "(min-max) | ratio of minima | target | load before/after |",
        "|" + "---|" * 10,
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['device']} | {r['batch_size']} | {r['steps']} | {r['steps_per_s']['hand']:.0f}"
            f" | {r['steps_per_s']['vaelab']:.0f} | {_range(r['ratio'])} | {r['ratio_of_minima']:.3f} | "
            f"{_verdict(r['ratio']['median'], r['targets'].get('ratio') if r['device'] == 'cpu' else None)} | "
            f"{_load(r)} |"
        )  # the targets are for the CPU
    return lines


def _diagnostics(r: dict) -> list[str]:
    limits = r["targets"].get("seconds", {})
    lines = ["| metric | evaluation set | seconds, median (min-max) | target |", "|---|---|---|---|"]
    for row in r["metrics"]:
        limit = next((v for k, v in limits.items() if row["metric"].startswith(k)), None)
        lines.append(
            f"| {row['metric']} | {row['set']} | {_range(row['seconds'])} | "
            f"{_verdict(row['seconds']['median'], limit)} |"
        )
    lines.append(f"\n{r['threads']} thread(s), {r['reps']} repetitions; load before/after {_load(r)}.")
    return lines


def _default_runs(rows: dict) -> list[str]:
    lines = [
        "| run | overrides | wall (s) | steps | diagnostics (s, runs) | share | target | peak RSS (MB) | "
        "target | load before/after |",
        "|" + "---|" * 10,
    ]
    for name, r in rows.items():
        t = r["targets"]
        lines.append(
            f"| {name} | {' '.join(r['overrides']) or '(defaults)'} | {r['wall_s']:.1f} | {r['steps']} | "
            f"{r['diagnostics_s']:.2f} ({r['diagnostics_runs']}) | {100 * r['diagnostics_share']:.1f}% | "
            f"{_verdict(r['diagnostics_share'], t.get('diagnostics_share'), '{:.0%}')} | "
            f"{r['peak_rss_mb']:.0f} | "
            f"{_verdict(r['peak_rss_mb'], t.get('peak_rss_mb'))} | {_load(r)} |"
        )
    return lines


def _sweep(r: dict) -> list[str]:
    lines = ["| launcher | jobs | seconds, median (min-max) | jobs/s |", "|---|---|---|---|"]
    for name, s in r["seconds"].items():
        lines.append(f"| {name} | {r['n_jobs']} | {_range(s)} | {r['jobs_per_s'][name]:.3f} |")
    lines.append(
        f"\nThroughput joblib (2 jobs) / sequential: {r['throughput_ratio']:.2f}x on {r['cpu_count']} "
        f"cores ({' '.join(r['grid'])}; {r['reps']} repetitions); load before/after {_load(r)}."
    )
    return lines


def markdown(results: dict) -> str:
    """The whole report: a header on the machine, then a table per kind; skipped and failed cases listed."""
    m = results["machine"]
    load = results.get("load_at_start")
    head = [
        f"# vaelab benchmarks ({results['started']}, device {results['device']}"
        f"{', TINY sizes' if results.get('tiny') else ''})",
        "",
        f"{m['cpu_count']} CPU cores ({m['processor']}), {m.get('gpu', 'no GPU')}, torch {m['torch']}, "
        f"Python {m['python']}; load average at start {load}; suite wall time "
        f"{results.get('suite_wall_s', '?')} s. Load above the core count = other processes competed for "
        "the CPU: timings are then noisy (ratios of back-to-back pairs less so).",
    ]
    kinds: dict[str, dict] = {}
    other = []
    for name, r in results["cases"].items():
        if "kind" in r:
            kinds.setdefault(r["kind"], {})[name] = r
        else:
            other.append(f"- {name}: {'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR: ' + r['error']}")
    sections = []
    if "loop" in kinds:
        sections += ["## Training loop: vaelab vs a hand-written loop", "", *_loop(kinds["loop"])]
    if "diagnostics" in kinds:
        for r in kinds["diagnostics"].values():
            sections += ["", "## Diagnostics: time per metric", "", *_diagnostics(r)]
    if "default_run" in kinds:
        sections += ["", "## Default runs: diagnostics share and peak memory", "", *_default_runs(kinds["default_run"])]
    if "sweep" in kinds:
        for r in kinds["sweep"].values():
            sections += ["", "## Sweep throughput", "", *_sweep(r)]
    if other:
        sections += ["", "## Not measured", "", *other]
    return "\n".join(head + [""] + sections) + "\n"


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
