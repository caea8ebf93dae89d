"""Dieng et al. (2019), Skip-VAE: standard vs skip decoders over seeds 0, 1, 2.

MNIST (MLP at latent sizes 16, 32, 64, gated PixelCNN) and text (PTB, CPU-sized LSTM VAE: standard, skip,
SA-VAE, skip + SA-VAE; the paper's claim is on Yahoo). Metrics (final test split, mean ± std over seeds):
iw_nll (importance-sampled NLL, nats), elbo, kl, mi (I(x;z), nats), active_units, probe_accuracy (logistic
regression on posterior means, train -> test; MNIST only) and iw_ppl (perplexity from the IW-NLL; text only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from vaelab.reproduce import Runs, Setting, figures
from vaelab.reproduce.rules import paired
from vaelab.reproduce.study import Study
from vaelab.reproduce.table import STANDARD_TAIL, Column, Comparison, expected, label, stat

METRICS = ["iw_nll", "elbo", "kl", "mi", "active_units", "probe_accuracy", "iw_ppl"]
IMAGE_CLAIM = "MI, AU, acc above standard; NLL within 1 nat"
ABOUT = """\
Each skip row is compared with the standard row of the same model, seed by seed. Pass (MNIST): every seed's
job of both rows completed and, on every seed, the skip decoder has higher mi, at least as many active units,
higher probe accuracy and an iw_nll within 1 nat of the standard decoder's. Pass (text, no labels): higher mi
and at least as many active units. The latent-size rows are checked like z32; the paper's "the gap grows with
the latent size" is read across them."""


def get(metrics: dict, key: str) -> float:
    return metrics.get(key, math.nan)


def image_claim(skip: dict, standard: dict) -> bool:
    """Higher mi, at least as many active units, higher probe accuracy, and iw_nll within 1 nat."""
    return (
        get(skip, "mi") > get(standard, "mi")
        and get(skip, "active_units") >= get(standard, "active_units")
        and get(skip, "probe_accuracy") > get(standard, "probe_accuracy")
        and abs(get(skip, "iw_nll") - get(standard, "iw_nll")) <= 1.0
    )


def text_claim(skip: dict, standard: dict) -> bool:
    """Higher mi and at least as many active units (text has no labels, so no probe)."""
    return get(skip, "mi") > get(standard, "mi") and get(skip, "active_units") >= get(standard, "active_units")


def pair(
    table: str,
    name: str,
    overrides: list[str],
    reference: str,
    expected_text: str,
    claim,
    reference_text: str = "reference row",
) -> list[Setting]:
    """A reference row (model.skip=false) and its skip row (model.skip=true), compared seed by seed."""
    return [
        Setting(reference, [*overrides, "model.skip=false"], expected=reference_text, table=table),
        Setting(
            name,
            [*overrides, "model.skip=true"],
            expected=expected_text,
            table=table,
            reference=reference,
            rule=paired(claim, expected_text),
        ),
    ]


def settings(full: bool) -> list[Setting]:
    """The MNIST pairs and the text rows; full: the _full experiments (the paper's sizes)."""
    mlp = ["experiment=skip_mnist_mlp" + ("_full" if full else "")]
    cnn = ["experiment=skip_mnist_pixelcnn" + ("_full" if full else "")]
    text = ["experiment=text_ptb_full"] if full else ["experiment=text_ptb"]
    text_sa = ["experiment=text_ptb_full", "inference=sa"] if full else ["experiment=text_ptb_sa"]
    rows = []
    for name, overrides in (
        ("mnist_mlp_z32", mlp),
        ("mnist_pixelcnn", cnn),
        ("mnist_mlp_z16", [*mlp, "model.latent_dim=16"]),
        ("mnist_mlp_z64", [*mlp, "model.latent_dim=64"]),
    ):
        rows += pair("MNIST", f"{name}_skip", overrides, f"{name}_standard", IMAGE_CLAIM, image_claim)
    rows += pair("text", "text_ptb_skip", text, "text_ptb_standard", "MI, AU above standard", text_claim)
    rows += pair(
        "text",
        "text_ptb_skip_sa",
        text_sa,
        "text_ptb_sa",
        "MI, AU above SA alone",
        text_claim,
        "reference row for skip + SA",
    )
    return rows


COMPARISON = Comparison(
    "Skip-VAE: standard vs skip decoders",
    [Column("setting", label), Column("expected", expected), *(Column(m, stat(m)) for m in METRICS), *STANDARD_TAIL],
    "mean ± std over the completed seeds; iw_nll, elbo, kl, mi in nats; probe_accuracy: MNIST rows; iw_ppl: text.",
)


def mean_sorted_kl(setting: Setting, runs: Runs) -> list[float] | None:
    """The per-dimension KL (nats, test split) sorted from the largest, averaged over the completed seeds;
    None when no run file has ``per_dim_kl``."""
    found = [
        sorted(kl, reverse=True)
        for run in runs.completed(setting).values()
        if (kl := runs.record(setting, run).get("per_dim_kl"))
    ]
    if not found or len({len(k) for k in found}) != 1:
        return None
    return [sum(column) / len(found) for column in zip(*found, strict=True)]


def draw(chosen: Sequence[Setting], runs: Runs, folder: Path) -> list[Path]:
    """skip_kl_<row>.png per skip row: its sorted per-dimension KL against the reference row's."""
    drawn = []
    for setting in (s for s in chosen if s.reference):
        curves = {s.label: mean_sorted_kl(s, runs) for s in (runs.setting(setting.reference), setting)}
        if all(curves.values()):
            drawn.append(
                figures.curves(
                    folder / f"skip_kl_{setting.label}.png",
                    curves,
                    "latent dimension (sorted by KL)",
                    "KL (nats, mean over seeds)",
                    f"per-dimension KL: {setting.reference} vs {setting.label}",
                )
            )
    return drawn


def kl_section(chosen: Sequence[Setting], runs: Runs) -> list[str]:
    """Says which completed pairs have no per-dimension KL in their run files (and so no figure)."""
    missing = [
        s.label
        for s in chosen
        if s.reference
        and runs.completed(s)
        and runs.completed(s.reference)
        and not (mean_sorted_kl(s, runs) and mean_sorted_kl(runs.setting(s.reference), runs))
    ]
    if not missing:
        return []
    return [
        "### Per-dimension KL\n\nNo figure for " + ", ".join(missing) + ": their run files (or their "
        "reference's) have no `per_dim_kl` list."
    ]


STUDY = Study(
    "skip",
    "Skip-VAE: standard vs skip decoders (Dieng et al. 2019)",
    ABOUT,
    settings,
    [COMPARISON],
    draw,
    sections=kl_section,
)
