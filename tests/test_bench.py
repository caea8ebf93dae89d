"""The benchmark suite (scripts/bench) runs end to end on tiny sizes and writes a valid bench.json and bench.md.
Behaviour only: the timings themselves are not checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

pytestmark = pytest.mark.integration  # runs the benchmark scripts in subprocesses

RUN = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "run.py"


def bench(out: Path, *args: str, timeout: int = 600) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--out", str(out), "--tiny", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def check_loop(r: dict) -> None:
    assert r["kind"] == "loop" and r["steps"] > 0 and r["seconds"]["hand"]["n"] == r["reps"]
    assert r["ratio"]["min"] <= r["ratio"]["median"] <= r["ratio"]["max"]
    assert r["steps_per_s"]["hand"] > 0 and r["steps_per_s"]["vaelab"] > 0


def test_tiny_suite_writes_json_and_markdown(tmp_path):
    results, md = bench(
        tmp_path / "out",
        "--cases",
        "loop_synthetic_b128",
        "default_synthetic",
        "loop_mnist",
        "--data-dir",
        str(tmp_path / "no_data"),
    )
    cases = results["cases"]
    assert set(cases) == {"loop_synthetic_b128", "default_synthetic", "loop_mnist_b128"}
    check_loop(cases["loop_synthetic_b128"])
    assert cases["loop_synthetic_b128"]["batch_size"] == 128
    run = cases["default_synthetic"]
    assert run["kind"] == "default_run" and run["diagnostics_runs"] >= 2  # validation at the end + test
    assert 0 < run["diagnostics_s"] < run["wall_s"] and 0 < run["diagnostics_share"] < 1 and run["peak_rss_mb"] > 0
    assert "no mnist/" in cases["loop_mnist_b128"]["skipped"]
    assert "## Training loop" in md and "| loop_synthetic_b128 | cpu | 128 |" in md
    assert "## Default runs" in md and "| default_synthetic |" in md
    assert "## Not measured" in md and "- loop_mnist_b128: skipped: no mnist/" in md


def test_unknown_case_is_an_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(RUN), "--out", str(tmp_path), "--cases", "nope"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "no case matches ['nope']" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"no MNIST files under {SHARED_DATA}")
def test_whole_tiny_suite_with_mnist_and_sweep(tmp_path):
    results, md = bench(tmp_path / "out", "--data-dir", str(SHARED_DATA), timeout=1200)
    cases = results["cases"]
    for name in ("loop_synthetic_b1024", "loop_synthetic_b128", "loop_mnist_b128"):
        check_loop(cases[name])
    metrics = {row["metric"] for row in cases["diagnostics"]["metrics"]}
    assert {"AD + AU", "KL per dim", "IW-NLL (K = 500)"} <= metrics
    assert cases["default_mnist"]["peak_rss_mb"] > 0
    assert cases["sweep"]["n_jobs"] == 2 and cases["sweep"]["throughput_ratio"] > 0
    assert all(f"## {section}" in md for section in ("Training loop", "Diagnostics", "Default runs", "Sweep"))
