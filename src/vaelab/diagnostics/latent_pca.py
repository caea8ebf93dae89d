"""A picture of the code: the posterior means projected on their two principal axes, coloured by label."""

from __future__ import annotations

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation


class LatentPCA:
    """TensorBoard image ``<split>/posterior_mean_pca`` on the test split of labelled data (a matplotlib figure:
    drawn once, at the end). No numbers."""

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if ctx.split_name != "test" or "y" not in ctx.split:
            return Evaluation()
        means, labels, tag = ctx.posterior.mean, ctx.split["y"], f"{ctx.split_name}/posterior_mean_pca"

        def draw() -> dict:
            from vaelab.images import label_scatter  # matplotlib: imported only when drawing

            return {tag: label_scatter(metrics.pca_2d(means), labels)}

        return Evaluation(images=[draw])
