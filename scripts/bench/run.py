"""vaelab's benchmark suite: every case in its own process, results in <out>/bench.json and <out>/bench.md.

Cases (see CASES): the training-loop overhead against a hand-written loop (synthetic VAE at batch 1024 and
128, the MNIST VAE at batch 128, the iVAE at batch 64), the cost of each diagnostic on its default evaluation
set, default runs (wall time, the share of it spent in diagnostics, peak memory), and sweep throughput
(sequential vs joblib with 2 jobs), and seed-parallel training (S stacked members against S sequential single
runs: the synthetic VAE at batch 128 and 1024, the iVAE eager and compiled).
Every case records its provenance (date, git commit, machine, the exact command); results accumulate in
<out>/bench.json over invocations (``--fresh`` starts over), and report.py writes docs/performance.md from it.
Variants inside a case are interleaved over repetitions after a warm-up;
medians and min-max are reported, with the load average before and after each case (a load above the core
count means other processes competed for the CPU and the numbers are noisy).

    python scripts/bench/run.py                                 # everything into outputs/bench (git-ignored)
    python scripts/bench/run.py --cases loop seed_parallel      # some cases only (names or prefixes)
    python scripts/bench/report.py outputs/bench/bench.json --page docs/performance.md   # the page's tables
    python scripts/bench/run.py --out bench_gpu --device cuda   # the loop cases on the GPU
    python scripts/bench/run.py --out /tmp/b --tiny             # seconds-sized versions (tests)

MNIST cases need the MNIST files: ``--data-dir`` (default: $VAELAB_DATA_DIR, else ../shared/data beside the
checkout); without them they are skipped with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import load_average, machine
from report import markdown
from vaelab.reproduce.document import git_commit
from vaelab.reproduce.document import machine as machine_line

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
MEMORY = ("--memory-members", "2", "10")  # the S values of the memory probes besides 1 and the timed ones
TINY_MEMBERS = ("--members", "2", "--steps", "5", "--reps", "1")  # the seed-parallel cases under --tiny
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
    # seed-parallel training (issue 22): S stacked members against S sequential single runs, seed throughput
    Case(
        "seed_parallel_synthetic_b128",
        "seed_parallel.py",
        ("--members", "5", "20", "--steps", "300", *MEMORY, "--", "data.batch_size=128"),
        (*TINY_MEMBERS, "--memory-steps", "2", "--", "data.batch_size=128"),
        needs=("src/vaelab/seed_parallel",),
        targets={"seed_ratio_s5": 2.0},
    ),
    Case(
        "seed_parallel_synthetic_b1024",
        "seed_parallel.py",
        ("--members", "5", "20", "--steps", "150", *MEMORY, "--", "data.batch_size=1024"),
        (*TINY_MEMBERS, "--memory-steps", "2", "--", "data.batch_size=256"),
        needs=("src/vaelab/seed_parallel",),
        targets={"seed_ratio_s5": 1.0},
    ),
    Case(
        "seed_parallel_ivae_b64",
        "seed_parallel.py",
        ("--members", "5", "20", "--steps", "200", *MEMORY, "--", "experiment=ivae", "compile=false"),
        (*TINY_MEMBERS, "--memory-steps", "2", "--", "experiment=ivae", "compile=false", "data.points_per_segment=100"),
        needs=("src/vaelab/seed_parallel", "conf/experiment/ivae.yaml"),
        timeout_s=1500,
        targets={"seed_ratio_s5": 2.0},
    ),
    Case(  # compile=true: the single runs and the stacked loss compiled
        "seed_parallel_ivae_b64_compiled",
        "seed_parallel.py",
        ("--members", "5", "20", "--steps", "200", *MEMORY, "--", "experiment=ivae", "compile=true"),
        (*TINY_MEMBERS, "--memory-steps", "0", "--", "experiment=ivae", "compile=true", "data.points_per_segment=100"),
        needs=("src/vaelab/seed_parallel", "conf/experiment/ivae.yaml"),
        timeout_s=1500,
        targets={"seed_ratio_s5": 2.0},
    ),
    Case(  # the same at S = 5 with the per-fit fixed costs taken out: what a long (60-epoch) run approaches
        "seed_parallel_ivae_b64_compiled_per_step",
        "seed_parallel.py",
        (
            "--members",
            "5",
            "--steps",
            "200",
            "--short-steps",
            "40",
            "--reps",
            "2",
            "--memory-steps",
            "0",
            "--",
            "experiment=ivae",
            "compile=true",
        ),
        (
            "--members",
            "2",
            "--steps",
            "6",
            "--short-steps",
            "3",
            "--reps",
            "1",
            "--memory-steps",
            "0",
            "--",
            "experiment=ivae",
            "compile=true",
            "data.points_per_segment=100",
        ),
        needs=("src/vaelab/seed_parallel", "conf/experiment/ivae.yaml"),
        timeout_s=1200,
    ),
)

STEP_FLAGS = ("--epochs", "--steps")  # what --scale multiplies
REPS_SCRIPTS = ("loop.py", "seed_parallel.py")  # the scripts --reps applies to


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
    for flag in STEP_FLAGS:
        if args.scale != 1 and flag in case_args:
            at = case_args.index(flag) + 1
            case_args[at] = str(max(1, round(int(case_args[at]) * args.scale)))
    flags = ["--device", args.device] if args.device != "cpu" else []
    if args.reps is not None and case.script in REPS_SCRIPTS and not args.tiny:
        flags += ["--reps", str(args.reps)]
        if "--reps" in case_args:  # the case's own count gives way (one --reps in the recorded command)
            at = case_args.index("--reps")
            del case_args[at : at + 2]
    cut = case_args.index("--") if "--" in case_args else len(case_args)
    case_args = [*case_args[:cut], *flags, *case_args[cut:]]  # after the case's own flags: these win
    provenance = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit(),
        "machine": machine_line(),
        "command": shlex.join(["python", f"scripts/bench/{case.script}", *map(shown_path, case_args)]),
        "suite_options": suite_options(args),  # run.py <these> --cases <name> re-runs the case
        "tiny": args.tiny,
    }
    load_before = load_average()
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
                # a cold torch.compile, as a user's first run has it (inductor's cache in the case's temp dir)
                env={**os.environ, "PYTHONWARNINGS": "ignore", "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")},
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {case.timeout_s} s", "provenance": provenance}
        elapsed = round(time.perf_counter() - start, 1)
        if proc.returncode != 0 or not out.is_file():
            return {
                "error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}",
                "case_wall_s": elapsed,
                "provenance": provenance,
            }
        result = json.loads(out.read_text())
        return {
            "load_before": load_before,
            "load_after": load_average(),
            **result,  # a case's own load figures (around its timed part) win
            "case_wall_s": elapsed,
            "provenance": provenance,
        }


def commit() -> str:
    """The checkout's git commit (marked when tracked files have uncommitted changes)."""
    with contextlib.chdir(REPO):
        return git_commit()


def shown_path(arg: str) -> str:
    """An argument as the page shows it: a path inside or beside the checkout made relative to the checkout."""
    prefix, sep, value = arg.rpartition("=") if "=" in arg else ("", "", arg)
    if value.startswith("/") and Path(value).is_relative_to(REPO.parent):
        value = os.path.relpath(value, REPO)
    return prefix + sep + value


def suite_options(args: argparse.Namespace) -> str:
    """The options of this run.py invocation that shape a case's result (``--cases`` aside)."""
    cmd = ["--out", shown_path(str(Path(args.out).resolve()))]
    if args.device != "cpu":
        cmd += ["--device", args.device]
    if args.reps is not None:
        cmd += ["--reps", str(args.reps)]
    if args.scale != 1:
        cmd += ["--scale", f"{args.scale:g}"]
    if args.tiny:
        cmd.append("--tiny")
    return shlex.join(cmd)


def save(results: dict, done: dict, path: Path, fresh: bool) -> None:
    """Writes `results` with the cases of this invocation (`done`) over those already in `path` (each keeps its
    provenance; read again before every write, so invocations sharing --out keep each other's cases)."""
    earlier = json.loads(path.read_text()).get("cases", {}) if path.is_file() and not fresh else {}
    results["cases"] = {**earlier, **done}
    path.write_text(json.dumps(results, indent=2))


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
    parser.add_argument("--out", default="outputs/bench", help="folder for bench.json and bench.md (git-ignored)")
    parser.add_argument("--fresh", action="store_true", help="drop the cases of an earlier bench.json in --out")
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
    done: dict = {}
    for case in selected(args.cases, args.device):
        result = run_case(case, args)
        done[case.name] = {**result, "targets": case.targets}
        status = result.get("skipped") or result.get("error") or f"done in {result['case_wall_s']} s"
        print(f"[bench] {case.name}: {status}", flush=True)
        save(results, done, out / "bench.json", args.fresh)  # after every case: partial results
    results["suite_wall_s"] = round(time.time() - started, 1)
    save(results, done, out / "bench.json", args.fresh)
    (out / "bench.md").write_text(markdown(results))
    print(markdown(results))
    failed = [name for name, r in results["cases"].items() if "error" in r]
    if failed:
        raise SystemExit(f"[bench] failed cases: {failed} (see {out / 'bench.json'})")


if __name__ == "__main__":
    main()
