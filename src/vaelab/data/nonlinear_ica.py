"""Nonlinear-ICA segment data (Khemakhem et al. 2020, papers.md section 2).

ns segments of nps points each. In segment k the n sources are independent, s_j = m_kj + L_kj * e_j with
e_j ~ N(0, 1) or unit-variance Laplace, std L_kj ~ U(0.5, 3) and mean m_kj = 0 (or U(-5, 5) when not
centred). The observation is x = act(... act(s A_1) A_2 ...) A_nl in R^d: nl layers, no activation after the
last, each A with U(-1, 1) entries, unit-norm columns, re-drawn until its condition number is below the 25th
percentile of 10^4 random draws. u tells the segment: one-hot (ns wide), or one continuous number
(segment + U(0, 1)) / ns, a time within the recording.

``file``: the points read from a data set the reference iVAE code (github.com/ilkhem/iVAE) wrote, an .npz with
``s`` (N, n), ``x`` (N, d) and one-hot ``u`` (N, ns), instead of drawn: the same points for a side-by-side.
"""

from __future__ import annotations

import math

import torch

from vaelab.data.in_memory import InMemoryDataModule, Split
from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError, DataError

SOURCE_DISTRIBUTIONS = ("gauss", "laplace")
MIXING_ACTIVATIONS = ("xtanh", "leaky_relu")
AUX_KINDS = ("onehot", "continuous")


def _unit_columns(a: torch.Tensor) -> torch.Tensor:
    return a / a.norm(dim=-2, keepdim=True)


def condition_threshold(
    rows: int, cols: int, generator: torch.Generator, n_draws: int = 10_000, percentile: float = 25.0
) -> float:
    """The `percentile` of the condition numbers of `n_draws` (rows, cols) matrices with U(-1, 1) entries and
    unit-norm columns (float64)."""
    draws = _unit_columns(torch.rand(n_draws, rows, cols, generator=generator, dtype=torch.float64) * 2 - 1)
    return float(torch.quantile(torch.linalg.cond(draws), percentile / 100))


def mixing_matrix(
    rows: int, cols: int, max_condition: float, generator: torch.Generator, max_tries: int = 100_000
) -> torch.Tensor:
    """A (rows, cols) float64 matrix, U(-1, 1) entries, unit-norm columns, condition number <= max_condition."""
    for _ in range(max_tries):
        a = _unit_columns(torch.rand(rows, cols, generator=generator, dtype=torch.float64) * 2 - 1)
        if float(torch.linalg.cond(a)) <= max_condition:
            return a
    raise ConfigError(
        f"no {rows}x{cols} mixing matrix with condition number <= {max_condition:.3g} in {max_tries} draws"
    )


def activation_fn(name: str, slope: float):
    """xtanh: tanh(x) + slope x; leaky_relu: x for x > 0, slope x otherwise. Both strictly increasing."""
    if name == "xtanh":
        return lambda x: torch.tanh(x) + slope * x
    return lambda x: torch.where(x > 0, x, slope * x)


def make_nonlinear_ica_data(
    n_segments: int,
    points_per_segment: int,
    n_sources: int,
    data_dim: int,
    n_layers: int,
    seed: int,
    source_distribution: str = "gauss",
    centred: bool = True,
    activation: str = "xtanh",
    slope: float = 0.1,
    same_matrix: bool = True,
    std_range: tuple[float, float] = (0.5, 3.0),
) -> dict[str, torch.Tensor]:
    """Draws the whole data set, deterministic in `seed`. Points are ordered by segment.

    Returns float32 ``s`` (N, n_sources), ``x`` (N, data_dim), ``segment`` (N,) int64, and the generating
    parameters: ``std`` and ``mean`` (n_segments, n_sources) and ``matrices``, a list of n_layers float64
    matrices (the first (n_sources, data_dim), the others (data_dim, data_dim); with `same_matrix` the
    square ones are one matrix); N = n_segments * points_per_segment.
    """
    g = torch.Generator().manual_seed(seed)
    # the mixing first: it depends on the seed and the sizes, not on the number of points
    shapes = [(n_sources, data_dim)] + [(data_dim, data_dim)] * (n_layers - 1)
    thresholds = {shape: condition_threshold(*shape, g) for shape in sorted(set(shapes))}
    matrices: list[torch.Tensor] = []
    for shape in shapes:
        reuse = same_matrix and matrices and matrices[-1].shape == shape
        matrices.append(matrices[-1] if reuse else mixing_matrix(*shape, thresholds[shape], g))
    std = torch.empty(n_segments, n_sources, dtype=torch.float64).uniform_(*std_range, generator=g)
    mean = (
        torch.zeros_like(std)
        if centred
        else torch.empty(n_segments, n_sources, dtype=torch.float64).uniform_(-5, 5, generator=g)
    )
    n = n_segments * points_per_segment
    if source_distribution == "gauss":
        e = torch.randn(n, n_sources, generator=g, dtype=torch.float64)
    else:  # Laplace with scale 1/sqrt(2) has variance 1: inverse CDF of a uniform draw
        v = torch.rand(n, n_sources, generator=g, dtype=torch.float64) - 0.5
        e = -v.sign() * torch.log1p(-2 * v.abs()) / math.sqrt(2)
    segment = torch.arange(n_segments).repeat_interleave(points_per_segment)
    s = mean[segment] + std[segment] * e
    act = activation_fn(activation, slope)
    x = s
    for i, a in enumerate(matrices):
        x = x @ a if i == n_layers - 1 else act(x @ a)
    return {"s": s.float(), "x": x.float(), "segment": segment, "std": std, "mean": mean, "matrices": matrices}


class NonlinearICAData(InMemoryDataModule):
    """Segment data for nonlinear ICA; batches carry ``x``, ``u`` and ``z_true`` (the sources).

    The points of each segment are split train/val/test by `split` (every split sees every segment); the
    metrics (MCC) are computed on the whole val/test split. The reference trains and measures on all points.
    """

    def __init__(
        self,
        n_segments: int = 40,
        points_per_segment: int = 1000,
        n_sources: int = 5,
        data_dim: int = 5,
        n_layers: int = 3,
        source_distribution: str = "gauss",
        centred: bool = True,
        activation: str = "xtanh",
        slope: float = 0.1,
        same_matrix: bool = True,
        aux: str = "onehot",
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        data_seed: int = 1,
        file: str | None = None,
        **loader_kwargs,
    ):
        super().__init__(**loader_kwargs)
        for key, value, low in (
            ("n_segments", n_segments, 1),
            ("points_per_segment", points_per_segment, 2),
            ("n_sources", n_sources, 1),
            ("n_layers", n_layers, 1),
        ):
            if value < low:
                raise ConfigError(f"data.{key}={value} must be >= {low}")
        if data_dim < n_sources:
            raise ConfigError(
                f"data.data_dim={data_dim} is below data.n_sources={n_sources}: the mixing would not "
                "be injective (the sources could not be recovered); set data.data_dim >= n_sources"
            )
        for key, value, options in (
            ("source_distribution", source_distribution, SOURCE_DISTRIBUTIONS),
            ("activation", activation, MIXING_ACTIVATIONS),
            ("aux", aux, AUX_KINDS),
        ):
            if value not in options:
                raise ConfigError(f"data.{key}={value!r} is unknown; choose one of {list(options)}")
        if not slope > 0:
            raise ConfigError(f"data.slope={slope} must be > 0 (an activation with slope 0 is not invertible)")
        fractions = tuple(float(f) for f in split)
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ConfigError(f"data.split={list(split)} must be three positive fractions summing to 1")
        sizes = [int(points_per_segment * f) for f in fractions[1:]]  # val, test per segment; train the rest
        if min(sizes) < 1:
            raise ConfigError(
                f"data.points_per_segment={points_per_segment} is too small for data.split="
                f"{list(split)}: every split needs a point of every segment"
            )
        self.per_segment = (points_per_segment - sum(sizes), *sizes)
        self.generator_args = dict(
            n_segments=n_segments,
            points_per_segment=points_per_segment,
            n_sources=n_sources,
            data_dim=data_dim,
            n_layers=n_layers,
            seed=data_seed,
            source_distribution=source_distribution,
            centred=centred,
            activation=activation,
            slope=slope,
            same_matrix=same_matrix,
        )
        self.aux, self.file = aux, file
        if file is not None and aux != "onehot":
            raise ConfigError(f"data.file={file} holds one-hot segments; set data.aux=onehot")
        self.spec = DataSpec(
            name="nonlinear_ica",
            x_shape=(data_dim,),
            aux_dim=n_segments if aux == "onehot" else 1,
            # n_sources: the iVAE family's latent size; segment_means: whether the prior needs
            # a mean (model.latent_dim=null / model.prior_mean=auto follow these)
            ground_truth={"n_sources": n_sources, "segment_means": not centred},
        )

    def build(self) -> dict[str, Split]:
        data = make_nonlinear_ica_data(**self.generator_args) if self.file is None else self._read_file()
        ns, nps = self.generator_args["n_segments"], self.generator_args["points_per_segment"]
        segment = data["segment"]
        if self.aux == "onehot":
            u = torch.nn.functional.one_hot(segment, ns).float()
        else:
            g = torch.Generator().manual_seed(self.generator_args["seed"] + 1)
            u = ((segment + torch.rand(len(segment), generator=g)) / ns).unsqueeze(1)
        position = torch.arange(len(segment)) % nps  # index within the segment (points are i.i.d. in it)
        bounds = torch.tensor(self.per_segment).cumsum(0)
        split_of = torch.bucketize(position, bounds, right=True)  # 0 train, 1 val, 2 test
        return {
            name: {"x": data["x"][split_of == i], "u": u[split_of == i], "z_true": data["s"][split_of == i]}
            for i, name in enumerate(("train", "val", "test"))
        }

    def _read_file(self) -> dict[str, torch.Tensor]:
        """``s``, ``x`` and ``segment`` (points ordered by segment) from the reference code's .npz (``file``);
        its sizes must be the configured ones."""
        import numpy as np

        path = self.file
        try:
            with np.load(path) as arrays:
                s, x, u = (torch.from_numpy(np.asarray(arrays[k], dtype=np.float32)) for k in ("s", "x", "u"))
        except FileNotFoundError:
            raise DataError(f"data.file={path} does not exist; give the path of a reference .npz") from None
        except (OSError, ValueError, KeyError) as err:
            raise DataError(
                f"data.file={path} is not a reference iVAE data set (an .npz with s, x and one-hot u): {err}"
            ) from None
        segment = u.argmax(1)
        counts = torch.bincount(segment, minlength=u.shape[1])
        args = self.generator_args
        found = {
            "n_segments": u.shape[1],
            "points_per_segment": int(counts[0]),
            "n_sources": s.shape[1],
            "data_dim": x.shape[1],
        }
        for key, value in found.items():
            if value != args[key]:
                raise ConfigError(f"data.{key}={args[key]} but data.file={path} has {value}; set data.{key}={value}")
        if len(s) != len(x) or len(u) != len(x) or not (counts == counts[0]).all():
            raise DataError(f"data.file={path}: s, x and u differ in length or its segments in size")
        order = torch.sort(segment, stable=True).indices
        return {"s": s[order], "x": x[order], "segment": segment[order]}
