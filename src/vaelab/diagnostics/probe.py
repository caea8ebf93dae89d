"""A downstream probe: how well the posterior means predict the labels ``y``."""

from __future__ import annotations

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation


class LabelProbe:
    """``probe_accuracy`` in [0, 1], on the test split of labelled data: a logistic regression fitted on the
    training split's posterior means and labels (that split as ``ctx.load_split`` gives it, e.g. a fixed
    binarization under dynamic binarization), tested on this split's posterior means and labels."""

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if ctx.split_name != "test" or "y" not in ctx.split:
            return Evaluation()
        from vaelab.evaluation import posterior_means

        train = ctx.load_split("train")
        train_means = posterior_means(ctx.model, train, ctx.batch_size, ctx.seed)
        accuracy = metrics.probe_accuracy(train_means, train["y"], ctx.posterior.mean, ctx.split["y"])
        return Evaluation(scalars={"probe_accuracy": accuracy})
