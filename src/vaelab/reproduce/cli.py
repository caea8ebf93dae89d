"""``vaelab-reproduce <study> [options] [overrides]``: run a paper reproduction and write its results page.

Every setting of the study is one resumable ``vaelab-train -m`` multirun over its seeds in its own folder under
``--out`` (default ``outputs/reproduce/<study>``, ``$VAELAB_LOG_DIR`` instead of ``outputs``); the seeds of a
setting whose model stacks (vaelab.seed_parallel) train in one job as one stacked model, ``seeds=[...]``
(``--one-process-per-seed``: a job per seed); running again finishes what is missing, ``--table-only`` rebuilds the
page from the run files. The page of the chosen settings (tables, verdicts, failures, figures, commands, git commit,
date, machine) goes to ``<out>/table.md``. The runs are then copied into the results archive beside ``--doc``
(default ``docs/results/<study>.md`` unless ``--out`` is given; archive ``docs/results/runs/<study>/``,
vaelab.reproduce.archive), and
``--doc`` is rebuilt from the archive with every setting of the study (its figures in ``docs/results/figures/``),
so that runs made at different times (``--only``, ``--half``) add up to one page. ``--full`` and ``--smoke`` archive
nothing and write ``--doc`` only when it is given, from their own runs. The exit code is 1 when the chosen
settings fail.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from vaelab.reproduce import Runs, Setting, run_setting, shown_command, stacked_seeds, sweep_dir
from vaelab.reproduce.archive import archive_note, archive_runs, with_archived_seeds
from vaelab.reproduce.document import provenance, write_page
from vaelab.reproduce.plan import plan, smoke
from vaelab.reproduce.study import Study

STUDIES = {
    "manifold": "Zheng et al. (2022): manifold dimensions with VAEs and CVAEs (T0-T8)",
    "ivae": "Khemakhem et al. (2020): iVAE vs VAE vs beta-VAE, MCC",
    "skip": "Dieng et al. (2019): standard vs skip decoders (MNIST, text)",
    "generalization": "the defaults on held-out settings (tuning / held_out halves)",
}
USAGE = (
    "usage: vaelab-reproduce <study> [options] [overrides]\n\nstudies:\n"
    + "".join(f"  {name:<15} {what}\n" for name, what in STUDIES.items())
    + "\n`vaelab-reproduce <study> --help` lists the options."
)


def load(name: str) -> Study:
    return importlib.import_module(f"vaelab.reproduce.{name}").STUDY


def seeds_arg(text: str) -> int | list[int]:
    """'N' (an int: N seeds per setting, counted from its first default seed) or 'a,b,...' (these seeds)."""
    try:
        if "," not in text:
            return int(text)
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        message = f"--seeds {text!r}: give a count (3) or comma-separated seeds (10,11,12)"
        raise argparse.ArgumentTypeError(message) from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def parser(study: Study) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"vaelab-reproduce {study.name}", description=study.title)
    p.add_argument(
        "--half",
        choices=(*study.tables(), "all"),
        default="all",
        metavar="HALF",
        help=f"only the settings of this half or table ({', '.join(study.tables())}; default all)",
    )
    p.add_argument(
        "--seeds",
        type=seeds_arg,
        default=None,
        help="N: seeds s0..s0+N-1 per setting (s0: its first default seed); a,b,c: exactly these",
    )
    p.add_argument("--n-jobs", type=int, default=1, help="jobs at once (joblib launcher, one thread each)")
    p.add_argument(
        "--jobs-per-setting",
        type=int,
        default=None,
        help="jobs of one setting at once (default min(--n-jobs, seeds)); with fewer than --n-jobs, "
        "settings run side by side",
    )
    p.add_argument(
        "--one-process-per-seed",
        action="store_true",
        help="train each seed in its own job (default: the seeds of a setting whose model stacks train in one "
        "job as one stacked model, seeds=[...])",
    )
    p.add_argument("--out", type=Path, default=None, help=f"sweeps folder (default outputs/reproduce/{study.name})")
    p.add_argument(
        "--only",
        default=None,
        help="only the settings whose label contains this text (and the settings they are compared with)",
    )
    if study.has_full:
        p.add_argument("--full", action="store_true", help="the paper's sizes (hours on a CPU)")
    p.add_argument("--smoke", action="store_true", help="every setting shrunk to two epochs, one seed: plumbing only")
    p.add_argument("--table-only", action="store_true", help="rebuild the page from the run files, run nothing")
    p.add_argument("--list", action="store_true", help="print each setting's vaelab-train command, run nothing")
    p.add_argument("--plan", action="store_true", help="print the estimated optimizer steps per run, run nothing")
    p.add_argument(
        "--doc",
        type=Path,
        default=None,
        help=f"the results page, rebuilt from the archive in its folder's runs/{study.name}/ (default "
        f"docs/results/{study.name}.md; none for --full/--smoke/--out)",
    )
    p.add_argument("overrides", nargs="*", help="extra overrides for every job, e.g. trainer=gpu")
    return p


def with_seeds(setting: Setting, seeds: int | list[int] | None) -> Setting:
    if seeds is None:
        return setting
    chosen = seeds if isinstance(seeds, list) else [setting.seeds[0] + i for i in range(seeds)]
    return replace(setting, seeds=chosen)


def choose(settings: Sequence[Setting], half: str, only: str | None) -> list[Setting]:
    """The settings of `half` whose label (or sweep label) contains `only`, with the settings they compare with."""
    picked = {
        s.label for s in settings if half in ("all", s.table) and (only is None or only in s.label or only in s.sweep)
    }
    picked |= {s.reference for s in settings if s.label in picked and s.reference}
    return [s for s in settings if s.label in picked]


def one_per_sweep(settings: Sequence[Setting], out: Path) -> list[Setting]:
    """The first setting of each sweep folder (rows read from one multirun run it once)."""
    return list({sweep_dir(out, s): s for s in reversed(settings)}.values())[::-1]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in STUDIES:
        print(f"vaelab-reproduce: unknown study {name!r}; choose one of: {', '.join(STUDIES)}", file=sys.stderr)
        return 2
    study = load(name)
    cli = parser(study)
    args = cli.parse_args(rest)
    full = getattr(args, "full", False)
    if args.n_jobs < 1 or (args.jobs_per_setting is not None and args.jobs_per_setting < 1):
        cli.error("--n-jobs and --jobs-per-setting must be >= 1")
    if isinstance(args.seeds, int) and args.seeds < 1:
        cli.error("--seeds must be >= 1")
    settings = [with_seeds(s, args.seeds) for s in study.settings(full)]
    settings = [smoke(s) for s in settings] if args.smoke else settings
    chosen = choose(settings, args.half, args.only)
    if not chosen:
        cli.error(f"--half {args.half} --only {args.only!r} matches none of: {', '.join(s.label for s in settings)}")
    suffix = ("_full" if full else "") + ("_smoke" if args.smoke else "")
    out = args.out or Path(os.environ.get("VAELAB_LOG_DIR", "outputs")) / "reproduce" / (name + suffix)
    default_doc = not (full or args.smoke or args.out)  # a study run into its own --out folder is a scratch run
    doc = args.doc or (Path("docs") / "results" / f"{name}.md" if default_doc else None)
    per_setting = args.jobs_per_setting or min(args.n_jobs, max(len(s.seeds) for s in chosen))
    sweeps = one_per_sweep(chosen, out)
    runs = Runs(out, settings)
    stacked = {
        s.label: [] if args.one_process_per_seed or args.table_only else stacked_seeds(s, runs, args.overrides)
        for s in ([] if args.plan else sweeps)
    }
    # the commands that run each setting from scratch (the page's record of how its runs are made)
    commands = [
        shown_command(
            s,
            out,
            per_setting,
            args.overrides,
            [] if args.one_process_per_seed or args.plan else stacked_seeds(s, None, args.overrides),
        )
        for s in sweeps
    ]

    if args.list:
        print("\n".join(f"{s.label}: {c}" for s, c in zip(sweeps, commands, strict=True)))
        return 0
    if args.plan:
        print(f"Plan ({len(sweeps)} multiruns; estimated optimizer steps per run):")
        print("\n".join(plan(sweeps, args.overrides)))
        return 0
    if not args.table_only:
        # settings whose every seed has a completed run (stacked or not) are done: nothing to finish
        todo = [s for s in sweeps if len(runs.completed(s)) < len(s.seeds)]
        one_job_each = all(stacked[s.label] for s in todo)  # a stacked setting is one job on one core
        with ThreadPoolExecutor(args.n_jobs if one_job_each else max(1, args.n_jobs // per_setting)) as pool:
            list(pool.map(lambda s: run_setting(s, out, per_setting, args.overrides, stacked[s.label]), todo))

    runs = Runs(out, settings)  # read again: the runs just made
    invocation = shlex.join(["vaelab-reproduce", name, *rest])
    archive = doc.parent / "runs" / name if doc is not None and not (full or args.smoke) else None
    page_dir = out if archive or doc is None else doc.parent
    figures = study.figures(chosen, runs, page_dir / "figures")
    text, failed = study.page(
        chosen, runs, figures, page_dir, provenance(invocation, commands, out, args.table_only), args.smoke
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    if archive is not None:
        archive_runs(runs, settings, archive)
        write_page(doc, archived_page(study, archive, doc, invocation, out, args.overrides))
    elif doc is not None:
        write_page(doc, text)
    print(text + f"\nWritten: {out / 'table.md'}" + (f", {doc}" if doc else ""))
    return 1 if failed else 0


def archived_page(study: Study, archive: Path, doc: Path, invocation: str, out: Path, overrides: Sequence[str]) -> str:
    """The results page of every setting of the study, from the run files in its archive (`doc`'s figures in
    its folder's figures/; the commands as run into `out`)."""
    shown = with_archived_seeds(study.settings(False), archive)
    runs = Runs(archive, shown)
    commands = [
        shown_command(s, out, 1, overrides, stacked_seeds(s, None, overrides)) for s in one_per_sweep(shown, out)
    ]
    figures = study.figures(shown, runs, doc.parent / "figures")
    note = provenance(invocation, commands, archive, True, archive_note(archive) or "- (no run file yet)")
    return study.page(shown, runs, figures, doc.parent, note, False)[0]


def entry() -> None:
    """The console script."""
    sys.exit(main())
