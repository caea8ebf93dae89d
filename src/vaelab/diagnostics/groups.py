"""Per class or group (labels ``y``, ints 0..G-1; a union of manifolds): active dims and reconstruction error
within each group, never pooled over groups (manifold dimensions with CVAEs)."""

from __future__ import annotations

import torch

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation, flat_group_keys, group_curves

CURVES = ("group_active_dims", "group_recon_mse")


class GroupDiagnostics:
    """On splits with labels ``y``: ``group_sizes``, ``group_active_dims`` (within each group, by the variance
    ratio to a learned prior when there is one), ``group_recon_mse``, ``group_encoder_var`` (G lists of k mean
    variances) and the same numbers as flat keys ``group_<i>_active_dims`` / ``group_<i>_recon_mse`` (for tables
    over runs); logger curves ``<split>/group_active_dims/g<i>`` and ``<split>/group_recon_mse/g<i>``.

    threshold: as active_dims' (the config ties the two). active_dims_map: TensorBoard image
    ``<split>/active_dims_map`` of which dims each of the first `per_group` samples of each group uses.
    """

    def __init__(self, threshold: float = 0.1, active_dims_map: bool = True, per_group: int = 32):
        self.threshold = metrics.check_threshold("callbacks.diagnostics.evaluators.groups.threshold", threshold)
        self.active_dims_map, self.per_group = active_dims_map, per_group

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if "y" not in ctx.split:
            return Evaluation()
        groups = ctx.split["y"].long()
        n_groups = int(groups.max()) + 1
        prior_var = None if ctx.prior is None else ctx.prior.var
        group_var = metrics.group_mean_encoder_variance(ctx.posterior.var, groups, n_groups, prior_var)
        results = {
            "group_sizes": torch.bincount(groups, minlength=n_groups).tolist(),
            "group_active_dims": metrics.group_active_dims(group_var, self.threshold),
            "group_recon_mse": metrics.group_recon_mse(ctx.split["x"], ctx.x_hat, groups, n_groups),
            "group_encoder_var": group_var.tolist(),
        }
        evaluation = Evaluation(
            values=results | flat_group_keys(results, CURVES), logged=group_curves(ctx.split_name, results, CURVES)
        )
        if self.active_dims_map:
            tag = f"{ctx.split_name}/active_dims_map"
            evaluation.images.append(
                lambda: {tag: active_dims_image(ctx.posterior.var, groups, self.threshold, prior_var, self.per_group)}
            )
        return evaluation


def active_dims_image(
    var: torch.Tensor,
    groups: torch.Tensor,
    threshold: float,
    prior_var: torch.Tensor | None = None,
    per_group: int = 32,
    scale: int = 4,
) -> torch.Tensor:
    """The per-sample active-dims map (metrics.active_dims_map) of encoder variances var (N, k) as an (H, W)
    image in [0, 1]: white where a sample (row; `per_group` per class, classes in order, a grey line between
    classes) uses a dim (column), each cell `scale` pixels wide and high."""
    cells, row_groups = metrics.active_dims_map(var, groups, threshold, prior_var, per_group)
    rows = []
    for i, row in enumerate(cells):
        if i > 0 and row_groups[i] != row_groups[i - 1]:
            rows.append(torch.full_like(row, 0.5))
        rows.append(row)
    return torch.stack(rows).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
