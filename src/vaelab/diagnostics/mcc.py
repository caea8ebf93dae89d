"""Identifiability on data with true latents ``z_true``: the mean correlation coefficient (MCC) between the true
sources (N, n) and the posterior means (N, k), or one posterior sample of each point."""

from __future__ import annotations

import torch

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation
from vaelab.errors import ConfigError
from vaelab.models.gaussian import DiagonalGaussian


def mcc_latents(q: DiagonalGaussian, sample: bool = False, seed: int = 0) -> torch.Tensor:
    """The estimates MCC is computed on: the posterior means (N, k), or one sample of each posterior."""
    if not sample:
        return q.mean
    return q.mean + q.var.sqrt() * torch.randn(q.mean.shape, generator=torch.Generator().manual_seed(seed))


def identifiability(
    z_true: torch.Tensor, q: DiagonalGaussian, method: str = "pearson", sample: bool = False, seed: int = 0
) -> dict:
    """MCC between the true latents (N, n) and the posterior means (N, k), or one posterior sample each
    (``sample``, drawn with `seed`): ``mcc``, ``mcc_per_source`` (matched |corr| of each source, 0 when
    unmatched) and ``mcc_latent_of_source`` (the matched latent dim, -1 when unmatched)."""
    value, details = metrics.mcc(z_true, mcc_latents(q, sample, seed), method)
    per_source, latent_of = [0.0] * z_true.shape[1], [-1] * z_true.shape[1]
    for i, j, m in zip(details["source"], details["latent"], details["matched"], strict=True):
        per_source[i], latent_of[i] = m, j
    return {"mcc": value, "mcc_per_source": per_source, "mcc_latent_of_source": latent_of}


class MCC:
    """``mcc`` in [0, 1], ``mcc_per_source`` and ``mcc_latent_of_source`` (n each), on splits with ``z_true``.

    method: pearson | spearman correlations. sample: false, MCC of the posterior means; true, of one posterior
    sample per point. train_sample: on the test split, also ``mcc_train_sample``: the training split scored
    with one posterior sample per point (how the reference iVAE code scores: its training set, one sample) and
    the same method. figures: TensorBoard, on the test split only (~3 s to draw), the matched |correlation|
    matrix ``<split>/mcc_matrix`` and the (source, latent) scatter plots ``<split>/mcc_scatter``.
    """

    def __init__(self, method: str = "pearson", sample: bool = False, train_sample: bool = False, figures: bool = True):
        if method not in metrics.MCC_METHODS:
            raise ConfigError(
                f"callbacks.diagnostics.evaluators.mcc.method={method!r} is unknown; choose one of "
                f"{list(metrics.MCC_METHODS)}"
            )
        self.method, self.sample, self.train_sample, self.figures = method, sample, train_sample, figures

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if "z_true" not in ctx.split:
            return Evaluation()
        results = identifiability(ctx.split["z_true"], ctx.posterior, self.method, self.sample, ctx.seed)
        evaluation = Evaluation(scalars={"mcc": results.pop("mcc")}, values=results)
        if self.train_sample and ctx.split_name == "test" and ctx.load_split is not None:
            evaluation.scalars["mcc_train_sample"] = self._train_sample(ctx)
        if self.figures and ctx.split_name == "test":
            z_true, z = ctx.split["z_true"], mcc_latents(ctx.posterior, self.sample, ctx.seed)
            latent_of_source = results["mcc_latent_of_source"]

            def draw() -> dict[str, torch.Tensor]:
                from vaelab.mcc_figures import mcc_figures  # matplotlib: imported only when drawing

                figures = mcc_figures(
                    z_true, z, metrics.abs_correlation(z_true, z, self.method), latent_of_source, seed=ctx.seed
                )
                return {f"{ctx.split_name}/{name}": image for name, image in figures.items()}

            evaluation.images.append(draw)
        return evaluation

    def _train_sample(self, ctx: EvalContext) -> float:
        """MCC of one posterior sample per point of the training split against its true latents."""
        from vaelab.evaluation import encode_split, pass_label

        train = ctx.load_split("train")
        with ctx.progress(len(train["x"]), pass_label(ctx.model, "train"), unit="pt") as progress:
            q = encode_split(ctx.model, train, ctx.batch_size, ctx.seed, progress)
        return identifiability(train["z_true"], q, self.method, sample=True, seed=ctx.seed)["mcc"]
