"""The ELBO and the model's other loss terms over the whole split, and the model's own scalars (e.g. gamma)."""

from __future__ import annotations

from vaelab.diagnostics.base import EvalContext, Evaluation


class LossTerms:
    """``elbo`` (nats per sample; -neg_elbo when the model reports it apart from its loss, else -loss), then
    ``objective`` (the loss, what training minimises) when it is not the negative ELBO, every
    other loss term but ``loss`` and ``kl`` (e.g. ``recon``, nats per sample) and ``model.scalars()`` (e.g.
    ``gamma``): metrics.json. Loggers: every loss term as ``<split>/<term>`` (``val/loss``, ``test/recon_nll``),
    the curves the training module's validation loop writes at its own validation runs: so the validation
    curves also have their point at the end of training, and the test split its loss terms."""

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        terms = ctx.loss_terms
        values = {
            "elbo": -terms.get("neg_elbo", terms["loss"]),
            **({"objective": terms["loss"]} if "neg_elbo" in terms else {}),
            **{name: value for name, value in terms.items() if name not in ("loss", "kl", "neg_elbo")},
            **ctx.model.scalars(),
        }
        logged = {f"{ctx.split_name}/{name}": float(value) for name, value in terms.items()}
        return Evaluation(values=values, logged=logged)
