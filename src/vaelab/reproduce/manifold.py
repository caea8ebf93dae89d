"""Zheng et al. (2022), "Learning Manifold Dimensions with Conditional VAEs": T0 (the VAE over r) and T1-T8.

One setting per row, seeds 0, 1, 2. A union of manifolds (T5: one class each, T6: one group each) gives a row
per class or group read from the per-group active dims (``group_<i>_active_dims``) of one multirun; the class
and group sizes are read from the composed experiment config. MNIST rows (T2, T4) need the data files
(``VAELAB_DATA_DIR`` or ``paths.data_dir=...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vaelab.reproduce import Runs, Setting, figures
from vaelab.reproduce.rules import exact, mean_below
from vaelab.reproduce.study import Study
from vaelab.reproduce.table import STANDARD_TAIL, Column, Comparison, expected, label, mean_std, run_cell

T1, T3 = "experiment=manifold_t1_cvae_std_prior", "experiment=manifold_t3_learned_prior"
T5, T6 = "experiment=manifold_t5_union", "experiment=manifold_t6_groups"
ABOUT = """\
Each row: the active dims (AD, posterior variance below the threshold of vaelab.metrics) measured in every
seed against the AD the paper's theory gives (r for a VAE on an r-dim manifold, r - t for a CVAE whose
condition explains t dims). Pass: every seed's job completed with exactly the expected AD (T5, T6: that
class's or group's AD). T4 (CVAE on MNIST / Fashion-MNIST): its mean AD is below the mean AD of the T2 VAE on
the same data. T2 has no expected value (numbers only)."""


def union_rows(experiment: str, sweep: str) -> list[tuple[str, int]]:
    """(row label, expected AD) per class (T5) or group (T6), from the composed config of `experiment`."""
    from vaelab.config import compose_config

    data = compose_config([experiment]).data
    if "class_manifold_dims" in data:
        return [(f"{sweep} class {i} (r_i={r})", int(r)) for i, r in enumerate(data.class_manifold_dims)]
    return [(f"{sweep} t={t}", int(data.manifold_dim) - int(t)) for t in data.group_ranks]


def settings(full: bool) -> list[Setting]:
    """Every row; full: each experiment=manifold_tN_... becomes its _full variant and T3 spans more inits."""
    rows: list[Setting] = []

    def add(table: str, row_label: str, overrides: list[str], ad: int | None = None, **more) -> None:
        overrides = [o + "_full" if full and o.startswith("experiment=") else o for o in overrides]
        rule = exact({more.get("params", {}).get("ad_key", "active_dims"): ad}) if ad is not None else None
        rows.append(
            Setting(row_label, overrides, expected="-" if ad is None else str(ad), rule=rule, table=table, **more)
        )

    for r in (2, 4, 6, 8):  # the kappa-simple VAE (d = 20, kappa = 20): AD = r
        add("T0", f"T0 VAE r={r}", [f"data.manifold_dim={r}", "trainer.max_epochs=600"], r, params={"r": r})
    for t in (1, 3, 5, 7, 9):
        add("T1", f"T1 CVAE N(0,I) prior r=10 t={t}", [T1, f"data.condition_rank={t}"], 10 - t)
    add(
        "T1",
        "T1 CVAE N(0,I) prior r=10 t=5 c=|Au|^0.5",
        [T1, "data.condition_rank=5", "data.condition_map=sqrt_abs"],
        5,
    )
    for dataset in ("mnist", "fashion_mnist"):
        add("T2", f"T2 VAE {dataset}", ["experiment=manifold_t2_vae_mnist", f"data.dataset={dataset}"])
    for g in [-20, -10, -5, 0, 5, 10, 20] if full else [-5, 0, 5]:
        add("T3", f"T3 CVAE learned prior r=10 t=5 log_gamma_init={g:g}", [T3, f"model.log_gamma_init={g:g}"], 5)
    for dataset in ("mnist", "fashion_mnist"):
        rows.append(
            Setting(
                f"T4 CVAE {dataset}",
                [f"experiment=manifold_t4_cvae_mnist{'_full' if full else ''}", f"data.dataset={dataset}"],
                expected=f"< T2 VAE {dataset}",
                rule=mean_below("active_dims"),
                table="T4",
                reference=f"T2 VAE {dataset}",
            )
        )
    for table, experiment, sweep in (("T5", T5, "T5 discrete union"), ("T6", T6, "T6 continuous groups")):
        for i, (row_label, ad) in enumerate(union_rows(experiment + ("_full" if full else ""), sweep)):
            add(
                table,
                row_label,
                [experiment],
                ad,
                sweep=sweep,
                params={"group": i, "ad_key": f"group_{i}_active_dims", "recon_key": f"group_{i}_recon_mse"},
            )
    for r in (5, 10, 15):
        t7 = ["experiment=manifold_t7_decoder", f"data.manifold_dim={r}"]
        add("T7", f"T7 learned prior r={r} t=5 c=|Au|^0.5", t7, r - 5)
        add(
            "T7",
            f"T7 prior in decoder r={r} t=5 c=|Au|^0.5",
            [*t7, "model.prior=standard", "model.prior_in_decoder=true"],
            r - 5,
        )
    add("T8", "T8 ARMA sequences (LSTM CVAE)", ["experiment=manifold_t8_sequence"], 10)
    return rows


def key_of(setting: Setting, name: str, default: str) -> str:
    return setting.params.get(name, default)


def measured(setting: Setting, runs: Runs) -> str:
    return mean_std(list(runs.values(setting, key_of(setting, "ad_key", "active_dims")).values()))


def ad_per_seed(setting: Setting, runs: Runs) -> str:
    key = key_of(setting, "ad_key", "active_dims")
    return ", ".join(run_cell(r, [key]) for r in runs.by_seed(setting).values())


def recon(setting: Setting, runs: Runs) -> str:
    return mean_std(list(runs.values(setting, key_of(setting, "recon_key", "recon_mse")).values()))


def gamma(setting: Setting, runs: Runs) -> str:
    return mean_std(list(runs.values(setting, "gamma").values()))


COMPARISON = Comparison(
    "Active dims per setting (Zheng et al. 2022, T0-T8)",
    [
        Column("setting", label),
        Column("expected AD", expected),
        Column("measured AD", measured),
        Column("AD per seed", ad_per_seed),
        Column("gamma", gamma),
        Column("recon MSE", recon),
        *STANDARD_TAIL,
    ],
    "measured AD: mean ± std over the completed seeds; AD per seed in seed order (·: not run; otherwise the "
    "job's status); converged: y / n / ? (no verdict recorded) per seed.",
)


def draw(chosen: Sequence[Setting], runs: Runs, folder: Path) -> list[Path]:
    """manifold_ad_vs_r.png (T0: AD against r) and manifold_groups.png (T5, T6: AD per class or group)."""
    drawn = []
    t0 = [s for s in chosen if s.table == "T0" and runs.completed(s)]
    if t0:
        drawn.append(
            figures.against(
                folder / "manifold_ad_vs_r.png",
                [s.params["r"] for s in t0],
                [list(runs.values(s, "active_dims").values()) for s in t0],
                "manifold dim r",
                "active dims",
                "T0: the VAE's active dims against r (d = 20, kappa = 20)",
            )
        )
    groups = [s for s in chosen if s.table in ("T5", "T6") and runs.completed(s)]
    if groups:
        drawn.append(
            figures.per_setting(
                folder / "manifold_groups.png",
                [s.label for s in groups],
                [list(runs.values(s, s.params["ad_key"]).values()) for s in groups],
                "active dims",
                "T5 / T6: active dims per class or group (red: expected)",
                [float(s.expected) for s in groups],
            )
        )
    return drawn


STUDY = Study(
    "manifold", "Learning manifold dimensions with CVAEs (Zheng et al. 2022)", ABOUT, settings, [COMPARISON], draw
)
