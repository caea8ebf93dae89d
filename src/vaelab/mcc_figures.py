"""TensorBoard figures for identifiability: the matched |correlation| matrix and (source, latent) scatters.

Drawn on matplotlib's Agg canvas (no global backend change) into (3, H, W) float image tensors in [0, 1] (what
``add_image`` takes).
"""

from __future__ import annotations

import torch


def _to_image(fig) -> torch.Tensor:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = torch.frombuffer(bytearray(canvas.buffer_rgba()), dtype=torch.uint8)
    width, height = canvas.get_width_height()
    return rgba.view(height, width, 4)[..., :3].permute(2, 0, 1).float() / 255


def mcc_figures(
    z_true: torch.Tensor,
    z: torch.Tensor,
    abs_corr: torch.Tensor,
    latent_of_source: list[int],
    max_points: int = 1000,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """``mcc_matrix``: |corr| (n sources x k latents) with the latents reordered so that the matched ones come
    first, in source order; ``mcc_scatter``: one panel per matched (source, latent) pair over at most
    `max_points` points of z_true (N, n) and z (N, k) drawn with `seed`."""
    from matplotlib.figure import Figure

    n, k = abs_corr.shape
    matched = [j for j in latent_of_source if j >= 0]
    order = matched + [j for j in range(k) if j not in matched]
    fig = Figure(figsize=(1 + 0.5 * k, 1 + 0.5 * n), dpi=80)
    ax = fig.add_subplot()
    shown = ax.imshow(abs_corr[:, order].numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(k), [str(j) for j in order])
    ax.set_yticks(range(n), [str(i) for i in range(n)])
    ax.set_xlabel("latent dim (matched first)")
    ax.set_ylabel("source")
    fig.colorbar(shown, ax=ax)
    fig.tight_layout()
    images = {"mcc_matrix": _to_image(fig)}

    rows = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))[:max_points]
    pairs = [(i, j) for i, j in enumerate(latent_of_source) if j >= 0]
    fig = Figure(figsize=(2.2 * max(len(pairs), 1), 2.4), dpi=80)
    for p, (i, j) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), p + 1)
        ax.scatter(z_true[rows, i].numpy(), z[rows, j].numpy(), s=2, alpha=0.5)
        ax.set_title(f"s{i} vs z{j}: {float(abs_corr[i, j]):.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    images["mcc_scatter"] = _to_image(fig)
    return images
