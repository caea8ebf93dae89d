"""The KL term: E_x KL(q(z|x) || p(z)) in nats, in total and per dim."""

from __future__ import annotations

from vaelab.diagnostics.base import EvalContext, Evaluation


class KL:
    """``kl`` (nats per sample, summed over dims) and ``per_dim_kl`` (k floats, nats per sample)."""

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        kl_dims = ctx.kl_per_dim
        return Evaluation(scalars={"kl": float(kl_dims.sum())}, values={"per_dim_kl": kl_dims.tolist()})
