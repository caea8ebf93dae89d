"""The evaluator interface: ``Evaluator.evaluate(ctx: EvalContext) -> Evaluation``.

Shapes: N points of the evaluated split, k latent dims. Posterior statistics are on the CPU, in nats where they
are log-densities or KLs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import torch

from vaelab import metrics
from vaelab.data.in_memory import Split
from vaelab.models.base import LatentVariableModel
from vaelab.models.gaussian import DiagonalGaussian


@dataclass
class EvalContext:
    """One split of the data and what one pass of the model over it gave (vaelab.evaluation.collect_posterior).

    ``split`` holds the split's tensors (N rows each, on the CPU); ``posterior`` q(z|x) and ``prior`` p(z|.)
    ((N, k), the prior None for N(0, I)); ``x_hat`` the reconstructions at the posterior means (None for token
    data); ``loss_terms`` the model's loss terms averaged over the split (nats per sample). ``load_split(name)``
    gives another split as evaluation sees it (e.g. the label probe's training split); ``batch_size`` bounds
    the rows of any further model call; ``seed`` seeds any sampling.
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

    def results(self) -> dict[str, Any]:
        """The metrics.json entries: scalars, then values."""
        return {**self.scalars, **self.values}

    def update(self, other: Evaluation) -> None:
        for name in ("scalars", "values", "logged", "histograms"):
            getattr(self, name).update(getattr(other, name))
        self.images.extend(other.images)


class Evaluator(Protocol):
    """Settings come from the constructor (one Hydra node under ``callbacks.diagnostics.evaluators``)."""

    def evaluate(self, ctx: EvalContext) -> Evaluation: ...


def run_evaluators(evaluators: dict[str, Evaluator], ctx: EvalContext) -> Evaluation:
    """All evaluators on one context, in order, merged into one Evaluation (a later key replaces an earlier)."""
    merged = Evaluation()
    for evaluator in evaluators.values():
        merged.update(evaluator.evaluate(ctx))
    return merged


def flat_group_keys(results: dict, keys: tuple[str, ...]) -> dict:
    """``{"group_active_dims": [a, b]}`` -> ``{"group_0_active_dims": a, "group_1_active_dims": b}`` (empty
    groups left out)."""
    return {f"group_{i}_{key[len('group_') :]}": v for key in keys for i, v in enumerate(results[key]) if v is not None}


def group_curves(split_name: str, results: dict, keys: tuple[str, ...]) -> dict[str, float]:
    """Logger tags ``<split>/<key>/g<i>`` of per-group lists (empty groups left out)."""
    return {f"{split_name}/{key}/g{i}": float(v) for key in keys for i, v in enumerate(results[key]) if v is not None}
