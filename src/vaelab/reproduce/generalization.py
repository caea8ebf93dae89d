"""Held-out generalization study: do the defaults (chosen on the paper's settings) hold on settings that no
default was chosen on?

Families, every one in both halves:

- VAE (``model=vae``, ``data=synthetic_manifold``, the default config as it is): r in 1..8, ambient d in
  r + 2..40, latent kappa in r + 2..20. Expected: active_dims == r.
- CVAE (``experiment=manifold_t1_cvae_std_prior``, linear condition c = A u[:, :t]) with other r, t and d.
  Expected: active_dims == r - t; t = r (AD 0) and t = 1 included.
- Discrete unions (``experiment=manifold_t5_union``) with other r_i lists. Expected: group_<i>_active_dims ==
  r_i for every class (data=union_manifold rejects r_i = 0, so the smallest class has r_i = 1).
- Nonlinear ICA: ``experiment=ivae`` against ``experiment=vae_ica`` (a reference setting, not a row of its own)
  on identical data overrides. model.latent_dim / model.prior_mean and the training length follow the data.

The halves are a fixed assignment (``Setting.table``): within each family the settings are listed in order of
size and alternate tuning / held_out, so both halves hold every family and the small and large extremes. The
tuning half runs seeds 0, 1, 2 and the held-out half seeds 10, 11, 12. Defaults may be tuned on the tuning
half only; the held-out half tells whether the result generalizes. Pass rules: PASS_RULES.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from vaelab.reproduce import Runs, Setting, figures
from vaelab.reproduce.rules import exact, gate, ok_per_seed
from vaelab.reproduce.study import Study
from vaelab.reproduce.table import (
    Column,
    Comparison,
    Row,
    converged,
    converged_cell,
    expected,
    label,
    markdown_table,
    mean_std,
    per_seed,
    run_cell,
    seconds,
    stat,
    table_name,
)
from vaelab.summarize import RunResult

HALVES = ("tuning", "held_out")
DEFAULT_SEEDS = {"tuning": [0, 1, 2], "held_out": [10, 11, 12]}
EXACT_FRACTION = 0.95  # manifold runs that must be exact, per half
ICA_MIN_MCC, ICA_MIN_GAP = 0.85, 0.10
T1 = "experiment=manifold_t1_cvae_std_prior"
T5 = "experiment=manifold_t5_union"
SMOKE = {
    "vae": ["data.n_samples=2000", "data.batch_size=128"],
    "cvae": ["data.n_samples=2000", "data.batch_size=128", "kl_warmup.epochs=1"],
    "union": ["data.n_per_class=300", "data.batch_size=128"],
    "ica": ["data.points_per_segment=50", "compile=false"],
}
PASS_RULES = f"""\
- Manifold run (VAE, CVAE, union): *exact* when it completed, its active dims equal the expected value (a union
  run: every class's `group_<i>_active_dims` equals its r_i; one wrong class makes the run inexact) and its
  metrics.json does not say `converged: false`. No `converged` key: "?" in the table, judged by AD alone. A job
  that failed, diverged or was interrupted is a failure. Per half: >= {EXACT_FRACTION:.0%} of the manifold runs
  (settings x seeds) exact. A setting's verdict is pass only when all its runs are exact.
- ICA (iVAE vs VAE): an *identifiable* setting (Khemakhem et al. 2020, Theorem 1: n_segments >= n k + 1, k = 1
  for centred sources (variance modulated), k = 2 when the means are modulated too; data_dim >= n; invertible
  activations) passes when all jobs of both models completed, none says `converged: false`, the iVAE's mean MCC
  is >= {ICA_MIN_MCC} and >= {ICA_MIN_GAP} above the VAE's mean MCC. Non-identifiable settings: numbers and reason,
  no verdict. Per half: every identifiable setting passes.
- Not run yet: "·"; a half with runs still missing is "incomplete" unless it has already failed."""


def manifold_setting(
    family: str, half: str, row_label: str, overrides: list[str], ads: dict[str, int], params: dict
) -> Setting:
    """A VAE, CVAE or union row: exact when every metric of `ads` matches (AD keys: params['ad_keys'])."""
    return Setting(
        row_label,
        overrides,
        list(DEFAULT_SEEDS[half]),
        "/".join(map(str, ads.values())),
        exact(ads, require_converged=True),
        half,
        smoke=SMOKE[family],
        params={"family": family, "ad_keys": list(ads), "expected_ads": ads, **params},
    )


def vae(half: str, r: int, d: int, kappa: int) -> Setting:
    return manifold_setting(
        "vae",
        half,
        f"VAE r={r} d={d} kappa={kappa}",
        [f"data.manifold_dim={r}", f"data.ambient_dim={d}", f"model.latent_dim={kappa}"],
        {"active_dims": r},
        dict(r=r, d=d, kappa=kappa),
    )


def cvae(half: str, r: int, t: int, d: int) -> Setting:
    return manifold_setting(
        "cvae",
        half,
        f"CVAE r={r} t={t} d={d}",
        [T1, f"data.manifold_dim={r}", f"data.condition_rank={t}", f"data.ambient_dim={d}"],
        {"active_dims": r - t},
        dict(r=r, t=t, d=d),
    )


def union(half: str, dims: list[int], d: int | None = None) -> Setting:
    listed = ",".join(map(str, dims))
    overrides = [T5, f"data.class_manifold_dims=[{listed}]"] + ([f"data.ambient_dim={d}"] if d is not None else [])
    return manifold_setting(
        "union",
        half,
        f"union r_i=[{listed}]" + (f" d={d}" if d is not None else ""),
        overrides,
        {f"group_{i}_active_dims": r for i, r in enumerate(dims)},
        dict(dims=list(dims), d=d),
    )


def identifiability(
    n: int, data_dim: int, segments: int, centred: bool, source: str, activation: str
) -> tuple[bool, str]:
    """Whether Khemakhem et al. (2020), Theorem 1 covers the data, and why (one line)."""
    if not centred and source != "gauss":
        return False, (
            f"uncentred {source}: a shifted {source} is no exponential family in (mean, scale), "
            "Theorem 1 does not apply"
        )
    k = 1 if centred else 2
    what = "variance-only modulation, k = 1" if centred else "mean and variance modulated, k = 2"
    need = n * k + 1
    injective = data_dim >= n and activation in ("xtanh", "leaky_relu")
    ok = segments >= need and injective
    return ok, (
        f"{'centred' if centred else 'uncentred'} {source} ({what}): needs n_segments >= {need}, has "
        f"{segments}; mixing {'injective' if injective else 'NOT injective'} (d = {data_dim} "
        f"{'>=' if data_dim >= n else '<'} n = {n}, {activation})"
    )


def ica_rule(setting: Setting, runs: Runs):
    """An identifiable ICA row: both models' jobs completed and converged, iVAE mean MCC >= ICA_MIN_MCC and
    >= ICA_MIN_GAP above the VAE's; a non-identifiable one: no verdict."""
    if not setting.params["identifiable"]:
        return "-", ""
    reference = runs.setting(setting.reference)
    ivae, base = (list(runs.values(s, "mcc").values()) for s in (setting, reference))
    numbers = (
        f"iVAE MCC {mean_std(ivae)} (need >= {ICA_MIN_MCC}), VAE MCC {mean_std(base)}, gap "
        f"{ica_gap(setting, runs)} (need >= {ICA_MIN_GAP}); converged iVAE / VAE: "
        f"{pair_cell(compact_converged)(setting, runs)}"
    )
    early = gate([setting, reference], runs, require_converged=True, names=["iVAE", "VAE"])
    if early:
        return early[0], f"{numbers}; {early[1]}" if early[1] else ""
    if len(ivae) < len(setting.seeds) or len(base) < len(reference.seeds):
        return "FAIL", f"{numbers}; a completed run without a finite MCC"
    if statistics.fmean(ivae) >= ICA_MIN_MCC and statistics.fmean(ivae) - statistics.fmean(base) >= ICA_MIN_GAP - 1e-9:
        return "pass", ""
    return "FAIL", numbers


def ica(
    half: str, n: int, d: int, segments: int, points: int, layers: int, activation: str, source: str, centred: bool
) -> list[Setting]:
    """The row (the iVAE's runs, judged against the VAE's) and the VAE reference on the same data."""
    rest = (
        f"n={n} d={d} ns={segments} nps={points} nl={layers} {activation} {source} "
        f"{'centred' if centred else 'uncentred'}"
    )
    data = [
        f"data.n_sources={n}",
        f"data.data_dim={d}",
        f"data.n_segments={segments}",
        f"data.points_per_segment={points}",
        f"data.n_layers={layers}",
        f"data.activation={activation}",
        f"data.source_distribution={source}",
        f"data.centred={str(centred).lower()}",
    ]
    ok, reason = identifiability(n, d, segments, centred, source, activation)
    claim = f"MCC >= {ICA_MIN_MCC}, {ICA_MIN_GAP} above the VAE" if ok else "no verdict (not identifiable)"
    params = dict(
        family="ica",
        identifiable=ok,
        reason=reason,
        n=n,
        d=d,
        segments=segments,
        points=points,
        layers=layers,
        activation=activation,
        source=source,
        centred=centred,
    )
    seeds = list(DEFAULT_SEEDS[half])
    return [
        Setting(
            f"ICA {rest}",
            ["experiment=ivae", *data],
            seeds,
            claim,
            ica_rule,
            half,
            sweep=f"iVAE {rest}",
            smoke=SMOKE["ica"],
            params=params,
            reference=f"VAE {rest}",
        ),
        Setting(
            f"VAE {rest}",
            ["experiment=vae_ica", *data],
            list(seeds),
            claim,
            None,
            half,
            smoke=SMOKE["ica"],
            params={**params, "family": "ica_reference"},
            row=False,
        ),
    ]


T, H = "tuning", "held_out"


def settings(full: bool = False) -> list[Setting]:
    """Every setting, the tuning half first; within each family in order of size, alternating halves (see the
    module docstring)."""
    listed = [
        # VAE (r, d, kappa); the default is r = 2, d = 20, kappa = 20
        vae(T, 1, 3, 3),
        vae(H, 1, 40, 20),
        vae(T, 2, 25, 4),
        vae(H, 3, 5, 6),
        vae(T, 5, 7, 7),
        vae(H, 4, 15, 20),
        vae(T, 6, 40, 20),
        vae(H, 7, 9, 9),
        vae(T, 8, 10, 10),
        vae(H, 8, 40, 16),
        # CVAE (r, t, d); T1's own rows: r = 10, d = 20
        cvae(T, 2, 2, 5),
        cvae(H, 3, 1, 8),
        cvae(T, 4, 1, 12),
        cvae(H, 4, 4, 10),
        # discrete unions (r_i); T5's own: [1, 2, 3, 4, 5] in d = 20
        union(T, [1, 1, 3]),
        union(H, [2, 3], 30),
        union(T, [2, 6], 12),
        union(H, [1, 2, 4]),
        # nonlinear ICA (n, d, segments, points per segment, layers, activation, sources, centred); the default:
        # 5 sources, d = 5, 40 segments x 1000 points, 3 xtanh layers, gauss, centred
        *ica(T, 2, 2, 10, 2000, 1, "xtanh", "gauss", True),
        *ica(H, 2, 4, 60, 250, 4, "leaky_relu", "laplace", True),
        *ica(T, 3, 6, 20, 500, 2, "leaky_relu", "laplace", True),
        *ica(H, 3, 3, 15, 2000, 1, "xtanh", "gauss", False),
        *ica(T, 5, 5, 30, 750, 4, "xtanh", "gauss", False),
        *ica(H, 5, 8, 50, 500, 2, "xtanh", "laplace", True),
        *ica(T, 8, 8, 60, 250, 3, "leaky_relu", "gauss", False),
        *ica(H, 8, 8, 40, 500, 3, "xtanh", "gauss", True),
        # not identifiable inside the ranges: uncentred, 2n + 1 segments needed
        *ica(T, 8, 10, 12, 1000, 2, "xtanh", "gauss", False),
        *ica(H, 5, 5, 10, 1000, 3, "leaky_relu", "gauss", False),
    ]
    return sorted(listed, key=lambda s: HALVES.index(s.table))


# ---------------------------------------------------------------------------------------------- the tables
def is_manifold(setting: Setting) -> bool:
    return setting.params["family"] in ("vae", "cvae", "union")


def is_ica(setting: Setting) -> bool:
    return setting.params["family"] == "ica"


def exact_run(setting: Setting, run: RunResult) -> bool:
    return all(run.metrics.get(k) == v for k, v in setting.params["expected_ads"].items())


def ad_per_seed(setting: Setting, runs: Runs) -> str:
    return per_seed(*setting.params["ad_keys"])(setting, runs)


def identifiable(setting: Setting, runs: Runs) -> str:
    return ("yes: " if setting.params["identifiable"] else "no: ") + setting.params["reason"]


def of_reference(cell):
    """A cell of the setting's reference (the VAE on the same data)."""
    return lambda setting, runs: cell(runs.setting(setting.reference), runs)


def ica_gap(setting: Setting, runs: Runs) -> str:
    ivae, base = (list(runs.values(s, "mcc").values()) for s in (setting, runs.setting(setting.reference)))
    return f"{statistics.fmean(ivae) - statistics.fmean(base):.3f}" if ivae and base else "-"


def compact_converged(setting: Setting, runs: Runs) -> str:
    return "".join(converged_cell(r) for r in runs.by_seed(setting).values())


def pair_cell(cell, sep: str = " / "):
    """`cell` of the iVAE row and of its VAE reference."""
    return lambda setting, runs: f"{cell(setting, runs)}{sep}{cell(runs.setting(setting.reference), runs)}"


MANIFOLD = Comparison(
    "Manifold dimension (VAE, CVAE, discrete unions)",
    [
        Column("half", table_name),
        Column("setting", label),
        Column("expected AD", expected),
        Column("AD per seed", ad_per_seed),
        Column("converged per seed", converged),
        Column("gamma", stat("gamma")),
        Column("s/run", seconds),
    ],
    "AD per seed in seed order (unions: per class, class 0 first); converged: y / n / ? (no verdict recorded); "
    "·: not run; failed / diverged / missing: the job's status.",
    is_manifold,
)
ICA = Comparison(
    "Nonlinear ICA: iVAE vs VAE on the same data",
    [
        Column("half", table_name),
        Column("setting", label),
        Column("identifiable", identifiable),
        Column("iVAE MCC", stat("mcc")),
        Column("VAE MCC", of_reference(stat("mcc"))),
        Column("gap", ica_gap),
        Column("converged iVAE / VAE", pair_cell(compact_converged)),
        Column("s/run iVAE / VAE", pair_cell(seconds)),
    ],
    "MCC: mean ± std over seeds (test split); gap: iVAE mean - VAE mean; converged per seed in seed order; ns: "
    "segments, nps: points per segment, nl: mixing layers.",
    is_ica,
)


def half_lines(settings: Sequence[Setting], runs: Runs, rows: Sequence[Row]) -> tuple[list[str], bool]:
    """The pass line of each half (manifold runs: >= EXACT_FRACTION exact; ICA: every identifiable setting
    passes) and whether any half failed."""
    lines, failed = [], False
    for half in HALVES:
        manifold = [s for s in settings if s.table == half and is_manifold(s)]
        if manifold:
            oks = [ok for s in manifold for ok in ok_per_seed(s, runs, lambda r, s=s: exact_run(s, r), True)]
            n, good, bad, missing = len(oks), oks.count(True), oks.count(False), oks.count(None)
            if bad > (1 - EXACT_FRACTION) * n:
                verdict = "FAIL"
            elif missing:
                verdict = "incomplete"
            else:
                verdict = "pass" if good >= EXACT_FRACTION * n else "FAIL"
            unknown = sum(1 for s in manifold for r in runs.completed(s).values() if r.converged is None)
            lines.append(
                f"- **{half}, manifold** (VAE, CVAE, unions): {good}/{n} runs exact and converged "
                f"({100 * good / n:.1f}%; rule >= {EXACT_FRACTION:.0%}): **{verdict}**"
                + (f"; {missing} not run" if missing else "")
                + (f"; {unknown} without a convergence verdict (?)" if unknown else "")
            )
            failed |= verdict == "FAIL"
        icas = [r for r in rows if r.setting.table == half and is_ica(r.setting)]
        verdicts = [r.verdict for r in icas if r.setting.params["identifiable"]]
        if verdicts:
            verdict = (
                "FAIL"
                if "FAIL" in verdicts
                else "incomplete"
                if any(v in ("incomplete", "not run") for v in verdicts)
                else "pass"
            )
            others = len(icas) - len(verdicts)
            lines.append(
                f"- **{half}, ICA**: {verdicts.count('pass')}/{len(verdicts)} identifiable settings pass "
                f"(iVAE mean MCC >= {ICA_MIN_MCC} and >= {ICA_MIN_GAP} above the VAE's): **{verdict}**"
                + (f"; {others} non-identifiable setting(s) without a verdict" if others else "")
            )
            failed |= verdict == "FAIL"
    return lines + confident_wrong_lines(settings, runs), failed


def confident_wrong_lines(settings: Sequence[Setting], runs: Runs) -> list[str]:
    """Per half: completed manifold runs with the wrong AD, and how many of them say ``converged: true``."""
    lines = []
    for half in HALVES:
        wrong = [
            r
            for s in settings
            if s.table == half and is_manifold(s)
            for r in runs.completed(s).values()
            if not exact_run(s, r)
        ]
        if wrong:
            lines.append(
                f"- **{half}**: {len(wrong)} completed manifold run(s) with the wrong AD, "
                f"{sum(r.converged is True for r in wrong)} of them saying `converged: true`"
            )
    return lines


def local_dimension(settings: Sequence[Setting], runs: Runs) -> list[str]:
    """VAE settings: the local dimension of their training data (local PCA) against each seed's AD."""
    from hydra.utils import instantiate

    from vaelab.config import compose_config
    from vaelab.metrics import local_pca_dimension

    rows = []
    for setting in (s for s in settings if s.params["family"] == "vae"):
        data = instantiate(compose_config(setting.overrides).data)
        data.train_dataloader()
        dim = local_pca_dimension(data.split("train")["x"])[0]
        done = runs.completed(setting)
        below = [r for r in done.values() if r.metrics.get("active_dims", dim) < dim]
        rows.append(
            [
                setting.table,
                setting.label,
                str(dim),
                ", ".join(run_cell(r, ["active_dims"]) for r in runs.by_seed(setting).values()),
                f"{len(below)}/{len(done)}",
                ", ".join(converged_cell(r) for r in below) or "-",
            ]
        )
    if not rows:
        return []
    return [
        "### The data's local dimension against the runs' active dims\n\n"
        + markdown_table(
            ["half", "setting", "data local dim (local PCA)", "AD per seed", "runs below it", "their verdict"], rows
        )
        + "\n\nComputed from the training points alone (`vaelab.metrics.local_pca_dimension`). Runs "
        "recorded before the `dims_cover_data` check existed say `converged: true` for these; runs made with it "
        'say `converged: false` ("their verdict": what each run\'s metrics.json says).'
    ]


def draw(chosen: Sequence[Setting], runs: Runs, folder: Path) -> list[Path]:
    """generalization_mcc.png (MCC per ICA setting: iVAE and VAE) and generalization_ad.png (AD per VAE/CVAE
    setting against the expected AD)."""
    drawn = []
    icas = [s for s in chosen if is_ica(s) and (runs.completed(s) or runs.completed(s.reference))]
    if icas:
        shown = [x for s in icas for x in (s, runs.setting(s.reference))]
        drawn.append(
            figures.per_setting(
                folder / "generalization_mcc.png",
                [f"[{s.table}] {s.sweep or s.label}" for s in shown],
                [list(runs.values(s, "mcc").values()) for s in shown],
                "MCC (test split)",
                f"MCC per ICA setting (red: {ICA_MIN_MCC}, identifiable iVAE rows)",
                [ICA_MIN_MCC if s.row and s.params["identifiable"] else None for s in shown],
            )
        )
    single = [s for s in chosen if s.params["family"] in ("vae", "cvae") and runs.completed(s)]
    if single:
        drawn.append(
            figures.per_setting(
                folder / "generalization_ad.png",
                [f"[{s.table}] {s.label}" for s in single],
                [list(runs.values(s, "active_dims").values()) for s in single],
                "active dims",
                "AD per VAE / CVAE setting (red: expected)",
                [float(s.expected) for s in single],
            )
        )
    return drawn


ABOUT = (
    "Settings no default was chosen on, split into a tuning half (seeds 0, 1, 2 by default) and a held-out "
    f"half (seeds 10, 11, 12).\n\n### Pass rules\n\n{PASS_RULES}"
)
STUDY = Study(
    "generalization",
    "Held-out generalization study",
    ABOUT,
    settings,
    [MANIFOLD, ICA],
    draw,
    summary=half_lines,
    sections=local_dimension,
    has_full=False,
)
