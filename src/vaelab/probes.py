"""Label probes as pure functions: features in, test accuracy out (no models, no Lightning).

How much a code tells about the labels, measured three ways on posterior means: a multinomial logistic regression
(``linear``, vaelab.metrics.probe_accuracy), k nearest neighbours (``knn``) and a one-hidden-layer MLP (``mlp``).
Each is fitted on training features (N, k) with integer labels (N,) and scored on test features (M, k). The kNN
and the MLP cut a validation part from the training features (``holdout``), the kNN to choose k, the MLP to stop
early. All are deterministic given ``seed`` (same machine, same thread count).

``progress``, where a function takes it, is called with the number of work units just done (kNN: query rows;
MLP: epochs) so that a caller can show progress; it never changes the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from vaelab import metrics

KNN_CANDIDATES = (1, 3, 5, 10, 20)
Progress = Callable[[int], None] | None


@dataclass
class ProbeResult:
    """``accuracy`` on the test features in [0, 1] and what the fit chose (``details``: chosen k, epochs, ...)."""

    accuracy: float
    details: dict = field(default_factory=dict)


def holdout(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, validation indices) of a random cut of n training points: round(fraction * n) (at least 1)
    points validate, the rest (at least 1) fit; drawn with `seed`, each part in ascending order."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction {fraction} must be in (0, 1)")
    n_val = max(1, round(fraction * n))
    if n - n_val < 1:
        raise ValueError(f"holdout needs at least 2 points, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:].sort().values, order[:n_val].sort().values


def linear_probe(
    train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, test_labels: torch.Tensor
) -> ProbeResult:
    """The multinomial logistic regression of vaelab.metrics.probe_accuracy (fitted on all training features)."""
    return ProbeResult(metrics.probe_accuracy(train_features, train_labels, test_features, test_labels))


def nearest_labels(
    queries: torch.Tensor,
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    k: int,
    chunk_elements: int = 1 << 24,
    progress: Progress = None,
) -> torch.Tensor:
    """The labels of the k nearest reference points (Euclidean) of every query, nearest first, shape (Q, k).

    Queries go in chunks of rows so that one distance block holds at most `chunk_elements` entries (64 MiB in
    float32 by default): memory is O(chunk), never (Q, N). Distances are computed as ||r||^2 - 2 q.r (the
    query's own norm does not change its ranking) in float32 through one matrix product per chunk."""
    if not 1 <= k <= len(reference):
        raise ValueError(f"k={k} must be between 1 and the {len(reference)} reference points")
    reference = reference.detach().float()
    queries = queries.detach().float()
    ref_sq = reference.square().sum(1)
    rows = max(1, chunk_elements // max(1, len(reference)))
    found = []
    for start in range(0, len(queries), rows):
        block = queries[start : start + rows]
        distance = torch.addmm(ref_sq.unsqueeze(0), block, reference.T, alpha=-2.0)  # (C, N)
        found.append(reference_labels[distance.topk(k, dim=1, largest=False, sorted=True).indices])
        if progress is not None:
            progress(len(block))
    return torch.cat(found) if found else reference_labels.new_zeros(0, k)


def knn_vote(neighbour_labels: torch.Tensor, k: int, n_classes: int) -> torch.Tensor:
    """The majority label of the first k columns of neighbour_labels (Q, >= k), shape (Q,). Ties go to the class
    whose neighbours are nearer: neighbour i (0 = nearest) votes 1 + (k - i) / (k^2 + 1), whose extras sum to
    less than one vote."""
    first = neighbour_labels[:, :k]
    weights = 1.0 + (k - torch.arange(k, dtype=torch.float64)) / (k * k + 1)
    scores = torch.zeros(len(first), n_classes, dtype=torch.float64)
    scores.scatter_add_(1, first, weights.expand(len(first), k).contiguous())
    return scores.argmax(1)


def knn_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    candidates: Sequence[int] = KNN_CANDIDATES,
    validation_fraction: float = 0.1,
    seed: int = 0,
    chunk_elements: int = 1 << 24,
    progress: Progress = None,
) -> ProbeResult:
    """k-nearest-neighbour accuracy on the test features, k chosen on a validation cut of the training features.

    The validation points vote with their nearest neighbours among the rest of the training features for every
    candidate k (one neighbour search, up to the largest k); the k with the best validation accuracy (the
    smallest on a tie) then classifies the test features against all training features. Distances are Euclidean
    on the features as given (posterior means: a dimension that does not vary adds nothing). Details: ``k`` (the
    chosen one), ``validation_accuracy`` ({k: accuracy}). Work units for `progress`: query rows (validation, then
    test)."""
    candidates = sorted({int(k) for k in candidates})
    fit, val = holdout(len(train_features), validation_fraction, seed)
    if not candidates or candidates[0] < 1 or candidates[-1] > len(fit):
        raise ValueError(f"k candidates {candidates} must be between 1 and the {len(fit)} points of the fit part")
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    neighbours = nearest_labels(
        train_features[val], train_features[fit], train_labels[fit], candidates[-1], chunk_elements, progress
    )
    scores = {k: float((knn_vote(neighbours, k, n_classes) == train_labels[val]).double().mean()) for k in candidates}
    best = max(candidates, key=lambda k: (scores[k], -k))
    test_neighbours = nearest_labels(test_features, train_features, train_labels, best, chunk_elements, progress)
    accuracy = float((knn_vote(test_neighbours, best, n_classes) == test_labels).double().mean())
    return ProbeResult(accuracy, {"k": best, "validation_accuracy": scores})


def mlp_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    hidden: int = 256,
    max_epochs: int = 100,
    patience: int = 5,
    validation_fraction: float = 0.1,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    progress: Progress = None,
) -> ProbeResult:
    """Test accuracy of a one-hidden-layer MLP (ReLU, `hidden` units), early-stopped on a validation cut.

    Features are standardised with the fit part's statistics. Weights start as torch.nn.Linear's (uniform in
    +-1/sqrt(fan in)) drawn from `seed`; Adam (`lr`) on the cross-entropy over shuffled minibatches of the fit
    part, one validation cross-entropy per epoch (smoother than the accuracy, which can sit still for epochs
    while the fit improves); training stops after `patience` epochs without a lower one (or `max_epochs`), and
    the weights of the best epoch (the earliest on a tie) are scored. Details: ``epochs`` (trained),
    ``best_epoch``, ``validation_accuracy`` (at the best epoch). Work units for `progress`: epochs."""
    generator = torch.Generator().manual_seed(seed)
    fit, val = holdout(len(train_features), validation_fraction, seed)
    x, y = train_features.detach().float(), train_labels.long()
    mu = x[fit].mean(0)
    sd = x[fit].std(0).clamp_min(1e-8) if len(fit) > 1 else torch.ones(x.shape[1])
    x, x_test = (x - mu) / sd, (test_features.detach().float() - mu) / sd
    x_fit, y_fit, x_val, y_val = x[fit], y[fit], x[val], y[val]
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1

    def uniform(*shape: int, fan_in: int) -> torch.Tensor:
        bound = 1.0 / math.sqrt(fan_in)
        return (torch.rand(*shape, generator=generator) * 2 - 1).mul_(bound).requires_grad_()

    k = x.shape[1]
    params = [
        uniform(k, hidden, fan_in=k),
        uniform(hidden, fan_in=k),
        uniform(hidden, n_classes, fan_in=hidden),
        uniform(n_classes, fan_in=hidden),
    ]

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.relu(inputs @ params[0] + params[1]) @ params[2] + params[3]

    def accuracy(inputs: torch.Tensor, labels: torch.Tensor) -> float:
        with torch.no_grad():
            return float((forward(inputs).argmax(1) == labels).double().mean())

    def loss(inputs: torch.Tensor, labels: torch.Tensor) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(forward(inputs), labels))

    optimizer = torch.optim.Adam(params, lr=lr)
    best_loss, best_epoch, best_params, epoch = math.inf, 0, [p.detach().clone() for p in params], 0
    with torch.enable_grad():
        for epoch in range(1, max_epochs + 1):
            order = torch.randperm(len(x_fit), generator=generator)
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(forward(x_fit[rows]), y_fit[rows]).backward()
                optimizer.step()
            if progress is not None:
                progress(1)
            score = loss(x_val, y_val)
            if score < best_loss:
                best_loss, best_epoch, best_params = score, epoch, [p.detach().clone() for p in params]
            elif epoch - best_epoch >= patience:
                break
    with torch.no_grad():
        for p, best in zip(params, best_params, strict=True):
            p.copy_(best)
    return ProbeResult(
        accuracy(x_test, test_labels.long()),
        {"epochs": epoch, "best_epoch": best_epoch, "validation_accuracy": accuracy(x_val, y_val)},
    )
