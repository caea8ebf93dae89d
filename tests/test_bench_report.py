"""docs/performance.md is generated from the benchmark suite's result files (scripts/bench/report.py --page):
one table per benchmark with its provenance above the marker, the hand-written part below it kept. Small fake
results; no benchmark runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from vaelab.reproduce.document import MARKER

REPORT = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "report.py"  # scripts/bench is no package
_spec = importlib.util.spec_from_file_location("bench_report", REPORT)
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)

PROVENANCE = {
    "date": "2026-12-01 10:00 UTC",
    "commit": "abc123",
    "machine": "Test CPU, 2 cores",
    "suite_options": "--out outputs/bench",
    "tiny": False,
}
LOAD = {"load_before": [1.5, 1.0, 1.0], "load_after": [2.5, 1.0, 1.0]}


def loop_case() -> dict:
    summary = {"median": 6.0, "min": 5.5, "max": 7.0, "n": 3}
    return {
        "kind": "loop",
        "device": "cpu",
        "batch_size": 1024,
        "steps": 600,
        "seconds": {"hand": summary, "vaelab": {**summary, "median": 6.3}},
        "steps_per_s": {"hand": 100.0, "vaelab": 95.2},
        "ratio": {"median": 1.05, "min": 0.98, "max": 1.2, "n": 3},
        "ratio_of_minima": 1.01,
        "targets": {"ratio": 1.1},
        "provenance": {**PROVENANCE, "command": "python scripts/bench/loop.py --epochs 40 -- data.batch_size=1024"},
        **LOAD,
    }


def seed_case(compile_: bool, ratios5: list[float], memory: list[dict], per_step: dict | None = None) -> dict:
    per_step = per_step or {}
    row = lambda s, ratios: {  # noqa: E731
        "members": s,
        "seed_throughput_ratio": sorted(ratios)[1],
        "ratios": ratios,
        "wall_ratios": ratios,
        "single_run_cpu_s": [2.0, 2.1, 2.2],
        "stacked_cpu_s": [4.0, 4.1, 4.2],
        "peak_rss_mb": 600.0,
    }
    return {
        "kind": "seed_parallel",
        "overrides": ["experiment=ivae", f"compile={str(compile_).lower()}"],
        "batch_size": 64,
        "compile": compile_,
        "steps": 200,
        "reps": 3,
        "first_single_run_s": {"cpu": 62.0, "wall": 70.0},
        "rows": [
            {
                **row(5, ratios5),
                **per_step,
                **({"first_stacked_run_s": {"cpu": 30.0, "wall": 33.0}} if compile_ else {}),
            },
            row(20, [4.0, 4.4, 4.8]),
        ],
        "memory": memory,
        "targets": {"seed_ratio_s5": 2.0},
        "provenance": {**PROVENANCE, "command": "python scripts/bench/seed_parallel.py --members 5 20 -- x"},
        **LOAD,
    }


LINEAR = [
    {"members": 1, "peak_rss_mb": 500.0},
    {"members": 5, "peak_rss_mb": 540.0},
    {"members": 20, "peak_rss_mb": 650.0},
]
SUPERLINEAR = [
    {"members": 1, "peak_rss_mb": 500.0},
    {"members": 5, "peak_rss_mb": 520.0},
    {"members": 20, "peak_rss_mb": 900.0},
]


PER_STEP = {
    "short_steps": 40,
    "per_step_ratio": 0.45,
    "per_step_ratios": [0.4, 0.45, 0.5],
    "single_short_cpu_s": [1.5, 1.6, 1.7],
    "stacked_short_cpu_s": [3.0, 3.1, 3.2],
}


def results() -> dict:
    return {
        "machine": {"cpu_count": 2, "processor": "x86_64", "torch": "2.13", "python": "3.11"},
        "device": "cpu",
        "started": "2026-12-01 10:00:00",
        "cases": {
            "loop_synthetic_b1024": loop_case(),
            "seed_parallel_ivae_b64": seed_case(False, [2.5, 2.6, 2.9], LINEAR),
            "seed_parallel_ivae_b64_compiled": seed_case(True, [0.8, 0.9, 1.0], SUPERLINEAR, PER_STEP),
            "default_synthetic": {
                "kind": "default_run",
                "overrides": [],
                "wall_s": 22.9,
                "steps": 4500,
                "diagnostics_runs": 13,
                "diagnostics_s": 0.78,
                "diagnostics_share": 0.034,
                "peak_rss_mb": 478.0,
                "targets": {"diagnostics_share": 0.05},
                "provenance": {**PROVENANCE, "commit": "def456", "command": "python scripts/bench/default_run.py"},
                **LOAD,
            },
            "loop_mnist_b128": {"skipped": "no mnist/ under --data-dir x", "targets": {}},
        },
    }


OLD_PAGE = f"""# Performance

| stale | hand-kept table |
|---|---|
| 1 | 2 |

{MARKER}

## Design

Hand-written analysis, kept verbatim.
"""


def test_page_has_a_table_per_benchmark_with_provenance_and_keeps_the_hand_written_part(tmp_path):
    page = tmp_path / "performance.md"
    page.write_text(OLD_PAGE)
    report.write_performance_page(results(), page, "python scripts/bench/report.py b.json --page p.md")
    text = page.read_text()
    generated, marker, kept = text.partition(MARKER)
    assert marker and text.count(MARKER) == 1
    assert kept == OLD_PAGE.partition(MARKER)[2]  # the hand-written part, byte for byte
    assert "stale" not in generated and "`python scripts/bench/report.py b.json --page p.md`" in generated

    assert "## Training loop" in generated
    assert "| loop_synthetic_b1024 | cpu | 1024 | 600 | 6 (5.5-7) | 6.3 (5.5-7) | 100 | 95 | 1.05 (0.98-1.2) |" in text
    assert "<= 1.1: met | 1.5 / 2.5 |" in generated

    assert "## Seed-parallel training" in generated
    eager = "| seed_parallel_ivae_b64 | experiment=ivae compile=false | 64 | eager | 5 | 200 | 2.1 | 4.1 |"
    assert eager + " 2.60 (2.50-2.90) | 2.60 | >= 2: met | 1.5 / 2.5 |" in generated
    compiled = "| seed_parallel_ivae_b64_compiled | experiment=ivae compile=true | 64 | compiled | 5 | 200 |"
    assert compiled in generated and "0.90 (0.80-1.00) | 0.90 | >= 2: MISSED |" in generated
    assert "| eager | 20 | 200 | 2.1 | 4.1 | 4.40 (4.00-4.80) | 4.40 | - |" in generated  # targets: S = 5
    assert "about 60 s CPU of compiling" in generated  # 62 s first run - 2.1 s later one
    assert "The first stacked run at S = 5 took 30.0 s CPU against 4.10 s CPU for a later one." in generated
    assert "stacked run at S = 20" not in generated  # no warm-up recorded for it
    assert "seed_parallel_ivae_b64_compiled, S = 5: the steps after the first 40 alone" in generated
    assert "give 0.45 (0.40-0.50), what a long run approaches; single run 1.6 s CPU and stacked 3.1 s" in generated
    # memory: 40 MB for 4 further members, 150 MB for 19: on a line; 20 MB for 4, then 400 MB for 19: convex
    assert "| seed_parallel_ivae_b64 | 20 | 650 | 150 | 7.9 |" in generated
    assert "| seed_parallel_ivae_b64_compiled | 20 | 900 | 400 | 21.1 |" in generated
    line = "- seed_parallel_ivae_b64: 10.0 MB per further member up to S = 5, 7.3 MB per member from S = 5 to 20"
    assert line + " (allowed 13.8): no more than linear: met" in text
    assert "no more than linear: met" in text and "no more than linear: MISSED" in text

    assert "## Default runs" in generated and "| default_synthetic | (defaults) | 22.9 | 4500 |" in generated
    assert "## Not measured" in generated and "- loop_mnist_b128: skipped: no mnist/" in generated

    # provenance: machine, commit, the re-run command and each case's own command
    assert "Machine: Test CPU, 2 cores" in generated and "Git commit: abc123" in generated
    assert (
        "Re-run: `python scripts/bench/run.py --out outputs/bench --cases seed_parallel_ivae_b64 "
        "seed_parallel_ivae_b64_compiled`" in generated
    )
    assert "- loop_synthetic_b1024: 2026-12-01 10:00 UTC; `python scripts/bench/loop.py --epochs 40" in generated
    assert generated.index("## Training loop") < generated.index("## Seed-parallel") < generated.index("## Default")


def test_regenerating_replaces_the_tables_and_keeps_the_analysis(tmp_path):
    page = tmp_path / "performance.md"
    page.write_text(OLD_PAGE)
    first = results()
    report.write_performance_page(first, page, "cmd")
    first["cases"]["loop_synthetic_b1024"]["ratio"] = {"median": 1.5, "min": 1.4, "max": 1.6, "n": 3}
    report.write_performance_page(first, page, "cmd")
    text = page.read_text()
    assert "1.5 (1.4-1.6)" in text and "1.05 (0.98-1.2)" not in text and "<= 1.1: MISSED" in text
    assert text.count(MARKER) == 1 and text.endswith(OLD_PAGE.partition(MARKER)[2])


@pytest.mark.parametrize(
    ("peaks", "verdict"),
    [
        ({1: 500, 2: 510, 5: 540, 10: 590, 20: 690}, "met"),  # 10 MB per member
        ({1: 500, 2: 530, 5: 520, 10: 600, 20: 680}, "met"),  # noisy, but linear
        ({1: 500, 2: 501, 5: 525, 10: 600, 20: 900}, "MISSED"),  # S^2
        ({1: 500, 5: 500}, "too few"),
    ],
)
def test_memory_linearity_verdict(peaks, verdict):
    assert verdict in report._linear([{"members": s, "peak_rss_mb": float(m)} for s, m in peaks.items()])


def test_a_page_without_the_marker_is_refused(tmp_path):
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nall hand-written\n")
    with pytest.raises(SystemExit, match="no marker line"):
        report.write_performance_page(results(), page, "cmd")
    assert page.read_text() == "# Performance\n\nall hand-written\n"


def test_cli_merges_result_files_later_wins(tmp_path, monkeypatch):
    older, newer = results(), results()
    newer["cases"] = {"loop_synthetic_b1024": {**loop_case(), "ratio": {"median": 1.3, "min": 1.2, "max": 1.4}}}
    (tmp_path / "a.json").write_text(json.dumps(older))
    (tmp_path / "b.json").write_text(json.dumps(newer))
    page = tmp_path / "performance.md"
    page.write_text(OLD_PAGE)
    argv = ["report.py", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--page", str(page)]
    monkeypatch.setattr(sys, "argv", argv)
    report.main()
    text = page.read_text()
    assert "1.3 (1.2-1.4)" in text and "| default_synthetic |" in text  # b's loop, a's other cases
    assert f"`python scripts/bench/report.py {tmp_path / 'a.json'} {tmp_path / 'b.json'} --page {page}`" in text


def test_bench_md_has_the_seed_parallel_table():
    md = report.markdown(results())
    assert "## Seed-parallel training" in md and "| seed_parallel_ivae_b64 | 5 | 540 | 40 | 10.0 |" in md
    assert "Re-run:" not in md  # the provenance is the page's
