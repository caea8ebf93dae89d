"""Diagnostics cost: the time of each metric on its default evaluation set size, one process.

Models are built from their configs and left untrained (the cost does not depend on the weights): the
default GaussianVAE on the synthetic manifold data, the MNIST VAE of experiment=vae_mnist (when the MNIST
files are found under ``--data-dir``; otherwise the 10k-point sets come from synthetic data). Each metric runs
``--reps`` times; medians and min-max are reported. A metric whose function is not in this checkout is
reported as missing.

    python scripts/bench/diagnostics.py --data-dir ../shared/data --reps 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from common import load_average, summary, write_result
from vaelab import metrics
from vaelab.build import build
from vaelab.config import compose_config
from vaelab.evaluation import collect_posterior


def _built(overrides: list[str], threads: int):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config([*overrides, f"torch_threads={threads}", "logger=none"], output_dir=tmp)
        run = build(cfg)
    run.datamodule.setup()
    return run.model, run.datamodule, cfg.data.eval_batch_size


def metric_cases(data_dir: str | None, threads: int, size: float = 1.0) -> list[tuple[str, str, Callable]]:
    """(metric, evaluation set, zero-argument function) for every metric; `size` < 1 shrinks the sets (tests)."""
    n = lambda k: max(64, int(k * size))  # noqa: E731
    has_mnist = data_dir is not None and (Path(data_dir) / "mnist").is_dir()
    if has_mnist:
        model, dm, eval_bs = _built(
            ["experiment=vae_mnist", f"paths.data_dir={data_dir}", f"data.n_val={n(10_000)}"], threads
        )
        big, where = dm.split("val"), "MNIST val"
    else:
        model, dm, eval_bs = _built([f"data.n_samples={10 * n(10_000)}"], threads)
        big, where = dm.split("val"), "synthetic val"
    default_model, default_dm, default_bs = _built([], threads)
    default_val = default_dm.split("val")
    posterior = collect_posterior(model, big, eval_bs)["posterior"]
    label = f"{where}, {len(big['x'])} points"
    cases: list[tuple[str, str, Callable]] = [
        (
            "posterior pass (encoder + decoder + loss)",
            f"synthetic val, {len(default_val['x'])} points",
            lambda: collect_posterior(default_model, default_val, default_bs),
        ),
        ("posterior pass (encoder + decoder + loss)", label, lambda: collect_posterior(model, big, eval_bs)),
        (
            "AD + AU",
            label,
            lambda: (
                metrics.active_dims(metrics.mean_encoder_variance(posterior.var)),
                metrics.active_units(posterior.mean),
            ),
        ),
        ("KL per dim", label, lambda: metrics.kl_per_dim(posterior)),
    ]
    if hasattr(metrics, "mutual_information"):
        cases.append(
            (
                "MI (whole-set aggregate)",
                label,
                lambda: metrics.mutual_information(posterior, generator=torch.Generator().manual_seed(0)),
            )
        )
    if hasattr(metrics, "mcc"):
        g = torch.Generator().manual_seed(0)
        z_true = torch.randn(n(40_000), 5, generator=g)
        z = z_true @ torch.randn(5, 5, generator=g) + 0.1 * torch.randn(n(40_000), 5, generator=g)
        cases.append(("MCC (Pearson, Hungarian)", f"{len(z)} points, 5 dims", lambda: metrics.mcc(z_true, z)))
    if has_mnist:
        cases += _mnist_cases(model, dm, eval_bs, n)
    return cases


def _mnist_cases(model, dm, eval_bs: int, n: Callable[[int], int]) -> list[tuple[str, str, Callable]]:
    cases = []
    test = dm.split("test")
    try:
        from vaelab.likelihood import importance_sampled_nll

        cases.append(
            (
                "IW-NLL (K = 500)",
                f"MNIST test, {n(1000)} images",
                lambda: importance_sampled_nll(model, test, n_samples=500, n_points=n(1000)),
            )
        )
    except ImportError:
        pass
    from vaelab import evaluation

    posterior_means = getattr(evaluation, "posterior_means", None)
    if hasattr(metrics, "probe_accuracy") and posterior_means is not None:
        train = dm.split("train")
        train_x = {k: v[: n(50_000)] for k, v in train.items()}

        test_features = posterior_means(model, test, eval_bs, 0)  # Diagnostics has them already

        def probe() -> float:  # as Diagnostics runs it on the test split: encode the training set, then fit
            features = posterior_means(model, train_x, eval_bs, 0)
            return metrics.probe_accuracy(features, train_x["y"], test_features, test["y"])

        cases.append(
            ("linear probe (encode + L-BFGS)", f"MNIST {len(train_x['x'])} train / {len(test['x'])} test", probe)
        )
    return cases


def measure(data_dir: str | None, reps: int, threads: int, size: float) -> dict:
    load_before = load_average()
    rows = []
    for metric, evaluated_on, fn in metric_cases(data_dir, threads, size):
        seconds = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        rows.append({"metric": metric, "set": evaluated_on, "seconds": summary(seconds)})
        print(f"{metric:45s} {evaluated_on:35s} {rows[-1]['seconds']['median']:8.3f} s", flush=True)
    return {
        "kind": "diagnostics",
        "threads": threads,
        "reps": reps,
        "metrics": rows,
        "load_before": load_before,
        "load_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding mnist/ (without it: synthetic sets only)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=float, default=1.0, help="scale of the evaluation sets (tests: < 1)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    write_result(args.json, measure(args.data_dir, args.reps, args.threads, args.size))


if __name__ == "__main__":
    main()
