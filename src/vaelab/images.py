"""Image panels for TensorBoard when samples are images, x of shape (C, H, W) with values in [0, 1]:
reconstructions, samples from the prior and latent traversals (no torchvision: grids are made here)."""

from __future__ import annotations

import torch

from vaelab.data.in_memory import GROUND_TRUTH_KEYS, Split
from vaelab.models.base import LatentVariableModel


def image_grid(images: torch.Tensor, nrow: int, pad: int = 1) -> torch.Tensor:
    """(N, C, H, W) -> one (C, H', W') image with `nrow` images per row, `pad` white pixels between them,
    values clamped to [0, 1]."""
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = images.new_ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i, image in enumerate(images.clamp(0, 1)):
        top, left = pad + (i // nrow) * (h + pad), pad + (i % nrow) * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return grid


@torch.no_grad()
def image_panels(
    model: LatentVariableModel,
    split: Split,
    dims: list[int],
    n: int = 16,
    steps: int = 9,
    span: float = 3.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Panels (each (C, H', W')) from the first `n` samples of `split`:

    - ``reconstructions``: originals (odd rows) above their reconstructions at the posterior mean;
    - ``samples``: decodings of z ~ p(z | batch);
    - ``traversals``: for each latent dim in `dims` (a row), the first sample's posterior mean with that dim
      set to `steps` values from -`span` to `span` prior standard deviations around the prior mean.
    The global random state is forked, so training's random stream is untouched."""
    device = next(model.parameters()).device
    batch = {k: v[:n].to(device) for k, v in split.items() if k not in GROUND_TRUTH_KEYS}
    x = batch["x"]
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        q, p = model.encode(batch), model.prior(batch)
        x_hat = model.reconstruction(model.decode(q.mean, batch))
        z = p.rsample() if p is not None else torch.randn_like(q.mean)
        samples = model.reconstruction(model.decode(z, batch))
        center = p.mean.expand_as(q.mean)[0] if p is not None else torch.zeros_like(q.mean[0])
        scale = (0.5 * p.logvar).exp().expand_as(q.mean)[0] if p is not None else torch.ones_like(q.mean[0])
        offsets = torch.linspace(-span, span, steps, device=device)
        traversal = q.mean[:1].repeat(len(dims) * steps, 1)
        for row, j in enumerate(dims):
            traversal[row * steps : (row + 1) * steps, j] = center[j] + offsets * scale[j]
        first = {k: v[:1].expand(len(traversal), *v.shape[1:]) for k, v in batch.items()}
        traversals = model.reconstruction(model.decode(traversal, first))
    model.train(was_training)
    nrow = min(8, len(x))
    pairs = torch.cat(
        [torch.stack([x[i : i + nrow], x_hat[i : i + nrow]]) for i in range(0, len(x) - nrow + 1, nrow)]
    )  # (2 * rows, nrow, C, H, W)
    return {
        "reconstructions": image_grid(pairs.flatten(0, 1).cpu(), nrow),
        "samples": image_grid(samples.cpu(), nrow),
        "traversals": image_grid(traversals.cpu(), steps),
    }


def label_scatter(points: torch.Tensor, labels: torch.Tensor, max_points: int = 5000) -> torch.Tensor:
    """A scatter plot of 2-d points (N, 2) (e.g. PCA of posterior means) coloured by integer label (N,), as a
    (3, H, W) float image in [0, 1]; the first `max_points` points are drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pts, lab = points[:max_points].numpy(), labels[:max_points].numpy()
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    scatter = ax.scatter(pts[:, 0], pts[:, 1], c=lab, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.colorbar(scatter, ax=ax, ticks=range(10))
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0


def bar_chart(
    values: torch.Tensor, names: list[str], xlabel: str, ylabel: str, title: str = "", max_named: int = 40
) -> torch.Tensor:
    """A bar chart of values (k,) in the given order, bar i named names[i] (the names are shown when there are
    at most `max_named` bars), as a (3, H, W) float image in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    heights = values.detach().double().cpu().numpy()
    fig, ax = plt.subplots(figsize=(max(4.0, min(12.0, 0.18 * len(heights) + 2)), 3), dpi=80)
    ax.bar(np.arange(len(heights)), heights, color="tab:blue")
    if len(heights) <= max_named:
        ax.set_xticks(np.arange(len(heights)), names, fontsize=7, rotation=90 if len(heights) > 16 else 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
