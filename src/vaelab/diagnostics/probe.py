"""Downstream probes: how well the posterior means predict the labels ``y`` (vaelab.probes)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from vaelab import probes as probe_functions
from vaelab.diagnostics.base import EvalContext, Evaluation
from vaelab.errors import ConfigError

KEY = "callbacks.diagnostics.evaluators.probe"
PROBES = ("linear", "knn", "mlp")


class LabelProbe:
    """``probe_accuracy_<name>`` in [0, 1] for each probe in `probes`, on the test split of labelled data: fitted
    on the training split's posterior means and labels (that split as ``ctx.load_split`` gives it, e.g. a fixed
    binarization under dynamic binarization), scored on this split's posterior means and labels.

    probes: any of ``linear`` (multinomial logistic regression), ``knn`` (k nearest neighbours, k chosen among
    `k` on a validation cut of the training split), ``mlp`` (one hidden layer of `hidden` units, early-stopped
    on that cut after `patience` epochs without a lower validation loss, at most `max_epochs`); [] turns
    the evaluator off. validation_fraction: the share of the training split cut for validation.

    metrics.json also gets ``probe_seconds_<name>`` (the fit and scoring time, the encoding of the training split
    apart: ``probe_seconds_encode``), ``probe_knn_k`` (the chosen k) and ``probe_mlp_epochs`` (epochs trained).
    Asked for on data without labels (any split): a ConfigError naming ``probe.probes``.
    """

    def __init__(
        self,
        probes: Sequence[str] = PROBES,
        k: Sequence[int] = probe_functions.KNN_CANDIDATES,
        validation_fraction: float = 0.1,
        hidden: int = 256,
        max_epochs: int = 100,
        patience: int = 5,
    ):
        probes = list(probes or [])
        unknown = [p for p in probes if p not in PROBES]
        if unknown or len(set(probes)) != len(probes):
            raise ConfigError(f"{KEY}.probes={probes}: each of {list(PROBES)} at most once ([] turns the probes off)")
        k = [int(v) for v in (k or [])]
        if not k or min(k) < 1:
            raise ConfigError(f"{KEY}.k={k} must be a non-empty list of candidate k >= 1, e.g. [1, 3, 5, 10, 20]")
        if not 0 < validation_fraction < 1:
            raise ConfigError(f"{KEY}.validation_fraction={validation_fraction} must be in (0, 1), e.g. 0.1")
        for name, value in (("hidden", hidden), ("max_epochs", max_epochs), ("patience", patience)):
            if int(value) != value or value < 1:
                raise ConfigError(f"{KEY}.{name}={value} must be an integer >= 1")
        self.probes, self.k, self.validation_fraction = probes, k, float(validation_fraction)
        self.hidden, self.max_epochs, self.patience = int(hidden), int(max_epochs), int(patience)

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if not self.probes:
            return Evaluation()
        if "y" not in ctx.split:
            raise ConfigError(
                f"{KEY}.probes={self.probes} needs labels y, which this data has none of; set "
                f"{KEY}.probes=[] (or {KEY}=null)"
            )
        if ctx.split_name != "test":
            return Evaluation()
        from vaelab.evaluation import posterior_means

        start = time.perf_counter()
        train = ctx.load_split("train")
        train_x, train_y = posterior_means(ctx.model, train, ctx.batch_size, ctx.seed), train["y"]
        test_x, test_y = ctx.posterior.mean, ctx.split["y"]
        values: dict = {"probe_seconds_encode": time.perf_counter() - start}
        n_fit = len(train_x) - max(1, round(self.validation_fraction * len(train_x)))
        if "knn" in self.probes and max(self.k) > n_fit:
            raise ConfigError(
                f"{KEY}.k={self.k}: k={max(self.k)} is more than the {n_fit} training points the kNN fits on "
                f"({len(train_x)} less the validation cut); choose k <= {n_fit}"
            )
        scalars = {}
        for name in self.probes:
            start = time.perf_counter()
            if name == "linear":
                result = probe_functions.linear_probe(train_x, train_y, test_x, test_y)
            elif name == "knn":
                n_val = len(train_x) - n_fit
                with ctx.progress(n_val + len(test_x), "probe knn", "points") as bar:
                    result = probe_functions.knn_probe(
                        train_x,
                        train_y,
                        test_x,
                        test_y,
                        self.k,
                        self.validation_fraction,
                        ctx.seed,
                        progress=bar.update,
                    )
                values["probe_knn_k"] = result.details["k"]
            else:
                with ctx.progress(self.max_epochs, "probe mlp (at most)", "epochs") as bar:
                    result = probe_functions.mlp_probe(
                        train_x,
                        train_y,
                        test_x,
                        test_y,
                        hidden=self.hidden,
                        max_epochs=self.max_epochs,
                        patience=self.patience,
                        validation_fraction=self.validation_fraction,
                        seed=ctx.seed,
                        progress=bar.update,
                    )
                values["probe_mlp_epochs"] = result.details["epochs"]
            scalars[f"probe_accuracy_{name}"] = result.accuracy
            values[f"probe_seconds_{name}"] = round(time.perf_counter() - start, 3)
        values["probe_seconds_encode"] = round(values["probe_seconds_encode"], 3)
        return Evaluation(scalars=scalars, values=values)
