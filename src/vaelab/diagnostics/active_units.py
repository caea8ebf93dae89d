"""Active units (Burda et al. 2015): dims whose posterior mean varies over the data, Cov_x(E_q[z_j|x]) > threshold."""

from __future__ import annotations

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation


class ActiveUnits:
    """``active_units`` (count) and ``per_dim_posterior_mean_var`` (k floats).

    threshold: a unit is active above this variance of its posterior mean. per_dim_histograms: TensorBoard
    histograms of each dim's posterior means over the split, ``<split>/posterior_mean/dim_<j>``.
    """

    def __init__(self, threshold: float = 0.01, per_dim_histograms: bool = True):
        self.threshold = metrics.check_threshold("callbacks.diagnostics.evaluators.active_units.threshold", threshold)
        self.per_dim_histograms = per_dim_histograms

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        means = ctx.posterior.mean
        histograms = (
            {f"{ctx.split_name}/posterior_mean/dim_{j:03d}": column for j, column in enumerate(means.T)}
            if self.per_dim_histograms
            else {}
        )
        return Evaluation(
            scalars={"active_units": metrics.active_units(means, self.threshold)},
            values={"per_dim_posterior_mean_var": metrics.posterior_mean_variance(means).tolist()},
            histograms=histograms,
        )
