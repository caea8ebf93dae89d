"""vaelab's benchmark suite: every case in its own process, results in <out>/bench.json and <out>/bench.md.

Cases (see CASES): the training-loop overhead against a hand-written loop (synthetic VAE at batch 1024 and
128, the MNIST VAE at batch 128, the iVAE at batch 64), the cost of each diagnostic on its default evaluation
set, default runs (wall time, the share of it spent in diagnostics, peak memory), and sweep throughput
(sequential vs joblib with 2 jobs). Variants inside a case are interleaved over repetitions after a warm-up;
medians and min-max are reported, with the load average before and after each case (a load above the core
count means other processes competed for the CPU and the numbers are noisy).

    python scripts/bench/run.py --out bench                     # everything, ~12-15 min on a quiet 2-core CPU
    python scripts/bench/run.py --out bench --cases loop        # the loop cases only (names or prefixes)
    python scripts/bench/run.py --out bench_gpu --device cuda   # the loop cases on the GPU
    python scripts/bench/run.py --out /tmp/b --tiny             # seconds-sized versions (tests)

MNIST cases need the MNIST files: ``--data-dir`` (default: $VAELAB_DATA_DIR, else ../shared/data beside the
checkout); without them they are skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import load_average, machine
from report import markdown

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass(frozen=True)
class Case:
    """One benchmark process: `script` with `args`; `tiny` replaces `args` for --tiny. `needs` are files of the
    checkout the case needs (a model or dataset that has not landed is skipped); `mnist`: needs the files."""

    name: str
    script: str
    args: tuple[str, ...]
    tiny: tuple[str, ...]
    needs: tuple[str, ...] = ()
    mnist: bool = False
    gpu: bool = False  # also run with --device cuda
    timeout_s: int = 900
    targets: dict = field(default_factory=dict)


SMALL_SYNTH = ("data.n_samples=2000",)
SMALL_MNIST = ("data.n_train=1024", "data.n_val=512")
CASES = (
    Case(
        "loop_synthetic_b1024",
        "loop.py",
        ("--epochs", "100", "--", "data.batch_size=1024"),
        ("--epochs", "2", "--reps", "1", "--", "data.batch_size=256", *SMALL_SYNTH),
        gpu=True,
        targets={"ratio": 1.10},
    ),
    Case(
        "loop_synthetic_b128",
        "loop.py",
        ("--epochs", "50", "--", "data.batch_size=128"),
        ("--epochs", "2", "--reps", "1", "--", "data.batch_size=128", *SMALL_SYNTH),
        gpu=True,
        targets={"ratio": 1.25},
    ),
    Case(
        "loop_mnist_b128",
        "loop.py",
        ("--epochs", "5", "--reps", "3", "--", "experiment=vae_mnist"),
        ("--epochs", "1", "--reps", "1", "--", "experiment=vae_mnist", *SMALL_MNIST),
        mnist=True,
        gpu=True,
        targets={"ratio": 1.10},
    ),
    Case(
        "loop_ivae_b64",
        "loop.py",
        ("--epochs", "5", "--reps", "3", "--", "experiment=ivae", "compile=false"),
        ("--epochs", "1", "--reps", "1", "--", "experiment=ivae", "compile=false", "data.points_per_segment=100"),
        needs=("conf/experiment/ivae.yaml", "src/vaelab/models/ivae.py"),
        gpu=True,
    ),
    Case(
        "diagnostics",
        "diagnostics.py",
        ("--reps", "3"),
        ("--reps", "1", "--size", "0.05"),
        targets={"seconds": {"MI": 30.0, "IW-NLL": 30.0}},
    ),
    Case(
        "default_synthetic",
        "default_run.py",
        (),
        ("--", "trainer.max_epochs=2", *SMALL_SYNTH),
        targets={"diagnostics_share": 0.05},
    ),
    Case(
        "default_mnist",
        "default_run.py",
        ("--", "experiment=vae_mnist"),
        ("--", "experiment=vae_mnist", "trainer.max_epochs=1", *SMALL_MNIST),
        mnist=True,
        targets={"diagnostics_share": 0.05, "peak_rss_mb": 1500},
    ),
    Case("sweep", "sweep.py", ("--reps", "2"), ("--reps", "1", "--grid", "seed=0,1", "--epochs", "1", *SMALL_SYNTH)),
)


def default_data_dir() -> str | None:
    for candidate in (os.environ.get("VAELAB_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return str(candidate)
    return None


def with_data_dir(args: list[str], data_dir: str | None, script: str) -> list[str]:
    """The MNIST file location goes in as a config override (or as --data-dir for the diagnostics case)."""
    if script == "diagnostics.py":
        return [*args, *(["--data-dir", data_dir] if data_dir else [])]
    if data_dir is None:
        return args
    return args + ([f"paths.data_dir={data_dir}"] if "--" in args else ["--", f"paths.data_dir={data_dir}"])


def run_case(case: Case, args: argparse.Namespace) -> dict:
    """Runs one case in a fresh process; its JSON, or {"skipped"/"error": reason}."""
    missing = [p for p in case.needs if not (REPO / p).exists()]
    if missing:
        return {"skipped": f"not in this checkout yet: {', '.join(missing)}"}
    if case.mnist and not (args.data_dir and (Path(args.data_dir) / "mnist").is_dir()):
        return {"skipped": f"no mnist/ under --data-dir {args.data_dir} (pass --data-dir or set VAELAB_DATA_DIR)"}
    case_args = list(case.tiny if args.tiny else case.args)
    if case.mnist or case.script == "diagnostics.py":
        case_args = with_data_dir(case_args, args.data_dir, case.script)
    if args.scale != 1 and "--epochs" in case_args:
        at = case_args.index("--epochs") + 1
        case_args[at] = str(max(1, round(int(case_args[at]) * args.scale)))
    flags = ["--device", args.device] if args.device != "cpu" else []
    if args.reps is not None and case.script == "loop.py" and not args.tiny:
        flags += ["--reps", str(args.reps)]
    cut = case_args.index("--") if "--" in case_args else len(case_args)
    case_args = [*case_args[:cut], *flags, *case_args[cut:]]  # after the case's own flags: these win
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(HERE / case.script), "--json", str(out), *case_args]
        print(f"[bench] {case.name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=case.timeout_s,
                cwd=tmp,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {case.timeout_s} s"}
        elapsed = round(time.perf_counter() - start, 1)
        if proc.returncode != 0 or not out.is_file():
            return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}", "case_wall_s": elapsed}
        return {**json.loads(out.read_text()), "case_wall_s": elapsed}


def selected(names: list[str] | None, device: str) -> list[Case]:
    cases = [c for c in CASES if device == "cpu" or c.gpu]
    if names:
        cases = [c for c in cases if any(c.name == n or c.name.startswith(n) for n in names)]
        if not cases:
            raise SystemExit(f"no case matches {names}; the cases: {[c.name for c in CASES]}")
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--out", required=True, help="folder for bench.json and bench.md")
    parser.add_argument("--cases", nargs="+", help="case names or prefixes (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: the loop cases on the GPU")
    parser.add_argument("--reps", type=int, help="timed repetitions of the loop cases (default: each case's)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the loop cases' epochs")
    parser.add_argument("--data-dir", default=default_data_dir(), help="folder holding mnist/")
    parser.add_argument("--tiny", action="store_true", help="seconds-sized cases (checks that the suite runs)")
    args = parser.parse_args()
    args.data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None  # cases run in a temp dir
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {
        "machine": machine(),
        "device": args.device,
        "tiny": args.tiny,
        "load_at_start": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cases": {},
    }
    for case in selected(args.cases, args.device):
        result = run_case(case, args)
        results["cases"][case.name] = {**result, "targets": case.targets}
        status = result.get("skipped") or result.get("error") or f"done in {result['case_wall_s']} s"
        print(f"[bench] {case.name}: {status}", flush=True)
        (out / "bench.json").write_text(json.dumps(results, indent=2))  # after every case: partial results
    results["suite_wall_s"] = round(time.time() - started, 1)
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    (out / "bench.md").write_text(markdown(results))
    print(markdown(results))
    failed = [name for name, r in results["cases"].items() if "error" in r]
    if failed:
        raise SystemExit(f"[bench] failed cases: {failed} (see {out / 'bench.json'})")


if __name__ == "__main__":
    main()
