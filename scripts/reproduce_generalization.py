"""Held-out generalization study: do the defaults (chosen on the paper's settings) hold on settings that no
default was chosen on?

Families (every one in both halves):

- VAE (``model=vae``, ``data=synthetic_manifold``, trained like reproduce_manifold.py's T0 rows): r in 1..8,
  ambient d in r + 2..40, latent kappa in r + 2..20. Expected: active_dims == r.
- CVAE (``experiment=manifold_t1_cvae_std_prior``, linear condition c = A u[:, :t]) with other r, t and d.
  Expected: active_dims == r - t (metrics.json: true_expected_active_dims), t = r (AD 0) and t = 1 included.
- Discrete unions (``experiment=manifold_t5_union``) with other r_i lists. Expected: group_<i>_active_dims ==
  r_i for every class. (data=union_manifold rejects r_i = 0, so the smallest class here has r_i = 1.)
- Nonlinear ICA: ``experiment=ivae`` against ``experiment=vae_ica`` on identical data overrides (n sources,
  data_dim, segments, points per segment, mixing layers, activation, source distribution, centred). One table
  row per setting with both models. model.latent_dim / model.prior_mean and the training length are left to
  the experiments (they follow the data there).

The halves are a fixed assignment (``Case.half``): within each family the settings are listed in order of
size and alternate tuning / held_out, so both halves hold every family and the small and large extremes
(r = 1 and r = 8, d = r + 2 and d = 40, kappa = r + 2 and 20; n = 2 and n = 8, 10 and 60 segments, ...). The
tuning half runs seeds 0, 1, 2 and the held-out half seeds 10, 11, 12 by default. Defaults may be tuned on the
tuning half only; the held-out half tells whether the result generalizes.

Pass rules (PASS_RULES below, written into the document):

- A manifold run is *exact* when it completed, its AD equals the expected one (a union run: every class's AD
  equals its r_i; one wrong class makes the whole run inexact) and its metrics.json does not say
  ``converged: false``. A run without a ``converged`` key is shown as "?" and judged by its AD alone. A job that
  failed, diverged or never finished counts as a failure. A half's manifold settings pass when >= 95% of their
  runs (settings x seeds) are exact; a setting's own verdict is pass only when all its runs are exact.
- An ICA setting is *identifiable* by Khemakhem et al. (2020), Theorem 1: a segment-modulated exponential
  family with k sufficient statistics per source needs n_segments >= n k + 1 (centred sources: variance-only
  modulation, k = 1, n + 1 segments; uncentred: mean and variance, k = 2, 2n + 1) and an injective mixing
  (data_dim >= n, xtanh / leaky ReLU are invertible). An identifiable setting passes when every job of both
  models completed without ``converged: false``, the iVAE's mean MCC is >= 0.85 and >= 0.10 above the VAE's.
  Non-identifiable settings get the numbers and the reason, no verdict. A half's ICA settings pass when every
  identifiable one passes.

    python scripts/reproduce_generalization.py --plan                  # settings, halves, steps per run
    python scripts/reproduce_generalization.py --half tuning --n-jobs 6
    python scripts/reproduce_generalization.py --half held_out --n-jobs 6
    python scripts/reproduce_generalization.py --table-only            # the tables and docs/results/generalization.md
    python scripts/reproduce_generalization.py --smoke --only "VAE r=1 d=3"   # plumbing only (a few seconds)

Every setting is one resumable ``vaelab-train -m`` multirun over its half's seeds (vaelab.reproduce), in its
own folder under ``--out``; running again finishes what is missing, ``--table-only`` rebuilds the tables. The
Markdown (tables, pass lines, failures, command, git commit, date, machine) goes to ``<out>/table.md`` and to
``--doc`` (default docs/results/generalization.md; not written by --smoke or --only unless --doc is given).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vaelab import reproduce
from vaelab.reproduce import Setting, markdown_table, mean_std, run_setting, runs_by_seed
from vaelab.summarize import RunResult

ROOT = Path(__file__).resolve().parents[1]
HALVES = ("tuning", "held_out")
DEFAULT_SEEDS = {"tuning": [0, 1, 2], "held_out": [10, 11, 12]}
EXACT_FRACTION = 0.95        # manifold runs that must be exact, per half
ICA_MIN_MCC, ICA_MIN_GAP = 0.85, 0.10
STEP_FLAG = 40_000           # the plan flags settings whose runs take more optimizer steps than this
VAE_RECIPE: list[str] = []  # the default config as it is (300 epochs, extended until converged)
T1 = "experiment=manifold_t1_cvae_std_prior"
T5 = "experiment=manifold_t5_union"
PASS_RULES = f"""\
- Manifold run (VAE, CVAE, union): *exact* when it completed, its active dims equal the expected value (a union
  run: every class's `group_<i>_active_dims` equals its r_i; one wrong class makes the run inexact) and its
  metrics.json does not say `converged: false`. No `converged` key: "?" in the table, judged by AD alone. A job
  that failed, diverged or never finished is a failure. Per half: >= {EXACT_FRACTION:.0%} of the manifold runs
  (settings x seeds) exact. A setting's verdict is pass only when all its runs are exact.
- ICA (iVAE vs VAE): an *identifiable* setting (Khemakhem et al. 2020, Theorem 1: n_segments >= n k + 1, k = 1
  for centred sources (variance modulated), k = 2 when the means are modulated too; data_dim >= n; invertible
  activations) passes when all jobs of both models completed, none says `converged: false`, the iVAE's mean MCC
  is >= {ICA_MIN_MCC} and >= {ICA_MIN_GAP} above the VAE's mean MCC. Non-identifiable settings: numbers and reason,
  no verdict. Per half: every identifiable setting passes.
- Not run yet: "·"; a half with runs still missing is "incomplete" unless it has already failed."""


@dataclass
class Case:
    """One table row of the study. family: vae | cvae | union | ica; settings: the runs behind the row (ICA:
    the iVAE's, then the VAE's, on the same data overrides); expected: the AD (vae, cvae) or per-class ADs
    (union); identifiable / reason: ICA only."""

    label: str
    family: str
    half: str
    settings: list[Setting]
    expected: int | list[int] | None = None
    identifiable: bool | None = None
    reason: str = ""
    extra: bool = False  # beyond the ranges (a control)
    params: dict = field(default_factory=dict)


def vae(half: str, r: int, d: int, kappa: int) -> Case:
    label = f"VAE r={r} d={d} kappa={kappa}"
    overrides = [f"data.manifold_dim={r}", f"data.ambient_dim={d}", f"model.latent_dim={kappa}", *VAE_RECIPE]
    return Case(label, "vae", half, [Setting(label, overrides, str(r))], r, params=dict(r=r, d=d, kappa=kappa))


def cvae(half: str, r: int, t: int, d: int) -> Case:
    label = f"CVAE r={r} t={t} d={d}"
    overrides = [T1, f"data.manifold_dim={r}", f"data.condition_rank={t}", f"data.ambient_dim={d}"]
    return Case(label, "cvae", half, [Setting(label, overrides, str(r - t))], r - t, params=dict(r=r, t=t, d=d))


def union(half: str, dims: list[int], d: int | None = None) -> Case:
    listed = ",".join(map(str, dims))
    label = f"union r_i=[{listed}]" + (f" d={d}" if d is not None else "")
    overrides = [T5, f"data.class_manifold_dims=[{listed}]"] + ([f"data.ambient_dim={d}"] if d is not None else [])
    return Case(label, "union", half, [Setting(label, overrides, "/".join(map(str, dims)))], list(dims),
                params=dict(dims=list(dims), d=d))


def identifiability(n: int, data_dim: int, segments: int, centred: bool, source: str,
                    activation: str) -> tuple[bool, str]:
    """Whether Khemakhem et al. (2020), Theorem 1 covers the data, and why (one line)."""
    if not centred and source != "gauss":
        return False, (f"uncentred {source}: a shifted {source} is no exponential family in (mean, scale), "
                       "Theorem 1 does not apply")
    k = 1 if centred else 2
    what = "variance-only modulation, k = 1" if centred else "mean and variance modulated, k = 2"
    need = n * k + 1
    injective = data_dim >= n and activation in ("xtanh", "leaky_relu")
    ok = segments >= need and injective
    return ok, (f"{'centred' if centred else 'uncentred'} {source} ({what}): needs n_segments >= {need}, has "
                f"{segments}; mixing {'injective' if injective else 'NOT injective'} (d = {data_dim} "
                f"{'>=' if data_dim >= n else '<'} n = {n}, {activation})")


def ica(half: str, n: int, d: int, segments: int, points: int, layers: int, activation: str, source: str,
        centred: bool, extra: bool = False) -> Case:
    rest = (f"n={n} d={d} ns={segments} nps={points} nl={layers} {activation} {source} "
            f"{'centred' if centred else 'uncentred'}")
    data = [f"data.n_sources={n}", f"data.data_dim={d}", f"data.n_segments={segments}",
            f"data.points_per_segment={points}", f"data.n_layers={layers}", f"data.activation={activation}",
            f"data.source_distribution={source}", f"data.centred={str(centred).lower()}"]
    ok, reason = identifiability(n, d, segments, centred, source, activation)
    expected = f"MCC >= {ICA_MIN_MCC}, {ICA_MIN_GAP} above the VAE" if ok else "no verdict (not identifiable)"
    settings = [Setting(f"iVAE {rest}", ["experiment=ivae", *data], expected),
                Setting(f"VAE {rest}", ["experiment=vae_ica", *data], expected)]
    return Case(f"ICA {rest}", "ica", half, settings, None, ok, reason, extra,
                params=dict(n=n, d=d, segments=segments, points=points, layers=layers, activation=activation,
                            source=source, centred=centred))


ANALYSIS_MARKER = "<!-- hand-written analysis below: kept when the tables above are regenerated -->"
T, H = "tuning", "held_out"
# Within each family in order of size, alternating halves (see the module docstring).
CASES: list[Case] = [
    # VAE (r, d, kappa); the default is r = 2, d = 20, kappa = 20
    vae(T, 1, 3, 3), vae(H, 1, 40, 20), vae(T, 2, 25, 4), vae(H, 3, 5, 6), vae(T, 5, 7, 7), vae(H, 4, 15, 20),
    vae(T, 6, 40, 20), vae(H, 7, 9, 9), vae(T, 8, 10, 10), vae(H, 8, 40, 16),
    # CVAE (r, t, d); T1's own rows: r = 10, d = 20
    cvae(T, 2, 2, 5), cvae(H, 3, 1, 8), cvae(T, 4, 1, 12), cvae(H, 4, 4, 10),
    # discrete unions (r_i); T5's own: [1, 2, 3, 4, 5] in d = 20
    union(T, [1, 1, 3]), union(H, [2, 3], 30), union(T, [2, 6], 12), union(H, [1, 2, 4]),
    # nonlinear ICA (n, d, segments, points per segment, layers, activation, sources, centred); the default:
    # 5 sources, d = 5, 40 segments x 1000 points, 3 xtanh layers, gauss, centred
    ica(T, 2, 2, 10, 2000, 1, "xtanh", "gauss", True), ica(H, 2, 4, 60, 250, 4, "leaky_relu", "laplace", True),
    ica(T, 3, 6, 20, 500, 2, "leaky_relu", "laplace", True), ica(H, 3, 3, 15, 2000, 1, "xtanh", "gauss", False),
    ica(T, 5, 5, 30, 750, 4, "xtanh", "gauss", False), ica(H, 5, 8, 50, 500, 2, "xtanh", "laplace", True),
    ica(T, 8, 8, 60, 250, 3, "leaky_relu", "gauss", False), ica(H, 8, 8, 40, 500, 3, "xtanh", "gauss", True),
    # not identifiable inside the ranges: uncentred, 2n + 1 segments needed
    ica(T, 8, 10, 12, 1000, 2, "xtanh", "gauss", False), ica(H, 5, 5, 10, 1000, 3, "leaky_relu", "gauss", False),
]


# ----------------------------------------------------------------------------------------------- the plan
def train_points(data) -> int | None:
    """Training points of a composed data config (the data modules' own split arithmetic), None if unknown."""
    split = list(data.get("split") or (0.8, 0.1, 0.1))

    def train_of(n: int) -> int:
        return n - int(n * split[1]) - int(n * split[2])

    if "n_segments" in data:
        return int(data.n_segments) * train_of(int(data.points_per_segment))
    if "class_manifold_dims" in data:
        return train_of(int(data.n_per_class) * len(data.class_manifold_dims))
    if "n_samples" in data:
        return train_of(int(data.n_samples))
    return None


def estimated_steps(cfg) -> dict[str, int] | None:
    """Optimizer steps of one run of a composed config: ``base`` (points x 0.8 / batch x epochs, or
    trainer.max_steps) and, when the convergence callback extends the run (learnable gamma), ``min`` (with the
    extensions every extended run gets) and ``max`` (the whole budget)."""
    points, batch = train_points(cfg.data), int(cfg.data.get("batch_size") or 0)
    if not points or not batch:
        return None
    per_epoch = points // batch if cfg.data.get("drop_last", True) else -(-points // batch)
    epochs, max_steps = int(cfg.trainer.get("max_epochs") or -1), int(cfg.trainer.get("max_steps") or -1)
    base = per_epoch * epochs if epochs > 0 else max_steps
    if max_steps > 0:
        base = min(base, max_steps)
    steps = {"base": base}
    conv = (cfg.get("callbacks") or {}).get("convergence")
    learnable = bool(cfg.model.get("learn_gamma", False) or cfg.model.get("learn_decoder_var", False))
    extend = None if conv is None else conv.get("extend", "auto")
    if conv is not None and epochs > 0 and (extend is True or (extend == "auto" and learnable)):
        extension = conv.get("extension_epochs") or max(1, epochs // 3)
        steps["min"] = per_epoch * (epochs + int(conv.get("min_extensions", 1)) * extension)
        steps["max"] = per_epoch * (conv.get("max_epochs") or 3 * epochs)
    return steps


def plan(cases: Sequence[Case], extra: Sequence[str], smoke: bool) -> list[str]:
    """One line per run kind: half, setting, estimated steps per run; flags runs above STEP_FLAG steps and ICA
    models whose latent_dim does not follow data.n_sources."""
    from vaelab.config import compose_config

    lines = []
    for case in cases:
        for setting in case.settings:
            chosen = smoke_setting(case, setting) if smoke else setting
            cfg = compose_config([*chosen.overrides, *extra])
            steps = estimated_steps(cfg)
            if steps is None:
                text = "steps unknown"
            else:
                text = f"{steps['base']} steps/run" + (
                    f" ({steps['min']}-{steps['max']} with the convergence extensions)" if "min" in steps else "")
            flags = []
            if steps and steps.get("min", steps["base"]) > STEP_FLAG:
                flags.append(f"ABOVE {STEP_FLAG} STEPS")
            latent = cfg.model.get("latent_dim")  # null: follows data.n_sources
            if case.family == "ica" and latent not in (None, cfg.data.n_sources):
                flags.append(f"model.latent_dim={latent} != data.n_sources={cfg.data.n_sources}")
            lines.append(f"  [{case.half}] {setting.label}: {text}" + (f"  <-- {'; '.join(flags)}" if flags else ""))
    return lines


# ------------------------------------------------------------------------------------------------- smoke
SMOKE_COMMON = ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1", "callbacks.diagnostics.every_n_epochs=1",
                "logger=none"]
SMOKE = {"vae": ["data.n_samples=2000", "data.batch_size=128"],
         "cvae": ["data.n_samples=2000", "data.batch_size=128", "kl_warmup.epochs=1"],
         "union": ["data.n_per_class=300", "data.batch_size=128"],
         "ica": ["data.points_per_segment=50", "compile=false"]}


def merge_overrides(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """`base` with `extra` appended, dropping the base overrides of keys that `extra` sets."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in extra}
    return [o for o in base if o.split("=", 1)[0].lstrip("+~") not in keys] + list(extra)


def smoke_setting(case: Case, setting: Setting) -> Setting:
    """The setting shrunk to a few epochs on little data: for testing the plumbing only."""
    return Setting(setting.label, merge_overrides(setting.overrides, SMOKE_COMMON + SMOKE[case.family]),
                   setting.expected)


# ---------------------------------------------------------------------------------------- judging runs
def measured_ad(case: Case, run: RunResult) -> int | list[int | None] | None:
    """The run's AD (vae, cvae) or per-class ADs (union; None for a class without a value)."""
    if case.family == "union":
        values = [run.metrics.get(f"group_{i}_active_dims") for i in range(len(case.expected))]
        return [None if v is None else int(v) for v in values]
    value = run.metrics.get("active_dims")
    return None if value is None else int(value)


def converged_of(run: RunResult) -> bool | None:
    return getattr(run, "converged", None)


def run_is_exact(case: Case, run: RunResult | None) -> bool | None:
    """A manifold run: None when not run or still running; False when its job did not complete, it says
    converged: false or its AD (a union: any class's) differs from the expected; True otherwise."""
    if run is None or run.status in ("running", "missing"):
        return None
    if run.status != "completed" or converged_of(run) is False:
        return False
    return measured_ad(case, run) == case.expected


def verdict_of(oks: Sequence[bool | None]) -> str:
    if any(ok is False for ok in oks):
        return "FAIL"
    if any(ok is None for ok in oks):
        return "incomplete" if any(oks) else "not run"
    return "pass"


def ad_cell(case: Case, run: RunResult | None) -> str:
    if run is None:
        return "·"
    if run.status != "completed":
        return run.status
    ad = measured_ad(case, run)
    if isinstance(ad, list):
        return "/".join("?" if a is None else str(a) for a in ad)
    return "?" if ad is None else str(ad)


def conv_cell(run: RunResult | None) -> str:
    if run is None:
        return "·"
    if run.status != "completed":
        return "-"
    return {True: "y", False: "n", None: "?"}[converged_of(run)]


def finite(runs: Sequence[RunResult], key: str) -> list[float]:
    return [r.metrics[key] for r in runs if math.isfinite(r.metrics.get(key, math.nan))]


def seconds(runs: Sequence[RunResult]) -> str:
    times = finite(runs, "wall_time_s")
    return f"{statistics.fmean(times):.0f}" if times else "-"


def job_problems(seed_runs: dict, seeds: Sequence[int], name: str = "") -> list[str]:
    """'seed 11 diverged: <error>' for every seed whose job did not complete."""
    return [f"{name}seed {s} {r.status}" + (f": {r.error}" if r.error else "")
            for s in seeds if (r := seed_runs.get(s)) is not None and r.status != "completed"]


@dataclass
class Judged:
    """One case read from disk: its table row, verdict, per-run exactness (manifold) and failure text."""

    case: Case
    row: list[str]
    verdict: str
    oks: list[bool | None] = field(default_factory=list)
    unknown: int = 0       # completed runs without a convergence verdict
    failure: str = ""


def judge_manifold(case: Case, by_seed: dict, seeds: Sequence[int]) -> Judged:
    runs = [by_seed.get(s) for s in seeds]
    oks = [run_is_exact(case, r) for r in runs]
    done = [r for r in runs if r is not None and r.status == "completed"]
    expected = "/".join(map(str, case.expected)) if isinstance(case.expected, list) else str(case.expected)
    verdict = verdict_of(oks)
    row = [case.half, case.label, expected, ", ".join(ad_cell(case, r) for r in runs),
           ", ".join(conv_cell(r) for r in runs), mean_std(finite(done, "gamma")), seconds(done), verdict]
    failure = ""
    if verdict == "FAIL":
        failure = (f"[{case.half}] {case.label}: expected AD {expected}; AD per seed ({', '.join(map(str, seeds))}): "
                   f"{row[3]}; converged: {row[4]}")
        problems = job_problems(by_seed, seeds)
        failure += "; " + "; ".join(problems) if problems else ""
    unknown = sum(1 for r in done if converged_of(r) is None)
    return Judged(case, row, verdict, oks, unknown, failure)


def judge_ica(case: Case, ivae_runs: dict, vae_runs: dict, seeds: Sequence[int]) -> Judged:
    ivae = [ivae_runs.get(s) for s in seeds]
    base = [vae_runs.get(s) for s in seeds]
    ivae_done = [r for r in ivae if r is not None and r.status == "completed"]
    base_done = [r for r in base if r is not None and r.status == "completed"]
    ivae_mcc, base_mcc = finite(ivae_done, "mcc"), finite(base_done, "mcc")
    gap = statistics.fmean(ivae_mcc) - statistics.fmean(base_mcc) if ivae_mcc and base_mcc else None
    problems = job_problems(ivae_runs, seeds, "iVAE ") + job_problems(vae_runs, seeds, "VAE ")
    unconverged = [f"{name} seed {s} converged: false" for name, runs in (("iVAE", ivae), ("VAE", base))
                   for s, r in zip(seeds, runs)
                   if r is not None and r.status == "completed" and converged_of(r) is False]
    missing = any(r is None for r in ivae + base)
    if not case.identifiable:
        verdict = "-"
    elif problems or unconverged:
        verdict = "FAIL"
    elif missing:
        verdict = "incomplete" if ivae_done or base_done else "not run"
    elif len(ivae_mcc) < len(seeds) or len(base_mcc) < len(seeds):
        verdict = "FAIL"  # a completed run without a finite MCC
    else:
        verdict = "pass" if statistics.fmean(ivae_mcc) >= ICA_MIN_MCC and gap >= ICA_MIN_GAP - 1e-9 else "FAIL"
    conv = f"{''.join(conv_cell(r) for r in ivae)} / {''.join(conv_cell(r) for r in base)}"
    row = [case.half, case.label, ("yes: " if case.identifiable else "no: ") + case.reason, mean_std(ivae_mcc),
           mean_std(base_mcc), "-" if gap is None else f"{gap:.3f}", conv,
           f"{seconds(ivae_done)} / {seconds(base_done)}", verdict]
    failure = ""
    if verdict == "FAIL" or (verdict == "-" and problems):
        failure = (f"[{case.half}] {case.label}: iVAE MCC {row[3]} (need >= {ICA_MIN_MCC}), VAE MCC {row[4]}, "
                   f"gap {row[5]} (need >= {ICA_MIN_GAP}); converged iVAE / VAE: {conv}")
        failure += "".join("; " + p for p in problems + unconverged)
        failure += "" if verdict == "FAIL" else " (not identifiable: no verdict, but jobs failed)"
    unknown = sum(1 for r in ivae_done + base_done if converged_of(r) is None)
    return Judged(case, row, verdict, [], unknown, failure)


def judge(case: Case, out: Path, seeds: Sequence[int]) -> Judged:
    if case.family == "ica":
        return judge_ica(case, runs_by_seed(out, case.settings[0]), runs_by_seed(out, case.settings[1]), seeds)
    return judge_manifold(case, runs_by_seed(out, case.settings[0]), seeds)


def half_lines(judged: Sequence[Judged]) -> tuple[list[str], bool]:
    """The overall pass line of each half (manifold runs, ICA settings) and whether any half failed."""
    lines, failed = [], False
    for half in HALVES:
        mine = [j for j in judged if j.case.half == half]
        if not mine:
            continue
        manifold = [j for j in mine if j.case.family != "ica"]
        if manifold:
            oks = [ok for j in manifold for ok in j.oks]
            n, good, bad, missing = len(oks), oks.count(True), oks.count(False), oks.count(None)
            if bad > (1 - EXACT_FRACTION) * n:
                verdict = "FAIL"
            elif missing:
                verdict = "incomplete"
            else:
                verdict = "pass" if good >= EXACT_FRACTION * n else "FAIL"
            unknown = sum(j.unknown for j in manifold)
            lines.append(f"- **{half}, manifold** (VAE, CVAE, unions): {good}/{n} runs exact and converged "
                         f"({100 * good / n:.1f}%; rule >= {EXACT_FRACTION:.0%}): **{verdict}**"
                         + (f"; {missing} not run" if missing else "")
                         + (f"; {unknown} without a convergence verdict (?)" if unknown else ""))
            failed |= verdict == "FAIL"
        identifiable = [j for j in mine if j.case.family == "ica" and j.case.identifiable]
        if identifiable:
            verdicts = [j.verdict for j in identifiable]
            verdict = ("FAIL" if "FAIL" in verdicts else
                       "incomplete" if any(v in ("incomplete", "not run") for v in verdicts) else "pass")
            others = sum(1 for j in mine if j.case.family == "ica" and not j.case.identifiable)
            lines.append(f"- **{half}, ICA**: {verdicts.count('pass')}/{len(verdicts)} identifiable settings pass "
                         f"(iVAE mean MCC >= {ICA_MIN_MCC} and >= {ICA_MIN_GAP} above the VAE's): **{verdict}**"
                         + (f"; {others} non-identifiable setting(s) without a verdict" if others else ""))
            failed |= verdict == "FAIL"
    return lines, failed


def tables(cases: Sequence[Case], out: Path, seeds_of: dict[str, list[int]]) -> tuple[str, bool]:
    """The study's Markdown (manifold table, ICA table, pass lines per half, failures) and whether it failed."""
    ordered = [c for half in HALVES for c in cases if c.half == half]
    judged = [judge(c, out, seeds_of[c.half]) for c in ordered]
    parts = []
    manifold = [j.row for j in judged if j.case.family != "ica"]
    if manifold:
        parts.append("### Manifold dimension (VAE, CVAE, discrete unions)\n\n" + markdown_table(
            ["half", "setting", "expected AD", "AD per seed", "converged per seed", "gamma", "s/run", "verdict"],
            manifold) + "\n\nAD per seed in seed order (unions: per class, class 0 first); converged: y / n / ? (no "
            "verdict recorded); ·: not run; failed / diverged / missing: the job's status.")
    icas = [j.row for j in judged if j.case.family == "ica"]
    if icas:
        parts.append("### Nonlinear ICA: iVAE vs VAE on the same data\n\n" + markdown_table(
            ["half", "setting", "identifiable", "iVAE MCC", "VAE MCC", "gap", "converged iVAE / VAE",
             "s/run iVAE / VAE", "verdict"], icas) + "\n\nMCC: mean ± std over seeds (test split); gap: iVAE mean - "
            "VAE mean; converged per seed in seed order; ns: segments, nps: points per segment, nl: mixing layers.")
    lines, failed = half_lines(judged)
    lines += confident_wrong_lines(judged, out, seeds_of)
    parts.append("### Pass lines\n\n" + ("\n".join(lines) or "(nothing chosen)"))
    local = local_dimension_rows(judged, out, seeds_of)
    if local:
        parts.append("### The data's local dimension against the runs' active dims\n\n" + markdown_table(
            ["half", "setting", "data local dim (local PCA)", "AD per seed", "runs below it", "their verdict"],
            local) + "\n\nComputed from the training points alone (`vaelab.metrics.local_pca_dimension`). "
            "Runs recorded before the `dims_cover_data` check existed say `converged: true` for these; runs "
            "made with it say `converged: false` (\"their verdict\": what each run's metrics.json says).")
    failures = [j.failure for j in judged if j.failure]
    parts.append("### Failures\n\n" + ("\n".join(f"- {f}" for f in failures) if failures else "None."))
    return "\n\n".join(parts), failed


def confident_wrong_lines(judged: Sequence[Judged], out: Path, seeds_of: dict[str, list[int]]) -> list[str]:
    """Per half: manifold runs whose AD is wrong although their metrics.json says ``converged: true`` (a run
    that does not know it is wrong), against all wrong runs."""
    lines = []
    for half in HALVES:
        wrong = silent = 0
        for j in (j for j in judged if j.case.half == half and j.case.family != "ica"):
            by_seed = runs_by_seed(out, j.case.settings[0])
            for seed in seeds_of[half]:
                run = by_seed.get(seed)
                if run is None or run.status != "completed" or exact_ad(j.case, run):
                    continue
                wrong += 1
                silent += run.converged is True
        if wrong:
            lines.append(f"- **{half}**: {wrong} completed manifold run(s) with the wrong AD, {silent} of them "
                         "saying `converged: true`")
    return lines


def exact_ad(case: Case, run: RunResult) -> bool:
    return measured_ad(case, run) == case.expected


def local_dimension_rows(judged: Sequence[Judged], out: Path, seeds_of: dict[str, list[int]]) -> list[list[str]]:
    """VAE settings: the local dimension of their training data against each seed's AD."""
    from hydra.utils import instantiate

    from vaelab.config import compose_config
    from vaelab.metrics import local_pca_dimension

    rows = []
    for j in (j for j in judged if j.case.family == "vae"):
        data = instantiate(compose_config(j.case.settings[0].overrides).data)
        data.train_dataloader()
        dim = local_pca_dimension(data.split("train")["x"])[0]
        by_seed = runs_by_seed(out, j.case.settings[0])
        runs = [by_seed.get(s) for s in seeds_of[j.case.half]]
        done = [r for r in runs if r is not None and r.status == "completed"]
        below = [r for r in done if r.metrics.get("active_dims", dim) < dim]
        rows.append([j.case.half, j.case.label, str(dim), ", ".join(ad_cell(j.case, r) for r in runs),
                     f"{len(below)}/{len(done)}", ", ".join(conv_cell(r) for r in below) or "-"])
    return rows


# ---------------------------------------------------------------------------------------------- the CLI
def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def seeds_arg(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1,2")
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Held-out generalization study (tuning / held-out halves)")
    parser.add_argument("--half", choices=(*HALVES, "all"), default="all")
    parser.add_argument("--seeds", type=seeds_arg, default=None,
                        help="comma-separated seeds for every chosen setting (default: 0,1,2 tuning, "
                        "10,11,12 held_out)")
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="jobs at once (joblib, one thread each); more than the seeds runs settings side by side")
    parser.add_argument("--out", type=Path, default=None,
                        help="sweeps folder (default outputs/reproduce/generalization, --smoke: ..._smoke)")
    parser.add_argument("--only", default=None, help="only the settings whose label contains this text")
    parser.add_argument("--table-only", action="store_true", help="rebuild the tables from the runs on disk")
    parser.add_argument("--plan", action="store_true", help="print the settings and steps per run, run nothing")
    parser.add_argument("--jobs-per-setting", type=int, default=None,
                        help="jobs of one setting at once (default: min(--n-jobs, seeds)); 1 with --n-jobs 2 runs "
                             "two settings side by side, each seed after seed (no idle core with 3 seeds)")
    parser.add_argument("--smoke", action="store_true",
                        help="every setting shrunk to a few epochs on little data, one seed: the plumbing only")
    parser.add_argument("--doc", type=Path, default=None,
                        help="the Markdown document (default docs/results/generalization.md; none for --smoke/--only)")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every job, e.g. trainer=gpu")
    args = parser.parse_args(argv)
    if args.n_jobs < 1:
        parser.error("--n-jobs must be >= 1")
    chosen = [c for c in CASES if args.half in ("all", c.half) and (
        args.only is None or any(args.only in label for label in (c.label, *(s.label for s in c.settings))))]
    if not chosen:
        parser.error(f"--half {args.half} --only {args.only!r} matches none of: {', '.join(c.label for c in CASES)}")
    seeds_of = {half: list(args.seeds or DEFAULT_SEEDS[half]) for half in HALVES}
    if args.smoke:
        seeds_of = {half: seeds[:1] for half, seeds in seeds_of.items()}
    out = args.out or Path(os.environ.get("VAELAB_LOG_DIR", "outputs")) / "reproduce" / (
        "generalization" + ("_smoke" if args.smoke else ""))
    doc = args.doc or (None if args.smoke or args.only else ROOT / "docs" / "results" / "generalization.md")

    if not args.table_only:
        print(f"Plan ({len(chosen)} settings; seeds: tuning {seeds_of['tuning']}, held_out {seeds_of['held_out']}; "
              f"estimated optimizer steps per run, flagged above {STEP_FLAG}):", flush=True)
        print("\n".join(plan(chosen, args.overrides, args.smoke)), flush=True)
        if args.plan:
            return 0
        runs = [(case, setting) for case in chosen for setting in case.settings]
        per_setting = args.jobs_per_setting or min(args.n_jobs, max(len(s) for s in seeds_of.values()))
        side_by_side = max(1, args.n_jobs // per_setting)

        def work(item: tuple[Case, Setting]) -> None:
            case, setting = item
            run_setting(smoke_setting(case, setting) if args.smoke else setting, seeds_of[case.half], out,
                        per_setting, extra=args.overrides)

        with ThreadPoolExecutor(side_by_side) as pool:
            list(pool.map(work, runs))

    markdown, failed = tables(chosen, out, seeds_of)
    invocation = shlex.join(["python", *(sys.argv if argv is None else [sys.argv[0], *argv])])
    title = "Held-out generalization study" + (" (SMOKE: plumbing only, its numbers mean nothing)"
                                               if args.smoke else "")
    text = (f"## {title}\n\nSettings no default was chosen on, split into a tuning half (seeds "
            f"{seeds_of['tuning']}) and a held-out half (seeds {seeds_of['held_out']}); written by "
            f"`scripts/reproduce_generalization.py`.\n\n### Pass rules\n\n{PASS_RULES}\n\n{markdown}\n\n"
            f"Command: `{invocation}`  \nGit commit: {git_commit()}  \nDate: {time.strftime('%Y-%m-%d %H:%M %Z')}  \n"
            f"Machine: {platform.platform()}; {reproduce.machine()}"
            + (" (this table rebuilt from the runs on disk)" if args.table_only else "") + f"  \nRuns: `{out}`\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    if doc is not None:
        doc.parent.mkdir(parents=True, exist_ok=True)
        kept = doc.read_text().partition(ANALYSIS_MARKER) if doc.is_file() else ("", "", "")
        doc.write_text(text + (f"\n{ANALYSIS_MARKER}{kept[2]}" if kept[1] else ""))
    print(text + (f"\nWritten: {out / 'table.md'}" + (f", {doc}" if doc else "")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
