"""Khemakhem et al. (2020): iVAE vs VAE vs beta-VAE, MCC (in [0, 1], test split) on the nonlinear-ICA segment
data, 5-D (the default) and 2-D, seeds 0-4.

Claims: iVAE mean MCC >= 0.90 (5-D) and >= 0.95 (2-D); the VAE and the beta-VAE at least GAP below the iVAE
of the same dimension, as means over the seeds both rows have.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vaelab.reproduce import Runs, Setting, figures
from vaelab.reproduce.rules import gap_below, mean_at_least, shared_gap
from vaelab.reproduce.study import Study
from vaelab.reproduce.table import STANDARD_TAIL, Column, Comparison, expected, label, per_seed, stat

GAP = 0.15  # the baselines' mean MCC must be this far below the iVAE's
SEEDS = [0, 1, 2, 3, 4]
ABOUT = f"""\
Identifiability (papers.md section 2): the iVAE, whose prior is conditioned on the segment label, recovers
the sources up to permutation and elementwise maps; the VAE and the beta-VAE do not. MCC: mean over sources of
the |correlation| of each source with its matched latent (test split). Pass: every seed's job completed and
the iVAE's mean MCC reaches its bound; a baseline's mean MCC is >= {GAP} below the iVAE's of the same
dimension (on the seeds both have)."""


def settings(full: bool) -> list[Setting]:
    """The six rows (5-D and 2-D: iVAE, VAE, beta-VAE); the experiments are the paper's sizes (no `full`)."""
    rows = []
    for dim, suffix, bound in (("5-D", "", 0.90), ("2-D", "_2d", 0.95)):
        ivae = f"iVAE {dim}"
        rows.append(
            Setting(
                ivae,
                [f"experiment=ivae{suffix}"],
                SEEDS,
                f"MCC >= {bound:.2f}",
                mean_at_least("mcc", bound),
                dim,
                params={"bound": bound},
            )
        )
        for name, experiment in (("VAE", "vae_ica"), ("beta-VAE", "betavae_ica")):
            rows.append(
                Setting(
                    f"{name} {dim}",
                    [f"experiment={experiment}{suffix}"],
                    SEEDS,
                    f"{GAP} below {ivae}",
                    gap_below("mcc", GAP),
                    dim,
                    reference=ivae,
                )
            )
    return rows


def gap(setting: Setting, runs: Runs) -> str:
    """The reference iVAE's mean MCC minus this row's, on the seeds both have."""
    if not setting.reference:
        return "-"
    found = shared_gap(setting, setting.reference, runs, "mcc")
    if found is None:
        return f"no {setting.reference} runs on these seeds" if runs.completed(setting) else "-"
    return f"{found[0]:.3f} ({found[1]} seed{'s' if found[1] > 1 else ''})"


COMPARISON = Comparison(
    "Identifiability: iVAE vs VAE vs beta-VAE (MCC on the test split)",
    [
        Column("setting", label),
        Column("expected", expected),
        Column("mcc", stat("mcc")),
        Column("per seed", per_seed("mcc", digits=".3f")),
        Column("elbo", stat("elbo")),
        Column("gap to iVAE", gap),
        *STANDARD_TAIL,
    ],
    "mcc: mean ± std over the completed seeds, per seed in seed order; elbo: nats per point (test split).",
)


def draw(chosen: Sequence[Setting], runs: Runs, folder: Path) -> list[Path]:
    """ivae_mcc.png: MCC per setting, seeds as dots (red: the iVAE's bound)."""
    shown = [s for s in chosen if runs.completed(s)]
    if not shown:
        return []
    return [
        figures.per_setting(
            folder / "ivae_mcc.png",
            [s.label for s in shown],
            [list(runs.values(s, "mcc").values()) for s in shown],
            "MCC (test split)",
            "MCC per setting (red: the iVAE's bound)",
            [s.params.get("bound") for s in shown],
        )
    ]


STUDY = Study(
    "ivae",
    "Identifiability: iVAE vs VAE vs beta-VAE (Khemakhem et al. 2020)",
    ABOUT,
    settings,
    [COMPARISON],
    draw,
    has_full=False,
)
