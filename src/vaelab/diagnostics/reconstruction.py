"""Reconstruction error at the posterior mean, for data with point reconstructions (not token ids)."""

from __future__ import annotations

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation


class ReconstructionError:
    """``recon_mse``: mean squared error per element between x and its reconstruction at the posterior mean
    (nothing for token data, which has no point reconstruction)."""

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if ctx.x_hat is None:
            return Evaluation()
        return Evaluation(scalars={"recon_mse": metrics.recon_mse(ctx.split["x"], ctx.x_hat)})
