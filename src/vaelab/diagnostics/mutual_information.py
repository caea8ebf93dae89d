"""Posterior collapse (Skip-VAE): the mutual information I_q(x; z) between the data and the code."""

from __future__ import annotations

import torch

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation
from vaelab.errors import ConfigError
from vaelab.models.gaussian import DiagonalGaussian


class MutualInformation:
    """``mi`` (nats): I_q(x; z) over the split's first `points` posteriors (metrics.mutual_information), with
    ``mi_ceiling`` (the estimator's bound, log N for the N points used, or log batch_size) and ``mi_saturated``
    (true when mi is within 5% of that bound: it then cannot rank models, metrics.mi_saturated).

    points: > 0 turns it on (0: off). batch_size: null, the aggregate posterior over all `points` (bounded by
    log points); an int, the per-batch estimator of He et al. (2019) (bounded by log batch_size).
    """

    def __init__(self, points: int = 0, batch_size: int | None = None):
        if points < 0:
            raise ConfigError(
                f"callbacks.diagnostics.evaluators.mutual_information.points={points} must be >= 0 (0 turns it off)"
            )
        if batch_size is not None and batch_size < 1:
            raise ConfigError(
                f"callbacks.diagnostics.evaluators.mutual_information.batch_size={batch_size} must "
                "be >= 1 (or null: the whole-set aggregate posterior)"
            )
        self.points, self.batch_size = points, batch_size

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if self.points == 0:
            return Evaluation()
        n = min(self.points, len(ctx.posterior.mean))
        first = DiagonalGaussian(ctx.posterior.mean[:n], ctx.posterior.logvar[:n])
        with ctx.progress(n, "mutual_information", "points") as bar:
            mi = metrics.mutual_information(
                first,
                batch_size=self.batch_size,
                generator=torch.Generator().manual_seed(ctx.seed),
                progress=bar.update,
            )
        return Evaluation(
            scalars={"mi": mi},
            values={
                "mi_ceiling": metrics.mi_ceiling(n, self.batch_size),
                "mi_saturated": metrics.mi_saturated(mi, n, self.batch_size),
            },
        )
