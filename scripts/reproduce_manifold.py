"""Reproduce the tables of Zheng et al. (2022), "Learning Manifold Dimensions with Conditional VAEs".

Each setting is one ``vaelab-train -m`` multirun over seeds (vaelab.reproduce); a setting of a union of
manifolds gives one table row per class or group, read from the per-group active dims of the same runs. The
Markdown table (setting, expected AD, measured AD mean ± std over seeds, gamma, reconstruction error, jobs,
seconds per run, pass/fail) is printed and written to ``<out>/table.md``.

    python scripts/reproduce_manifold.py                      # every table, CPU-sized, seeds 0, 1, 2
    python scripts/reproduce_manifold.py --only T1 --n-jobs 2 # the rows whose label contains "T1"
    python scripts/reproduce_manifold.py --full trainer=gpu   # the paper's sizes
    python scripts/reproduce_manifold.py --table-only         # rebuild the table from the runs on disk

MNIST rows (T2, T4) need the data files: VAELAB_DATA_DIR=/path/holding/mnist/ (or paths.data_dir=...).
Pass/fail: AD (per class/group: that class's AD) equals the expected value in every seed; a CVAE row on
MNIST/Fashion-MNIST (T4) passes when its mean AD is below the mean AD of the VAE row (T2) on the same data.
"""
from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from vaelab import reproduce
from vaelab.reproduce import Setting, completed_runs, markdown_table, mean_std

T1, T3 = "experiment=manifold_t1_cvae_std_prior", "experiment=manifold_t3_learned_prior"
UNION_DIMS = [1, 2, 3, 4, 5]           # conf/data/union_manifold.yaml: class_manifold_dims
GROUP_RANKS, GROUP_R = [2, 4, 6, 8, 10], 12  # conf/data/continuous_groups.yaml


@dataclass
class Row:
    """One table row: read `ad_key` / `recon_key` of the runs of `setting`; `expected` is the AD it should
    have (None: compared with the row labelled `below`, whose mean AD it must be under; neither: no verdict)."""

    label: str
    setting: Setting
    expected: int | None
    ad_key: str = "active_dims"
    recon_key: str = "recon_mse"
    below: str | None = None


def settings_and_rows(gamma_inits: list[float]) -> tuple[list[Setting], list[Row]]:
    settings: list[Setting] = []
    rows: list[Row] = []

    def add(label: str, overrides: list[str], expected: int | None, **row) -> Setting:
        setting = Setting(label, overrides)
        settings.append(setting)
        rows.append(Row(label, setting, expected, **row))
        return setting

    for r in (2, 4, 6, 8):  # the kappa-simple VAE (d = 20, kappa = 20): AD = r
        add(f"T0 VAE r={r}", [f"data.manifold_dim={r}", "trainer.max_epochs=600"], r)
    for t in (1, 3, 5, 7, 9):
        add(f"T1 CVAE N(0,I) prior r=10 t={t}", [T1, f"data.condition_rank={t}"], 10 - t)
    add("T1 CVAE N(0,I) prior r=10 t=5 c=|Au|^0.5", [T1, "data.condition_rank=5", "data.condition_map=sqrt_abs"], 5)
    for dataset in ("mnist", "fashion_mnist"):
        add(f"T2 VAE {dataset}", ["experiment=manifold_t2_vae_mnist", f"data.dataset={dataset}"], None)
    for g in gamma_inits:
        add(f"T3 CVAE learned prior r=10 t=5 log_gamma_init={g:g}", [T3, f"model.log_gamma_init={g:g}"], 5)
    for dataset in ("mnist", "fashion_mnist"):
        add(f"T4 CVAE {dataset}", ["experiment=manifold_t4_cvae_mnist", f"data.dataset={dataset}"], None,
            below=f"T2 VAE {dataset}")
    union = Setting("T5 discrete union", ["experiment=manifold_t5_union"])
    groups = Setting("T6 continuous groups", ["experiment=manifold_t6_groups"])
    settings += [union, groups]
    rows += [Row(f"T5 discrete union class {i} (r_i={r})", union, r, f"group_{i}_active_dims", f"group_{i}_recon_mse")
             for i, r in enumerate(UNION_DIMS)]
    rows += [Row(f"T6 continuous groups t={t}", groups, GROUP_R - t, f"group_{i}_active_dims", f"group_{i}_recon_mse")
             for i, t in enumerate(GROUP_RANKS)]
    for r in (5, 10, 15):
        add(f"T7 learned prior r={r} t=5 c=|Au|^0.5", ["experiment=manifold_t7_decoder", f"data.manifold_dim={r}"], r - 5)
        add(f"T7 prior in decoder r={r} t=5 c=|Au|^0.5", ["experiment=manifold_t7_decoder", f"data.manifold_dim={r}",
                                                          "model.prior=standard", "model.prior_in_decoder=true"], r - 5)
    add("T8 ARMA sequences (LSTM CVAE)", ["experiment=manifold_t8_sequence"], 10)
    return settings, rows


def table(rows: list[Row], out: Path, all_rows: list[Row] | None = None) -> tuple[str, bool]:
    """The Markdown table of `rows` from the runs on disk, and whether any row failed; a row's `below`
    reference is looked up in `all_rows` (default: `rows`) and read from disk even when it is not shown."""
    by_label = {row.label: row for row in (all_rows or rows)}
    lines, failed = [], False
    for row in rows:
        by_seed, n_runs = completed_runs(out, row.setting)
        metrics = list(by_seed.values())
        ads = [m[row.ad_key] for m in metrics if row.ad_key in m]
        if not ads or (row.expected is None and row.below is None):
            verdict = "-"
        elif row.below is not None:
            reference = [m["active_dims"] for m in completed_runs(out, by_label[row.below].setting)[0].values()
                         if "active_dims" in m]
            verdict = "-" if not reference else (
                "pass" if statistics.fmean(ads) < statistics.fmean(reference) else "FAIL")
        else:
            verdict = "pass" if len(ads) == len(metrics) and all(a == row.expected for a in ads) else "FAIL"
        failed |= verdict == "FAIL"
        expected = str(row.expected) if row.expected is not None else (f"< {row.below}" if row.below else "-")
        times = [m["wall_time_s"] for m in metrics if "wall_time_s" in m]
        lines.append([row.label, expected, mean_std(ads), mean_std([m["gamma"] for m in metrics if "gamma" in m]),
                      mean_std([m[row.recon_key] for m in metrics if math.isfinite(m.get(row.recon_key, math.nan))]),
                      f"{len(metrics)}/{n_runs}", f"{statistics.fmean(times):.0f}" if times else "-", verdict])
    header = ["setting", "expected AD", "measured AD", "gamma", "recon MSE", "jobs", "s/run", "result"]
    return markdown_table(header, lines), failed


def main(argv: list[str] | None = None) -> int:
    rows: list[Row] = []

    def settings(full: bool) -> list[Setting]:
        chosen, table_rows = settings_and_rows([-20, -10, -5, 0, 5, 10, 20] if full else [-5, 0, 5])
        if full:  # every experiment=manifold_tN_... becomes its _full variant
            for s in chosen:
                s.overrides = [o + "_full" if o.startswith("experiment=") else o for o in s.overrides]
        rows.extend(table_rows)
        return chosen

    return reproduce.main(settings, "Learning manifold dimensions with CVAEs (Zheng et al. 2022)", [], argv,
                          table=lambda chosen, out: table([r for r in rows if r.setting in chosen], out, rows))


if __name__ == "__main__":
    sys.exit(main())
