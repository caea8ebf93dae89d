"""Loop overhead: vaelab's `trainer.fit` against a minimal hand-written PyTorch loop, one config per process.

Both variants use the same model class and initial weights (built from the same config and seed), the same
training tensors, the same optimizer and learning-rate schedule (built from the config's factories, with the
same total number of steps), the same thread count and the same number of optimizer steps. vaelab runs as
`vaelab-train` configures it (validation, diagnostics, checkpoints, TensorBoard, progress bar at their
default frequencies), so the ratio is the whole cost of the framework. The variants alternate (their order
flips every repetition) after an untimed warm-up round (Lightning imports parts of itself on first use); the
ratio is the median of the per-repetition ratios (each pair ran back to back, so slow drifts of a shared
machine cancel). With ``--device cuda`` both run on the GPU with the training tensors resident there.

    python scripts/bench/loop.py --epochs 100 --reps 5 -- data.batch_size=1024
    python scripts/bench/loop.py --epochs 5 --reps 3 -- experiment=vae_mnist paths.data_dir=/path/to/data
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time

import torch

from common import load_average, summary, write_result
from vaelab.build import build
from vaelab.config import compose_config
from vaelab.data.in_memory import GROUND_TRUTH_KEYS


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def optimizer_and_scheduler(module, steps: int):
    """The optimizer and scheduler the training module would build, for `steps` optimizer steps."""
    optimizer = module.optimizer_factory(module.model.parameters())
    factory = module.scheduler_factory
    if factory is None:
        return optimizer, None
    wants_total = "total_steps" in inspect.signature(factory).parameters and "total_steps" not in getattr(
        factory, "keywords", {}
    )
    return optimizer, factory(optimizer, **({"total_steps": steps} if wants_total else {}))


def hand_loop(run, steps: int, device: torch.device) -> float:
    """randperm batches of the training tensors (already on `device`), model.loss, backward, optimizer and
    scheduler step; seconds for `steps` steps."""
    model = run.model.to(device).train()
    dm = run.datamodule
    train = {k: v.to(device) for k, v in dm.split("train").items() if k not in GROUND_TRUTH_KEYS}
    n, bs = len(train["x"]), dm.batch_size
    optimizer, scheduler = optimizer_and_scheduler(run.module, steps)
    _sync(device)
    start, done = time.perf_counter(), 0
    while done < steps:
        perm = torch.randperm(n, device=device)
        for i in range(n // bs):
            rows = perm[i * bs : (i + 1) * bs]
            loss = model.loss({k: v.index_select(0, rows) for k, v in train.items()})["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            done += 1
            if done == steps:
                break
    _sync(device)
    return time.perf_counter() - start


def vaelab_loop(run, steps: int, device: torch.device) -> float:
    """`trainer.fit` as `vaelab-train` runs it; seconds."""
    start = time.perf_counter()
    run.trainer.fit(run.module, datamodule=run.datamodule)
    _sync(device)
    elapsed = time.perf_counter() - start
    if run.trainer.global_step != steps:
        raise RuntimeError(f"vaelab took {run.trainer.global_step} steps, the hand loop {steps}")
    return elapsed


VARIANTS = {"hand": hand_loop, "vaelab": vaelab_loop}


def measure(overrides: list[str], epochs: int, warmup_epochs: int, reps: int, threads: int, device: str) -> dict:
    """Times both variants `reps` times (after one warm-up round); returns the case's JSON object."""
    dev = torch.device(device)
    on_device = ["trainer=gpu"] if dev.type == "cuda" else []
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    steps = batch_size = None
    load_before = load_average()
    for rep in range(-1, reps):  # rep -1: the warm-up, not timed
        order = list(VARIANTS) if rep % 2 == 0 else list(VARIANTS)[::-1]
        for name in order:
            n_epochs = epochs if rep >= 0 else warmup_epochs
            with tempfile.TemporaryDirectory() as tmp:
                cfg = compose_config(
                    [
                        *on_device,
                        *overrides,
                        f"trainer.max_epochs={n_epochs}",
                        f"torch_threads={threads}",
                        f"seed={max(rep, 0)}",
                        # fixed step counts, the same as the hand loop's
                        "callbacks.convergence.extend=false",
                    ],
                    output_dir=tmp,
                )
                run = build(cfg)
                run.datamodule.setup()
                loader = run.datamodule.train_dataloader()
                batch_size, rep_steps = loader.batch_size, n_epochs * loader.num_batches()
                elapsed = VARIANTS[name](run, rep_steps, dev)
            if rep >= 0:
                times[name].append(elapsed)
                steps = rep_steps
    ratios = [v / h for v, h in zip(times["vaelab"], times["hand"], strict=True)]
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "kind": "loop",
        "overrides": overrides,
        "device": device,
        "batch_size": batch_size,
        "epochs": epochs,
        "steps": steps,
        "threads": threads,
        "reps": reps,
        "seconds": {name: summary(ts) for name, ts in times.items()},
        "steps_per_s": {name: round(steps / m, 1) for name, m in medians.items()},
        "ratio": summary(ratios, 3),
        "ratio_of_medians": round(medians["vaelab"] / medians["hand"], 3),
        "ratio_of_minima": round(min(times["vaelab"]) / min(times["hand"]), 3),
        "load_before": load_before,
        "load_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="training epochs per timed repetition")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("overrides", nargs="*", help="config overrides for both loops")
    args = parser.parse_args()
    write_result(
        args.json, measure(args.overrides, args.epochs, args.warmup_epochs, args.reps, args.threads, args.device)
    )


if __name__ == "__main__":
    main()
