"""bench.json -> Markdown tables (one per kind of case), with each target and whether it was met; and the
generated part of docs/performance.md.

    python scripts/bench/report.py outputs/bench/bench.json                              # prints bench.md again
    python scripts/bench/report.py outputs/bench/bench.json --page docs/performance.md   # rewrites the page's tables

With ``--page`` the part of the page above vaelab's regeneration marker (the one docs/results/*.md use) is
replaced by one table per benchmark, each with its machine, load, date, git commit and the command that re-runs
it; what follows the marker (the hand-written analysis) is kept. Several bench.json files may be given (the
later one wins for a case in both).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from vaelab.reproduce.document import MARKER, write_page


def _range(s: dict, fmt: str = "{:.3g}") -> str:
    """'median (min-max)' of a summary dict."""
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def _seconds(s: dict | None) -> str:
    """'median (min-max)' seconds, or '?' where the result has none."""
    return _range(s) if s else "?"


def _at_least(value: float, limit: float | None) -> str:
    if limit is None:
        return "-"
    return f">= {limit:g}: {'met' if value >= limit else 'MISSED'}"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _verdict(value: float, limit: float | None, fmt: str = "{:g}") -> str:
    if limit is None:
        return "-"
    return f"<= {fmt.format(limit)}: {'met' if value <= limit else 'MISSED'}"


def _load(r: dict) -> str:
    before, after = r.get("load_before"), r.get("load_after")
    return f"{before[0]:.1f} / {after[0]:.1f}" if before and after else "?"


def _loop(rows: dict) -> list[str]:
    lines = [
        "| case | device | batch | steps | hand (s) | vaelab (s) | hand (steps/s) | vaelab (steps/s) | ratio, "
        "median of pairs (min-max) | ratio of minima | target | load before/after |",
        "|" + "---|" * 12,
    ]
    for name, r in rows.items():
        seconds = r.get("seconds", {})
        lines.append(
            f"| {name} | {r['device']} | {r['batch_size']} | {r['steps']} | {_seconds(seconds.get('hand'))} | "
            f"{_seconds(seconds.get('vaelab'))} | {r['steps_per_s']['hand']:.0f}"
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


def _seed_parallel(rows: dict) -> list[str]:
    lines = [
        "| case | overrides | batch | single runs | S | steps per seed | single run (CPU s) | stacked S (CPU s) | "
        "seed throughput S x single / stacked, CPU, median (min-max) | same, wall time, median | target | "
        "load before/after |",
        "|" + "---|" * 12,
    ]
    notes = []
    for name, r in rows.items():
        limit = r.get("targets", {}).get("seed_ratio_s5")
        for row in r["rows"]:
            ratio = {"median": row["seed_throughput_ratio"], "min": min(row["ratios"]), "max": max(row["ratios"])}
            target = _at_least(ratio["median"], limit if row["members"] == 5 else None)
            lines.append(
                f"| {name} | {' '.join(r['overrides']) or '(defaults)'} | {r['batch_size']} | "
                f"{'compiled' if r['compile'] else 'eager'} | {row['members']} | {r['steps']} | "
                f"{_median(row['single_run_cpu_s']):.3g} | {_median(row['stacked_cpu_s']):.3g} | "
                f"{_range(ratio, '{:.2f}')} | {_median(row['wall_ratios']):.2f} | {target} | {_load(r)} |"
            )
        for row in r["rows"]:
            if "per_step_ratio" in row:
                k, ratios = row["short_steps"], row["per_step_ratios"]
                notes.append(
                    f"{name}, S = {row['members']}: the steps after the first {k} alone (each fit's fixed cost taken "
                    f"out: the time at {r['steps']} steps less that at {k}, paired within a repetition) give "
                    f"{row['per_step_ratio']:.2f} ({min(ratios):.2f}-{max(ratios):.2f}), what a long run approaches; "
                    f"single run {_median(row['single_short_cpu_s']):.3g} s CPU and stacked "
                    f"{_median(row['stacked_short_cpu_s']):.3g} s CPU at {k} steps."
                )
        if r["compile"] and r.get("first_single_run_s") and r["rows"]:
            first, later = r["first_single_run_s"], _median(r["rows"][0]["single_run_cpu_s"])
            notes.append(
                f"{name}: compiled (compile=true). The one-off compile is not in the ratios: the first (warm-up) "
                f"single run took {first['cpu']:.1f} s CPU ({first['wall']:.1f} s wall) against {later:.2f} s CPU "
                f"for a later one, so about {first['cpu'] - later:.0f} s CPU of compiling, once per process."
                + "".join(
                    f" The first stacked run at S = {row['members']} took {row['first_stacked_run_s']['cpu']:.1f} s "
                    f"CPU against {_median(row['stacked_cpu_s']):.2f} s CPU for a later one."
                    for row in r["rows"]
                    if "first_stacked_run_s" in row
                )
            )
    return lines + (["", *notes] if notes else [])


def _linear(probes: list[dict]) -> str:
    """Whether peak RSS grows no more than linearly in S: the MB per member between the two largest S may be at
    most 1.25 x the MB per further member from S = 1 to the second largest S, + 20 MB of allocator noise spread
    over that last step. Faster than linear growth makes the last step the steepest."""
    points = sorted((p["members"], p["peak_rss_mb"]) for p in probes)
    if len(points) < 3 or points[0][0] != 1:
        return "too few S values to judge"
    (s1, m1), (sa, ma), (sb, mb) = points[0], points[-2], points[-1]
    before, last = (ma - m1) / (sa - s1), (mb - ma) / (sb - sa)
    allowed = 1.25 * max(before, 0.0) + 20 / (sb - sa)
    return (
        f"{before:.1f} MB per further member up to S = {sa}, {last:.1f} MB per member from S = {sa} to {sb} "
        f"(allowed {allowed:.1f}): no more than linear: {'met' if last <= allowed else 'MISSED'}"
    )


def _memory(rows: dict) -> list[str]:
    lines = ["| case | S | peak RSS (MB) | above S = 1 (MB) | per further member (MB) |", "|---|---|---|---|---|"]
    verdicts = []
    for name, r in rows.items():
        probes = sorted(r.get("memory", []), key=lambda p: p["members"])
        base = next((p["peak_rss_mb"] for p in probes if p["members"] == 1), None)
        for probe in probes:
            growth = probe["peak_rss_mb"] - base if base is not None and probe["members"] > 1 else None
            above, per = ("-", "-") if growth is None else (f"{growth:.0f}", f"{growth / (probe['members'] - 1):.1f}")
            lines.append(f"| {name} | {probe['members']} | {probe['peak_rss_mb']:.0f} | {above} | {per} |")
        if probes:
            verdicts.append(f"- {name}: {_linear(probes)}")
    return [*lines, "", *verdicts] if verdicts else []


def _provenance(cases: dict[str, dict]) -> list[str]:
    """Where a table's numbers come from: machine and commit (once when the cases share them), the run.py command
    that re-runs them, and each case's date and own command."""
    prov = {name: r.get("provenance", {}) for name, r in cases.items()}
    shared, lines = {}, []
    for key, label in (("machine", "Machine"), ("commit", "Git commit")):
        values = {p.get(key, "not recorded") for p in prov.values()}
        if len(values) == 1:
            shared[key] = values.pop()
            lines.append(f"{label}: {shared[key]}  ")
    options = {p.get("suite_options") for p in prov.values()}
    one_command = len(options) == 1 and None not in options
    if one_command:
        lines.append(f"Re-run: `python scripts/bench/run.py {next(iter(options))} --cases {' '.join(cases)}`  ")
    lines.append("Each case, its date and its own command:")
    lines.append("")
    for name, p in prov.items():
        extra = [f"{p[key]}" for key in ("machine", "commit") if key not in shared and key in p]
        if "suite_options" in p and not one_command:
            extra.append(f"`python scripts/bench/run.py {p['suite_options']} --cases {name}`")
        tiny = " (TINY sizes: a check that it runs, not a measurement)" if p.get("tiny") else ""
        lines.append(
            f"- {name}: {p.get('date', 'date not recorded')}{tiny}; "
            + "; ".join([*extra, f"`{p['command']}`" if "command" in p else "command not recorded"])
        )
    return lines


SECTIONS = (  # (kind, title, table), in the order of the page
    ("loop", "Training loop: vaelab against a hand-written loop", _loop),
    ("seed_parallel", "Seed-parallel training: S seeds as one stacked model against S single runs", _seed_parallel),
    ("diagnostics", "Cost of each diagnostic", None),
    ("default_run", "Default runs: diagnostics share and peak memory", _default_runs),
    ("sweep", "Sweep throughput by launcher", None),
)
ONE_PER_CASE = {"diagnostics": _diagnostics, "sweep": _sweep}  # a table per case of these kinds


def sections(results: dict, level: str = "##", provenance: bool = False) -> list[str]:
    """A section per kind of case (its table; with `provenance`, where its numbers come from); then the cases
    skipped or failed."""
    kinds: dict[str, dict] = {}
    other = []
    for name, r in results["cases"].items():
        if "kind" in r:
            kinds.setdefault(r["kind"], {})[name] = r
        else:
            other.append(f"- {name}: {'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR: ' + r['error']}")
    lines: list[str] = []
    for kind, title, table in SECTIONS:
        if kind not in kinds:
            continue
        lines += [f"{level} {title}", ""]
        if table is not None:
            lines += [*table(kinds[kind]), ""]
        else:
            for r in kinds[kind].values():
                lines += [*ONE_PER_CASE[kind](r), ""]
        if kind == "seed_parallel" and (memory := _memory(kinds[kind])):
            lines += [
                "Peak memory against S (one fresh process per S trains the stacked members; S = 1 is the baseline):",
                "",
                *memory,
                "",
            ]
        if provenance:
            lines += [*_provenance(kinds[kind]), ""]
    if other:
        lines += [f"{level} Not measured", "", *other, ""]
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
        "",
    ]
    return "\n".join(head + sections(results)).rstrip("\n") + "\n"


PAGE_HEAD = """# Performance

How fast vaelab trains and evaluates, as its benchmark suite ([scripts/bench](../scripts/bench)) measures it.
Everything down to the marker below is generated: `python scripts/bench/run.py` writes its results to
`outputs/bench/bench.json` (run outputs: git-ignored, never committed) and `{command}` writes them here, so a
table changes only when its benchmark is re-run. Each table says its machine, load, date, git commit and the
command that re-runs it. A load average above the core count means other jobs competed for the CPU: absolute
times are then slow and noisy, ratios of runs paired within one invocation much less so. The design, how the
suite measures, and what the numbers mean are written by hand below the tables.
"""


def merged(paths: list[Path]) -> dict:
    """The bench.json files at `paths` as one (a later file's case replaces an earlier one's)."""
    results: dict = {"cases": {}}
    for path in paths:
        data = json.loads(path.read_text())
        results = {**results, **{k: v for k, v in data.items() if k != "cases"}, "cases": results["cases"]}
        results["cases"].update(data.get("cases", {}))
    return results


def page(results: dict, command: str) -> str:
    """The generated part of docs/performance.md (above the marker)."""
    return PAGE_HEAD.format(command=command) + "\n" + "\n".join(sections(results, "##", provenance=True))


def write_performance_page(results: dict, path: Path, command: str) -> None:
    """Replaces the part of the page at `path` above MARKER by `page(results)`, keeping what follows MARKER."""
    if path.is_file() and MARKER not in path.read_text():
        raise SystemExit(f"{path} has no marker line {MARKER!r}: add it above the hand-written part first")
    write_page(path, page(results, command))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench.json file(s) written by run.py")
    parser.add_argument("--page", type=Path, help="write the tables above the marker of this page")
    args = parser.parse_args()
    results = merged(args.results)
    if args.page is None:
        print(markdown(results), end="")
        return
    command = shlex.join(["python", "scripts/bench/report.py", *map(str, args.results), "--page", str(args.page)])
    write_performance_page(results, args.page, command)
    print(f"wrote the tables of {args.page} from {len(results['cases'])} cases", flush=True)


if __name__ == "__main__":
    main()
