"""The ELBO and the model's other loss terms over the whole split, and the model's own scalars (e.g. gamma)."""

from __future__ import annotations

from vaelab.diagnostics.base import EvalContext, Evaluation


class LossTerms:
    """``elbo`` (nats per sample; -neg_elbo when the model reports it apart from its loss, else -loss), every
    other loss term but ``loss`` and ``kl`` (e.g. ``recon``, nats per sample) and ``model.scalars()`` (e.g.
    ``gamma``): metrics.json only (the training module logs the loss terms as ``val/<term>`` already)."""

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        terms = ctx.loss_terms
        values = {
            "elbo": -terms.get("neg_elbo", terms["loss"]),
            **{name: value for name, value in terms.items() if name not in ("loss", "kl", "neg_elbo")},
            **ctx.model.scalars(),
        }
        return Evaluation(values=values)
