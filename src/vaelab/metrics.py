"""Diagnostics as pure functions: tensors in, numbers out (no Lightning, no models).

Shapes: N evaluation samples, k latent dims. Variances and KLs are per sample in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vaelab.errors import ConfigError
from vaelab.models.gaussian import LOG_2PI, DiagonalGaussian


def check_threshold(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"{name}={value} must be > 0 (e.g. 0.1 for active dims, 0.01 for active units)")
    return float(value)


def mean_encoder_variance(var: torch.Tensor, prior_var: torch.Tensor | None = None) -> torch.Tensor:
    """E_x[sigma_j^2(x)] per dim, shape (k,), from encoder variances (N, k); with a learned prior the ratio
    E_x[sigma_j^2(x) / sigma_pj^2(x)] (prior_var broadcastable to (N, k))."""
    return (var if prior_var is None else var / prior_var).mean(0)


def active_dims(mean_var: torch.Tensor, threshold: float = 0.1) -> int:
    """Zheng et al.: dim j is active when its mean encoder variance (k,) is below `threshold` (inactive dims
    sit at the prior's variance 1, active ones go to O(gamma))."""
    return int((mean_var < check_threshold("threshold", threshold)).sum())


def posterior_mean_variance(mean: torch.Tensor) -> torch.Tensor:
    """Cov_x(E_q[z_j | x]) per dim, shape (k,), from posterior means (N, k)."""
    return mean.var(0, correction=1) if mean.shape[0] > 1 else torch.zeros(mean.shape[1])


def active_units(mean: torch.Tensor, threshold: float = 0.01) -> int:
    """Burda et al. (2015): unit j is active when Cov_x(E_q[z_j | x]) > `threshold`; mean (N, k)."""
    return int((posterior_mean_variance(mean) > check_threshold("threshold", threshold)).sum())


def representation_match(before: torch.Tensor, after: torch.Tensor, threshold: float = 0.01) -> float:
    """How far two sets of posterior means of the same M points, (M, k) each, agree up to a permutation, sign and
    scale of the dims: the smallest matched |correlation| (``mcc``'s matching) over the dims whose means vary
    (variance above `threshold`, as ``active_units``) in either set. 1 when the representation has not moved; a
    dim that opened or closed in between, or a rotation of the latents, lowers it. 1 when no dim varies in either."""
    varying = (posterior_mean_variance(before) > threshold) | (posterior_mean_variance(after) > threshold)
    if not varying.any():
        return 1.0
    _, details = mcc(before[:, varying], after[:, varying])
    return float(min(details["matched"]))


def kl_per_dim(posterior: DiagonalGaussian, prior: DiagonalGaussian | None = None) -> torch.Tensor:
    """E_x KL(q(z_j|x) || p(z_j)) per dim in nats, shape (k,); prior None = N(0, I)."""
    return posterior.kl_per_dim(prior).mean(0)


def recon_mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared reconstruction error per element (x and x_hat of equal shape)."""
    return float((x - x_hat).square().mean())


def local_pca_dimension(
    x: torch.Tensor, anchors: int = 300, neighbours: int | None = None, seed: int = 0
) -> tuple[int, list[int]]:
    """The data's intrinsic dimension by local PCA, from points x (N, d) alone (no model, no ground truth).

    Around each of `anchors` points (drawn with `seed`) the `neighbours` nearest points (default max(2 d, 20))
    are centred and their singular values s_1 >= ... >= s_d taken; the local dimension is the i with the largest
    gap log(s_i / s_{i+1}): tangent directions scale with the neighbourhood's radius, curvature and noise with
    its square or not at all. Returns (the median local dimension over anchors, the count of anchors per
    dimension 0..d). Computed in float64."""
    x = x.flatten(1).double()
    n, d = x.shape
    if n < 3:
        raise ValueError(f"local_pca_dimension needs at least 3 points, got {n}")
    if d == 1:  # one coordinate: a line, or a point when it never varies (no gap to take)
        varies = bool(x.std() > 0)
        counts = [0, 0]
        counts[varies] = min(anchors, n)
        return int(varies), counts
    k = min(neighbours or max(2 * d, 20), n - 1)
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:anchors]
    nearest = torch.cdist(x[chosen], x).topk(k + 1, largest=False).indices  # (A, k + 1), the anchor included
    patches = x[nearest]
    s = torch.linalg.svdvals(patches - patches.mean(1, keepdim=True)).clamp_min(1e-300)  # (A, min(k + 1, d))
    dims = (s[:, :-1] / s[:, 1:]).log().argmax(1) + 1
    counts = torch.bincount(dims, minlength=d + 1).tolist()
    return int(dims.median()), counts


# Posterior collapse (Skip-VAE, issue 5): mutual information, downstream probe, perplexity, PCA.


def _log_q_matrix(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z_i; mean_j, diag exp(logvar_j)) for every pair, shape (C, N), from z (C, k) and mean/logvar (N, k);
    float64 through matrix products (no (C, N, k) tensor)."""
    z, mean, logvar = z.double(), mean.double(), logvar.double()
    inv_var = (-logvar).exp()
    # -2 log N = sum_d (z^2 / v - 2 z m / v + m^2 / v + log v) + k log 2 pi: one matrix product
    per_point = (mean.square() * inv_var + logvar).sum(-1, keepdim=True) + z.shape[-1] * LOG_2PI
    left = torch.cat([z.square(), z, torch.ones_like(z[:, :1])], 1)
    right = torch.cat([inv_var, -2 * mean * inv_var, per_point], 1)
    return (left @ right.T).mul_(-0.5)


def mutual_information(
    posterior: DiagonalGaussian,
    batch_size: int | None = None,
    chunk_size: int = 512,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> float:
    """I_q(x; z) in nats, from the posteriors q(z|x_i) (mean, logvar of shape (N, k)) of an evaluation set.

    With the aggregate posterior q(z) = 1/N sum_j q(z|x_j), I = E_i[log q(z_i|x_i) - log q(z_i)] with one
    z_i ~ q(z|x_i) per point (E_x KL(q(z|x)||p(z)) - KL(q(z)||p(z)) for any prior p). The j = i term of the
    logsumexp bounds every term, so 0 <= ... <= log N holds per sample (the estimate is <= log N exactly).
    ``batch_size`` None: the whole set is the aggregate (chunks of ``chunk_size`` points against all N, in
    float64); an int: the per-batch estimator of He et al. (2019), q(z) over consecutive batches of that size
    (bounded by log batch_size), averaged over batches weighted by their size. ``progress``, when given, is
    called with the number of points of each chunk done (for a progress display; the result does not change).
    """
    mean, logvar = posterior.mean.detach(), posterior.logvar.detach()
    n = mean.shape[0]
    if n < 1:
        raise ValueError("mutual_information needs at least one posterior")
    eps = (
        torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        if generator is not None
        else torch.randn_like(mean)
    )
    z = mean + eps * (0.5 * logvar).exp()
    step = n if batch_size is None else batch_size
    total = 0.0
    for group in range(0, n, step):
        g_mean, g_logvar, g_z = mean[group : group + step], logvar[group : group + step], z[group : group + step]
        m = len(g_mean)
        for start in range(0, m, chunk_size):
            rows = slice(start, start + chunk_size)
            log_q = _log_q_matrix(g_z[rows], g_mean, g_logvar)  # (C, m)
            own = log_q.diagonal(offset=start)
            total += float((own - (log_q.logsumexp(-1) - math.log(m))).sum())
            if progress is not None:
                progress(len(own))
    return total / n


def mi_ceiling(n: int, batch_size: int | None = None) -> float:
    """The most mutual_information can return for n posteriors: log n (whole set) or log min(batch_size, n)."""
    return math.log(n if batch_size is None else min(batch_size, n))


def mi_saturated(mi: float, n: int, batch_size: int | None = None, tolerance: float = 0.05) -> bool:
    """Whether an MI estimate over n posteriors is within `tolerance` (relative) of its ceiling log n (mi_ceiling):
    there it measures the number of points, not the code, and cannot rank models. A ceiling of 0 (one point)
    is always saturated."""
    return mi >= (1.0 - tolerance) * mi_ceiling(n, batch_size)


def perplexity(nll: torch.Tensor, n_tokens: torch.Tensor) -> float:
    """exp(sum of NLL / sum of tokens): nll (N,) in nats per sequence, n_tokens (N,) tokens scored per sequence
    (for text: counting </s>, not <s>)."""
    return math.exp(float(nll.double().sum() / n_tokens.double().sum()))


def probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    l2: float = 1e-4,
    max_iter: int = 100,
) -> float:
    """Test accuracy in [0, 1] of a multinomial logistic regression fitted on (train_features (N, k),
    train_labels (N,) int) and evaluated on (test_features (M, k), test_labels (M,)).

    Features are standardised with the training statistics; weights start at zero and are fitted full batch
    with L-BFGS (strong Wolfe line search) on the mean cross-entropy + l2 * ||W||^2, in float64: deterministic.
    """
    x, x_test = train_features.detach().double(), test_features.detach().double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-8)
    x, x_test = (x - mu) / sd, (x_test - mu) / sd
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, train_labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = (x_test @ weight + bias).argmax(-1)
    return float((predicted == test_labels).double().mean())


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """The projection of features (N, k) on their two leading principal axes, shape (N, 2) (zero-padded when
    k = 1); the sign of each axis is fixed so that its largest-magnitude loading is positive."""
    centred = features.detach().double() - features.double().mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    axes = v[:2].T  # (k, <=2)
    signs = axes.gather(0, axes.abs().argmax(0, keepdim=True)).sign()
    projected = centred @ (axes * signs)
    if projected.shape[1] < 2:
        projected = torch.cat([projected, projected.new_zeros(len(projected), 2 - projected.shape[1])], 1)
    return projected.float()


# Identifiability (iVAE, issue 4): mean correlation coefficient between true and estimated latents.

MCC_METHODS = ("pearson", "spearman")


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..N-1 of each column of x (N, k), as float64 (ties broken by order)."""
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks.scatter_(0, x.argsort(0), torch.arange(len(x), dtype=torch.float64).unsqueeze(1).expand_as(x).clone())
    return ranks


def abs_correlation(a: torch.Tensor, b: torch.Tensor, method: str = "pearson") -> torch.Tensor:
    """|corr(a_i, b_j)| for every column pair, shape (n, k), from a (N, n) and b (N, k); Spearman correlates
    ranks. A constant column correlates 0 with everything."""
    if method not in MCC_METHODS:
        raise ConfigError(
            f"callbacks.diagnostics.evaluators.mcc.method={method!r} is unknown; choose one of {list(MCC_METHODS)}"
        )
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"abs_correlation needs two equally long sets of >= 2 samples, got {len(a)} and {len(b)}")
    a, b = (_ranks(a), _ranks(b)) if method == "spearman" else (a.double(), b.double())

    def standardise(v: torch.Tensor) -> torch.Tensor:
        v = v - v.mean(0)
        norm = v.norm(dim=0)
        return torch.where(norm > 0, v / norm.clamp_min(1e-300), torch.zeros_like(v))

    return (standardise(a).T @ standardise(b)).abs().clamp(max=1.0)


def mcc(z_true: torch.Tensor, z: torch.Tensor, method: str = "pearson") -> tuple[float, dict]:
    """Mean correlation coefficient of true latents z_true (N, n) and estimates z (N, k), in [0, 1].

    The |correlation| matrix C (n, k) is matched one-to-one by the Hungarian algorithm (maximum total |C|);
    MCC is the sum of the matched values divided by n: with k > n the best n latents are used, with k < n the
    unmatched sources count 0. Returns (mcc, details) with details ``abs_corr`` (n, k), ``source`` and
    ``latent`` (matched index pairs, by source) and ``matched`` (their |C|).
    """
    from scipy.optimize import linear_sum_assignment

    corr = abs_correlation(z_true, z, method)
    rows, cols = linear_sum_assignment(corr.numpy(), maximize=True)
    matched = corr[rows, cols]
    return float(matched.sum() / z_true.shape[1]), {
        "abs_corr": corr,
        "source": rows.tolist(),
        "latent": cols.tolist(),
        "matched": matched.tolist(),
    }


# Per-group active dims (manifold dimensions with CVAEs, issue 3): active dims within each class or group of a
# union of manifolds (never pooled over groups), and active dims by the gates of a gated decoder.


def group_mean(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean of values (N, k) over the samples of each group (groups (N,) ints in 0..n_groups-1), shape
    (n_groups, k); NaN rows for groups without samples."""
    sums = values.new_zeros(n_groups, values.shape[1]).index_add_(0, groups, values)
    return sums / torch.bincount(groups, minlength=n_groups).unsqueeze(1).to(values.dtype)


def group_mean_encoder_variance(
    var: torch.Tensor, groups: torch.Tensor, n_groups: int, prior_var: torch.Tensor | None = None
) -> torch.Tensor:
    """E_x[sigma_j^2(x)] within each group, shape (n_groups, k), from encoder variances (N, k); with a learned
    prior the ratio E_x[sigma_j^2(x) / sigma_pj^2(x)] (as mean_encoder_variance, group by group)."""
    return group_mean(var if prior_var is None else var / prior_var.expand_as(var), groups, n_groups)


def group_active_dims(group_mean_var: torch.Tensor, threshold: float = 0.1) -> list[int | None]:
    """Active dims of each group from its mean encoder variances (n_groups, k); None for an empty group."""
    return [None if torch.isnan(row).all() else active_dims(row, threshold) for row in group_mean_var]


def group_recon_mse(x: torch.Tensor, x_hat: torch.Tensor, groups: torch.Tensor, n_groups: int) -> list[float | None]:
    """Mean squared reconstruction error per element within each group (x, x_hat (N, ...)); None when empty."""
    per_sample = (x - x_hat).square().flatten(1).mean(1, keepdim=True)
    return [None if torch.isnan(v) else float(v) for v in group_mean(per_sample, groups, n_groups)[:, 0]]


def active_dims_by_gate(mean_gate: torch.Tensor, threshold: float = 0.1) -> int:
    """Gated decoders (x = f(g(c) * z, c)): dims whose mean gate (k,) exceeds `threshold` (the paper: 0.1)."""
    return int((mean_gate > check_threshold("gate threshold", threshold)).sum())


def active_dims_map(
    var: torch.Tensor,
    groups: torch.Tensor,
    threshold: float = 0.1,
    prior_var: torch.Tensor | None = None,
    per_group: int = 32,
) -> tuple[torch.Tensor, list[int]]:
    """Which dims each sample uses, as a (rows, k) map of 0/1 (1: sigma_j^2(x) (/ sigma_pj^2) < threshold):
    the first `per_group` samples of each group, groups in increasing order. Returns the map and the group of
    each row."""
    ratio = var if prior_var is None else var / prior_var.expand_as(var)
    rows = torch.cat([torch.nonzero(groups == g).flatten()[:per_group] for g in groups.unique().sort().values])
    return (ratio[rows] < check_threshold("threshold", threshold)).float(), groups[rows].tolist()
