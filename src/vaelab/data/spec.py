"""What a dataset tells the models and metrics about itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    """Shapes and ground truth of a dataset.

    x_shape: shape of one sample (e.g. (20,) or (1, 28, 28)); condition_dim / aux_dim: width of ``c`` / ``u``
    in a batch (0 when absent); n_classes: label count (0 when unlabelled); ground_truth: known facts such as
    ``manifold_dim``, exposed to metrics and written to metrics.json; vocab_size: number of token ids of text
    data (x holds int64 ids, see vaelab.data.text), 0 for real-valued data.
    ``x_range``: (min, max) that x can take when the dataset guarantees it (e.g. (0, 1) for MNIST), else None;
    likelihoods with a bounded support (Bernoulli) check it.
    """

    name: str
    x_shape: tuple[int, ...]
    condition_dim: int = 0
    aux_dim: int = 0
    n_classes: int = 0
    vocab_size: int = 0
    ground_truth: dict[str, Any] = field(default_factory=dict)
    x_range: tuple[float, float] | None = None

    @property
    def x_dim(self) -> int:
        n = 1
        for s in self.x_shape:
            n *= s
        return n
