"""The KL term: E_x KL(q(z|x) || p(z)) in nats, in total and per dim."""

from __future__ import annotations

from vaelab.diagnostics.base import EvalContext, Evaluation


class KL:
    """``kl`` (nats per sample, summed over dims), ``per_dim_kl`` (k floats, nats per sample, in dimension order)
    and ``kl_per_dim`` (the same k values sorted from the largest: the profile that separates models whose total
    KL, MI and active units agree).

    figure: the TensorBoard image ``test/kl_per_dim``, a bar chart of the sorted per-dimension KL, on the test
    split only (a quarter of a second to draw: too much for every validation run of a small model).
    """

    def __init__(self, figure: bool = True):
        self.figure = bool(figure)

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        kl_dims = ctx.kl_per_dim
        ordered = kl_dims.sort(descending=True)
        images = []
        if self.figure and ctx.split_name == "test":
            tag = f"{ctx.split_name}/kl_per_dim"
            values, dims = ordered.values.clone(), ordered.indices.clone()

            def draw() -> dict:
                from vaelab.images import bar_chart  # matplotlib: imported only when drawing

                return {
                    tag: bar_chart(
                        values,
                        [str(int(d)) for d in dims],
                        "latent dimension (sorted by KL)",
                        "KL (nats per sample)",
                        f"per-dimension KL, {ctx.split_name} split (total {float(values.sum()):.2f})",
                    )
                }

            images.append(draw)
        return Evaluation(
            scalars={"kl": float(kl_dims.sum())},
            values={"per_dim_kl": kl_dims.tolist(), "kl_per_dim": ordered.values.tolist()},
            images=images,
        )
