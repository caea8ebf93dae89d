"""Importance-sampled negative log-likelihood -log p(x) (Burda et al. 2015), and perplexity for text."""

from __future__ import annotations

import torch

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation
from vaelab.errors import ConfigError
from vaelab.likelihood import importance_sampled_nll

TOKEN_CHUNK = 4096  # sequences per token_count call


class ImportanceSampledNLL:
    """``iw_nll`` (nats per sample) on the split's first `points` points with `samples` importance samples;
    when the model counts tokens (``model.token_count``) also ``iw_nll_per_token`` (metrics.json only) and
    ``iw_ppl`` = exp(total NLL / total tokens).

    samples: > 0 turns it on (0: off; 500 in the papers). on_val: also on the validation split (else the test
    split only). max_rows: rows (points x samples) per decode call, memory only (the result does not depend on
    it; text: a few hundred).
    """

    def __init__(self, samples: int = 0, points: int = 1000, on_val: bool = False, max_rows: int = 20_000):
        for key, value in (("samples", samples), ("points", points), ("max_rows", max_rows)):
            if value < 0:
                raise ConfigError(
                    f"callbacks.diagnostics.evaluators.iw_nll.{key}={value} must be >= 0 (0 turns it off)"
                )
        self.samples, self.points, self.on_val, self.max_rows = samples, points, on_val, max_rows

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if self.samples == 0 or not (ctx.split_name == "test" or self.on_val):
            return Evaluation()
        split = ctx.split
        n = min(self.points, len(split["x"]))
        with ctx.progress(n, f"iw_nll with K={self.samples}", unit="pt") as progress:
            nll = importance_sampled_nll(ctx.model, split, self.samples, self.points, self.max_rows, ctx.seed, progress)
        evaluation = Evaluation(scalars={"iw_nll": float(nll.mean())})
        counts = [
            ctx.model.token_count({k: v[start : start + TOKEN_CHUNK] for k, v in split.items()})
            for start in range(0, len(nll), TOKEN_CHUNK)
        ]
        if counts[0] is not None:
            tokens = torch.cat([c.cpu() for c in counts])[: len(nll)]
            evaluation.values["iw_nll_per_token"] = float(nll.sum() / tokens.sum())
            evaluation.scalars["iw_ppl"] = metrics.perplexity(nll, tokens)
        return evaluation
