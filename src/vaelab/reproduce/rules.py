"""Pass rules: each ``Rule`` takes (setting, runs) and returns (verdict, why).

Verdicts: ``pass``; ``FAIL`` (``why`` says what was measured); ``incomplete`` while some seeds have no
finished run (unless it failed already); ``not run``; ``-`` (no claim). A job that failed, diverged or was
interrupted is a failure; a running or missing one is not finished yet.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from vaelab.reproduce import Judgement, Rule, Runs, Setting
from vaelab.reproduce.table import converged_cell, run_cell
from vaelab.summarize import RunResult

UNFINISHED = ("running", "missing")


def problems(setting: Setting, runs: Runs, name: str = "") -> list[str]:
    """'seed 11 diverged: <error>' for every seed whose job ended without completing."""
    return [
        f"{name}seed {s} {r.status}" + (f": {r.error}" if r.error else "")
        for s, r in runs.by_seed(setting).items()
        if r is not None and r.status not in ("completed", *UNFINISHED)
    ]


def ok_per_seed(
    setting: Setting, runs: Runs, test: Callable[[RunResult], bool], require_converged: bool
) -> list[bool | None]:
    """Per seed: None not finished; False when the job did not complete or (require_converged) its
    metrics.json says converged: false; else test(run)."""
    oks = []
    for run in runs.by_seed(setting).values():
        if run is None or run.status in UNFINISHED:
            oks.append(None)
        elif run.status != "completed" or (require_converged and run.converged is False):
            oks.append(False)
        else:
            oks.append(bool(test(run)))
    return oks


def verdict_of(oks: Sequence[bool | None]) -> str:
    """FAIL when any is False, else 'not run' when none finished, 'incomplete' when some did not, else pass."""
    if any(ok is False for ok in oks):
        return "FAIL"
    if any(ok is None for ok in oks):
        return "incomplete" if any(oks) else "not run"
    return "pass"


def gate(
    settings: Sequence[Setting], runs: Runs, require_converged: bool = False, names: Sequence[str] | None = None
) -> Judgement | None:
    """Before a rule over means of `settings`' runs: FAIL when one of their jobs did not complete (or,
    require_converged, says converged: false), 'not run' / 'incomplete' while seeds are missing; None when
    every seed of every setting completed. names: how `why` calls the settings (default their labels)."""
    names = names or [s.label for s in settings]
    found = [p for s, name in zip(settings, names, strict=True) for p in problems(s, runs, f"{name} ")]
    if require_converged:
        found += [
            f"{name} seed {seed} converged: false"
            for s, name in zip(settings, names, strict=True)
            for seed, r in runs.completed(s).items()
            if r.converged is False
        ]
    if found:
        return "FAIL", "; ".join(found)
    done = [len(runs.completed(s)) for s in settings]
    if not any(done):
        return "not run", ""
    if any(n < len(s.seeds) for n, s in zip(done, settings, strict=True)):
        return "incomplete", ""
    return None


def exact(expected: dict[str, float], require_converged: bool = False) -> Rule:
    """Every seed completed with each metric of `expected` equal to its value (e.g. {"active_dims": 3}; a
    union: {"group_0_active_dims": 1, ...}) and, require_converged, without converged: false."""
    keys = list(expected)

    def rule(setting: Setting, runs: Runs) -> Judgement:
        by_seed = runs.by_seed(setting)
        oks = ok_per_seed(
            setting, runs, lambda r: all(r.metrics.get(k) == v for k, v in expected.items()), require_converged
        )
        verdict = verdict_of(oks)
        if verdict != "FAIL":
            return verdict, ""
        why = (
            f"expected {setting.expected}; per seed ({', '.join(map(str, by_seed))}): "
            f"{', '.join(run_cell(r, keys) for r in by_seed.values())}; converged: "
            f"{', '.join(converged_cell(r) for r in by_seed.values())}"
        )
        return verdict, "; ".join([why, *problems(setting, runs)])

    return rule


def mean_at_least(key: str, bound: float) -> Rule:
    """Every seed completed and the mean of `key` over them is >= bound."""

    def rule(setting: Setting, runs: Runs) -> Judgement:
        early = gate([setting], runs)
        if early:
            return early
        values = list(runs.values(setting, key).values())
        mean = statistics.fmean(values) if values else float("nan")
        return ("pass", "") if mean >= bound else ("FAIL", f"mean {key} {mean:.4g} < {bound}")

    return rule


def mean_below(key: str) -> Rule:
    """Every seed of both completed and the mean of `key` is below the mean of the setting's reference."""

    def rule(setting: Setting, runs: Runs) -> Judgement:
        reference = runs.setting(setting.reference)
        early = gate([setting, reference], runs)
        if early:
            return early
        mine, theirs = (statistics.fmean(runs.values(s, key).values() or [float("nan")]) for s in (setting, reference))
        if mine < theirs:
            return "pass", ""
        return "FAIL", f"mean {key} {mine:.4g} not below {reference.label}'s {theirs:.4g}"

    return rule


def shared_gap(setting: Setting, reference: str, runs: Runs, key: str) -> tuple[float, int] | None:
    """(mean of `reference` - mean of `setting`, number of seeds) over the seeds both have `key` on."""
    mine, theirs = runs.values(setting, key), runs.values(reference, key)
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return None
    return statistics.fmean(theirs[s] for s in shared) - statistics.fmean(mine[s] for s in shared), len(shared)


def gap_below(key: str, gap: float) -> Rule:
    """Every seed of both completed and the mean of `key` is at least `gap` below the reference's."""

    def rule(setting: Setting, runs: Runs) -> Judgement:
        early = gate([setting, runs.setting(setting.reference)], runs)
        if early:
            return early
        found = shared_gap(setting, setting.reference, runs, key)
        if found is None:
            return "FAIL", f"no finite {key} on the seeds both have"
        if found[0] >= gap - 1e-9:
            return "pass", ""
        return "FAIL", f"{key} {found[0]:.3f} below {setting.reference}, need {gap}"

    return rule


def paired(claim: Callable[[dict, dict], bool], text: str) -> Rule:
    """Every seed of both completed and claim(mine, the reference's) holds for the metrics of every seed."""

    def rule(setting: Setting, runs: Runs) -> Judgement:
        early = gate([setting, runs.setting(setting.reference)], runs)
        if early:
            return early
        theirs = runs.completed(setting.reference)
        bad = [s for s, r in runs.completed(setting).items() if not claim(r.metrics, theirs[s].metrics)]
        return ("pass", "") if not bad else ("FAIL", f"not {text} on seed(s) {', '.join(map(str, bad))}")

    return rule
