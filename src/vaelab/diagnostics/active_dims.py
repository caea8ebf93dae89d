"""Active dims (Zheng et al.): dims whose mean encoder variance E_x[sigma_j^2(x)] is below a threshold."""

from __future__ import annotations

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation


class ActiveDims:
    """``active_dims`` (count), ``per_dim_encoder_var`` (k floats; the ratio to a learned prior's variance) and
    ``active_dims_saturated`` (true when every one of the k latent dims is active: the model had no spare dim, so
    its AD is a lower bound of the data's dimension, which a larger ``model.latent_dim`` would show).

    threshold: a dim is active below this mean variance (inactive dims sit at the prior's 1, active ones at
    O(gamma)). per_dim_scalars: also one logger curve per dim, ``<split>/encoder_var/dim_<j>``. TensorBoard: the
    histogram ``<split>/encoder_var`` over dims.
    """

    def __init__(self, threshold: float = 0.1, per_dim_scalars: bool = True):
        self.threshold = metrics.check_threshold("callbacks.diagnostics.evaluators.active_dims.threshold", threshold)
        self.per_dim_scalars = per_dim_scalars

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        enc_var = ctx.encoder_var
        tag = f"{ctx.split_name}/encoder_var/dim_"
        logged = {f"{tag}{j:03d}": float(v) for j, v in enumerate(enc_var)} if self.per_dim_scalars else {}
        active = metrics.active_dims(enc_var, self.threshold)
        return Evaluation(
            scalars={"active_dims": active},
            values={"per_dim_encoder_var": enc_var.tolist(), "active_dims_saturated": active == len(enc_var)},
            logged=logged,
            histograms={f"{ctx.split_name}/encoder_var": enc_var},
        )
