"""Image data ((N, C, H, W) in [0, 1]): reconstructions, prior samples and latent traversals."""

from __future__ import annotations

from vaelab.diagnostics.base import EvalContext, Evaluation
from vaelab.errors import ConfigError


class ImagePanels:
    """TensorBoard images ``<split>/reconstructions``, ``<split>/samples`` and ``<split>/traversals`` (one row
    for each of the `dims` latent dims with the largest KL; vaelab.images.image_panels). No numbers.

    dims: traversal rows; 0 turns the panels off.
    """

    def __init__(self, dims: int = 8):
        if dims < 0:
            raise ConfigError(
                f"callbacks.diagnostics.evaluators.image_panels.dims={dims} must be >= 0 (0 turns the panels off)"
            )
        self.dims = dims

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if ctx.split["x"].dim() != 4 or self.dims == 0:
            return Evaluation()
        by_kl = ctx.kl_per_dim.argsort(descending=True)[: self.dims].tolist()

        def draw() -> dict:
            from vaelab.images import image_panels

            panels = image_panels(ctx.model, ctx.split, by_kl, seed=ctx.seed)
            return {f"{ctx.split_name}/{name}": image for name, image in panels.items()}

        return Evaluation(images=[draw])
