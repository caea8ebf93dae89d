"""Active units (Burda et al. 2015): dims whose posterior mean varies over the data, Cov_x(E_q[z_j|x]) > threshold."""

from __future__ import annotations

from collections.abc import Sequence

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation
from vaelab.errors import ConfigError


class ActiveUnits:
    """``active_units`` (count, at `threshold`), ``active_units_<t>`` (count, at each of `report_thresholds`)
    and ``per_dim_posterior_mean_var`` (k floats).

    threshold: a unit is active above this variance of its posterior mean (what convergence reads).
    report_thresholds: further fixed thresholds reported side by side, so that runs compare across papers
    (0.01: Burda et al.; 0.02: the Skip-VAE reference code); each key is ``active_units_`` + the threshold as
    Python's ``{:g}`` writes it (``active_units_0.01``, ``active_units_0.02``). per_dim_histograms: TensorBoard
    histograms of each dim's posterior means over the split, ``<split>/posterior_mean/dim_<j>``.
    """

    def __init__(
        self,
        threshold: float = 0.01,
        per_dim_histograms: bool = True,
        report_thresholds: Sequence[float] = (0.01, 0.02),
    ):
        self.threshold = metrics.check_threshold("callbacks.diagnostics.evaluators.active_units.threshold", threshold)
        self.per_dim_histograms = per_dim_histograms
        if report_thresholds is None or isinstance(report_thresholds, (str, int, float)):
            raise ConfigError(
                "callbacks.diagnostics.evaluators.active_units.report_thresholds="
                f"{report_thresholds!r} must be a list of thresholds > 0 (e.g. [0.01, 0.02]; [] for none)"
            )
        self.report_thresholds = [
            metrics.check_threshold("callbacks.diagnostics.evaluators.active_units.report_thresholds", t)
            for t in report_thresholds
        ]

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        means = ctx.posterior.mean
        variance = metrics.posterior_mean_variance(means)
        histograms = (
            {f"{ctx.split_name}/posterior_mean/dim_{j:03d}": column for j, column in enumerate(means.T)}
            if self.per_dim_histograms
            else {}
        )
        scalars = {"active_units": int((variance > self.threshold).sum())}
        scalars.update({f"active_units_{t:g}": int((variance > t).sum()) for t in self.report_thresholds})
        return Evaluation(
            scalars=scalars, values={"per_dim_posterior_mean_var": variance.tolist()}, histograms=histograms
        )
