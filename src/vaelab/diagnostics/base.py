"""The evaluator interface: ``Evaluator.evaluate(ctx: EvalContext) -> Evaluation``.

Shapes: N points of the evaluated split, k latent dims. Posterior statistics are on the CPU, in nats where they
are log-densities or KLs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol, TextIO

import torch

from vaelab import metrics
from vaelab.data.in_memory import Split
from vaelab.models.base import LatentVariableModel
from vaelab.models.gaussian import DiagonalGaussian

PROGRESS_DELAY_S = 2.0  # work that ends sooner prints nothing
PLAIN_FIRST_INTERVAL_S = 30.0  # non-TTY: a line at PROGRESS_DELAY_S, then at 30 s, 60 s, 120 s, ... (doubling)
ProgressMode = Literal["off", "tty", "plain"]


def progress_mode(enabled: bool, stream: TextIO | None = None) -> ProgressMode:
    """How evaluation progress is shown: ``off`` when `enabled` is false (``callbacks.progress_bar=null``),
    ``tty`` (one updating line, below the training bar) when `stream` (stderr) is a terminal, ``plain`` (a few
    whole lines, no carriage returns: sweeps, SLURM logs, files) otherwise."""
    if not enabled:
        return "off"
    stream = sys.stderr if stream is None else stream
    try:
        return "tty" if stream.isatty() else "plain"
    except (AttributeError, ValueError):  # a closed or file-less stream
        return "plain"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


class Progress:
    """Progress of one piece of evaluation work of ``total`` units (points, batches ...), named by ``label``.

    ``update(n)`` after each chunk; ``close()`` (or use it as a context manager) at the end. Nothing is printed
    for work that ends within ``delay`` seconds (2 s). Longer work is shown on stderr, where the training bar
    is, without disturbing it: mode ``tty``, one updating line (a tqdm bar below the training bar: label,
    done/total, elapsed and ETA, redrawn at most twice a second, erased at the end); mode ``plain``, whole lines
    at 2 s, 30 s, 60 s, 120 s ... (label, done/total, elapsed, ETA) and one when the work ends; mode ``off``,
    nothing. ``elapsed`` is the time since it was created; ``shown`` whether anything was printed.
    """

    def __init__(
        self,
        total: int,
        label: str,
        mode: ProgressMode = "off",
        unit: str = "it",
        delay: float = PROGRESS_DELAY_S,
        stream: TextIO | None = None,
    ):
        self.total, self.label, self.mode, self.unit, self.delay = int(total), label, mode, unit, delay
        self.stream = stream
        self.done = 0
        self.shown = False
        self.start = time.monotonic()
        self._next_line = delay
        self._bar = None
        if mode == "tty":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                desc=label,
                unit=unit,
                delay=delay,
                leave=False,
                mininterval=0.5,
                dynamic_ncols=True,
                file=self._stream,
            )

    @property
    def _stream(self) -> TextIO:
        return sys.stderr if self.stream is None else self.stream

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def update(self, n: int = 1) -> None:
        """`n` more units done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            self.shown = self.shown or self.elapsed >= self.delay
        elif self.mode == "plain" and self.elapsed >= self._next_line and self.done < self.total:
            elapsed = self.elapsed
            eta = elapsed * (self.total - self.done) / self.done if self.done else None
            left = f", about {_seconds(eta)} left" if eta is not None else ""
            self._write(f"{self.done}/{self.total} {self.unit} after {_seconds(elapsed)}{left}")
            self._next_line = max(PLAIN_FIRST_INTERVAL_S, 2 * elapsed)

    def close(self) -> None:
        """Ends the display: the tty line is erased; in plain mode a last line when anything was shown."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "plain" and self.shown:
            self._write(f"{self.done}/{self.total} {self.unit} in {self.elapsed:.1f} s")
            self.mode = "off"

    def _write(self, text: str) -> None:
        from vaelab.console import write_line

        write_line(f"vaelab: {self.label}: {text}", self._stream)  # a line of its own, below any open bar
        self.shown = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class EvalContext:
    """One split of the data and what one pass of the model over it gave (vaelab.evaluation.collect_posterior).

    ``split`` holds the split's tensors (N rows each, on the CPU); ``posterior`` q(z|x) and ``prior`` p(z|.)
    ((N, k), the prior None for N(0, I)); ``x_hat`` the reconstructions at the posterior means (None for token
    data); ``loss_terms`` the model's loss terms averaged over the split (nats per sample). ``load_split(name)``
    gives another split as evaluation sees it (e.g. the label probe's training split); ``batch_size`` bounds
    the rows of any further model call; ``seed`` seeds any sampling. ``progress(total, label)`` tracks any work
    that may take seconds (a loop over points or samples): see Progress; ``progress_mode`` is set by the caller
    (the Diagnostics callback: off without the progress bar), ``off`` by default.
    """

    model: LatentVariableModel
    split_name: str
    split: Split
    posterior: DiagonalGaussian
    prior: DiagonalGaussian | None
    x_hat: torch.Tensor | None
    loss_terms: dict[str, float]
    batch_size: int
    seed: int = 0
    load_split: Callable[[str], Split] | None = None
    progress_mode: ProgressMode = "off"

    def progress(self, total: int, label: str, unit: str = "it") -> Progress:
        """A Progress for `total` units of work named `label` (prefixed with the split's name), shown as
        ``progress_mode`` says; ``with ctx.progress(n, "iw_nll") as p: ... p.update(k)``."""
        return Progress(total, f"{label} ({self.split_name})", self.progress_mode, unit)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def encoder_var(self) -> torch.Tensor:
        """E_x[sigma_j^2(x)] per dim, shape (k,) (the ratio to the prior's variance with a learned prior)."""
        return metrics.mean_encoder_variance(self.posterior.var, None if self.prior is None else self.prior.var)

    @cached_property
    def kl_per_dim(self) -> torch.Tensor:
        """E_x KL(q(z_j|x) || p(z_j)) per dim in nats, shape (k,)."""
        return metrics.kl_per_dim(self.posterior, self.prior)


@dataclass
class Evaluation:
    """What an evaluator returns, by destination.

    - ``scalars``: numbers written to metrics.json under their key and to every logger as ``<split>/<key>``;
    - ``values``: metrics.json only (per-dim and per-group lists, numbers other code logs already);
    - ``logged``: logger-only scalars under their full tag (per-dim and per-group curves);
    - ``histograms``: TensorBoard histograms of 1-d tensors, by full tag;
    - ``images``: TensorBoard images, as functions that each draw a dict of full tag -> (C, H, W) or (H, W)
      float image in [0, 1], called only when a TensorBoard logger writes them (drawing costs up to seconds).
    """

    scalars: dict[str, float] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    logged: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, torch.Tensor] = field(default_factory=dict)
    images: list[Callable[[], dict[str, torch.Tensor]]] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)  # run_evaluators: seconds per evaluator name

    def results(self) -> dict[str, Any]:
        """The metrics.json entries: scalars, then values."""
        return {**self.scalars, **self.values}

    def update(self, other: Evaluation) -> None:
        for name in ("scalars", "values", "logged", "histograms", "durations"):
            getattr(self, name).update(getattr(other, name))
        self.images.extend(other.images)


class Evaluator(Protocol):
    """Settings come from the constructor (one Hydra node under ``callbacks.diagnostics.evaluators``)."""

    def evaluate(self, ctx: EvalContext) -> Evaluation: ...


def run_evaluators(evaluators: dict[str, Evaluator], ctx: EvalContext) -> Evaluation:
    """All evaluators on one context, in order, merged into one Evaluation (a later key replaces an earlier);
    ``durations`` holds each evaluator's seconds by name."""
    merged = Evaluation()
    for name, evaluator in evaluators.items():
        start = time.perf_counter()
        merged.update(evaluator.evaluate(ctx))
        merged.durations[name] = time.perf_counter() - start
    return merged


def slow_evaluators(durations: dict[str, float], threshold: float = PROGRESS_DELAY_S) -> str:
    """``"iw_nll 9.1 s, mi 2.4 s"``: the evaluators that took longer than `threshold`, slowest first ("" if none)."""
    slow = sorted(((s, n) for n, s in durations.items() if s > threshold), reverse=True)
    return ", ".join(f"{name} {seconds:.1f} s" for seconds, name in slow)


def flat_group_keys(results: dict, keys: tuple[str, ...]) -> dict:
    """``{"group_active_dims": [a, b]}`` -> ``{"group_0_active_dims": a, "group_1_active_dims": b}`` (empty
    groups left out)."""
    return {f"group_{i}_{key[len('group_') :]}": v for key in keys for i, v in enumerate(results[key]) if v is not None}


def group_curves(split_name: str, results: dict, keys: tuple[str, ...]) -> dict[str, float]:
    """Logger tags ``<split>/<key>/g<i>`` of per-group lists (empty groups left out)."""
    return {f"{split_name}/{key}/g{i}": float(v) for key in keys for i, v in enumerate(results[key]) if v is not None}
