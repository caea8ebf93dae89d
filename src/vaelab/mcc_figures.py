"""TensorBoard figures for identifiability: the matched |correlation| matrix and (source, latent) scatters.

Drawn on matplotlib's Agg canvas (no global backend change) into (3, H, W) float image tensors in [0, 1] (what
``add_image`` takes).
"""

from __future__ import annotations

import torch

MATRIX_MAX_WIDTH, MATRIX_MAX_HEIGHT = 12.0, 8.0  # inches, at 80 dpi: at most 960 x 640 pixels


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
    first, in source order (latents as rows where there are more than twice as many as sources, so the image is
    never a thin strip; the values written in the cells up to 120 of them); ``mcc_scatter``: one panel per
    matched (source, latent) pair over at most `max_points` points of z_true (N, n) and z (N, k) drawn with `seed`."""
    from matplotlib.figure import Figure

    n, k = abs_corr.shape
    matched = [j for j in latent_of_source if j >= 0]
    order = matched + [j for j in range(k) if j not in matched]
    # a figure near square whatever n and k: with many more latents than sources (2 x 20) the latents are the rows
    matrix = abs_corr[:, order]
    transposed = k > 2 * n
    rows, cols = (k, n) if transposed else (n, k)
    numbers = n * k <= 120  # the values themselves, where they fit
    width = min(MATRIX_MAX_WIDTH, max(3.5, 2.2 + (0.6 if numbers else 0.4) * cols))
    height = min(MATRIX_MAX_HEIGHT, max(2.8, 1.0 + (0.35 if transposed else 0.45) * rows))
    fig = Figure(figsize=(width, height), dpi=80)
    ax = fig.add_subplot()
    shown_matrix = matrix.T if transposed else matrix
    shown = ax.imshow(shown_matrix.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    latent_ticks, source_ticks = [str(j) for j in order], [str(i) for i in range(n)]
    ax.set_xticks(range(cols), source_ticks if transposed else latent_ticks, fontsize=8)
    ax.set_yticks(range(rows), latent_ticks if transposed else source_ticks, fontsize=8)
    latent_label, source_label = "latent dim (matched first)", "source"
    ax.set_xlabel(source_label if transposed else latent_label)
    ax.set_ylabel(latent_label if transposed else source_label)
    if numbers:
        for r in range(rows):
            for c in range(cols):
                value = float(shown_matrix[r, c])
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if value < 0.6 else "k")
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
