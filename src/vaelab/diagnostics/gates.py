"""Gated decoders (x = f(g(c) * z, c), ``model.gated``): the dims a decoder lets through, by its mean gates."""

from __future__ import annotations

import torch

from vaelab import metrics
from vaelab.diagnostics.base import EvalContext, Evaluation, flat_group_keys, group_curves

CURVES = ("group_active_dims_by_gate",)


class GateDiagnostics:
    """For models with ``gated`` true (``model.gates(batch)`` -> (B, k) in (0, 1)): ``active_dims_by_gate``
    (dims whose mean gate over the split exceeds `threshold`; the paper: 0.1), ``per_dim_mean_gate`` (k floats)
    and, with labels ``y``, ``group_active_dims_by_gate`` (mean gates within each group), its flat keys
    ``group_<i>_active_dims_by_gate`` and logger curves ``<split>/group_active_dims_by_gate/g<i>``."""

    def __init__(self, threshold: float = 0.1):
        self.threshold = metrics.check_threshold("callbacks.diagnostics.evaluators.gates.threshold", threshold)

    @torch.no_grad()
    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if not getattr(ctx.model, "gated", False):
            return Evaluation()
        split, device, size = ctx.split, ctx.device, ctx.batch_size
        gates = torch.cat(
            [
                ctx.model.gates({k: v[start : start + size].to(device) for k, v in split.items()}).cpu()
                for start in range(0, len(split["x"]), size)
            ]
        )
        mean_gate = gates.mean(0)
        evaluation = Evaluation(
            scalars={"active_dims_by_gate": metrics.active_dims_by_gate(mean_gate, self.threshold)},
            values={"per_dim_mean_gate": mean_gate.tolist()},
        )
        if "y" in split:
            groups = split["y"].long()
            by_group = {
                "group_active_dims_by_gate": [
                    None if torch.isnan(row).all() else metrics.active_dims_by_gate(row, self.threshold)
                    for row in metrics.group_mean(gates, groups, int(groups.max()) + 1)
                ]
            }
            evaluation.values |= by_group | flat_group_keys(by_group, CURVES)
            evaluation.logged = group_curves(ctx.split_name, by_group, CURVES)
        return evaluation
