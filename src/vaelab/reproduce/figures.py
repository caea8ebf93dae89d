"""PNG figures of the results pages, drawn on matplotlib's Agg canvas (no global backend change).

Each function draws one figure from plain numbers and saves it; the studies collect the numbers from the run
files. Seeds are dots, their mean a bar or a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path)
    return path


def per_setting(
    path: Path,
    labels: Sequence[str],
    values: Sequence[Sequence[float]],
    ylabel: str,
    title: str,
    reference: Sequence[float | None] | None = None,
) -> Path:
    """One column per setting: its seeds as dots, their mean as a bar; `reference` (one value per setting,
    None for none) as a red dash (e.g. the expected value)."""
    longest = max((len(label) for label in labels), default=0)  # the rotated labels need this much height
    fig = new_figure(max(5.0, 0.45 * len(labels) + 1.5), 3.5 + 0.055 * longest)
    ax = fig.add_subplot()
    for i, seeds in enumerate(values):
        if seeds:
            ax.bar(i, sum(seeds) / len(seeds), color="tab:blue", alpha=0.35)
            ax.plot([i] * len(seeds), seeds, "o", color="tab:blue", markersize=4)
        if reference is not None and reference[i] is not None:
            ax.plot([i - 0.4, i + 0.4], [reference[i]] * 2, color="tab:red", linewidth=2)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return save(fig, path)


def against(path: Path, x: Sequence[float], y: Sequence[Sequence[float]], xlabel: str, ylabel: str, title: str) -> Path:
    """y against x (each x: its seeds as dots, their mean joined by a line) with the diagonal y = x."""
    fig = new_figure(4.5, 4.5)
    ax = fig.add_subplot()
    for xi, seeds in zip(x, y, strict=True):
        ax.plot([xi] * len(seeds), seeds, "o", color="tab:blue", markersize=4)
    means = [(xi, sum(s) / len(s)) for xi, s in zip(x, y, strict=True) if s]
    if means:
        ax.plot(*zip(*means, strict=True), "-", color="tab:blue", label="mean over seeds")
    low, high = min(x, default=0), max(x, default=1)
    ax.plot([low, high], [low, high], "--", color="tab:red", label="y = x")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save(fig, path)


def curves(path: Path, named: dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str) -> Path:
    """One line per name (e.g. the sorted per-dimension KL of a standard and a skip decoder)."""
    fig = new_figure(5.5, 4.0)
    ax = fig.add_subplot()
    for name, values in named.items():
        ax.plot(range(1, len(values) + 1), values, "o-", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return save(fig, path)
