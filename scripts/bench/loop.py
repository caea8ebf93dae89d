"""Time vaelab's training loop against a minimal hand-written PyTorch loop on the same model and data.

Both loops run in this process with the same thread count, the same model class and initial weights, the same
in-memory data, Adam + OneCycleLR and the same number of optimizer steps; the variants are interleaved over
several repetitions after an untimed warm-up round (Lightning imports parts of itself lazily on first use),
and the medians (and minima) are compared. vaelab runs exactly as `vaelab-train` configures it
(validation, diagnostics, checkpoints, TensorBoard logging, progress bar), so the ratio is the whole cost of
the framework at its default evaluation frequency.

    python scripts/bench_loop.py                      # batch 1024 and 128, 1 thread
    python scripts/bench_loop.py --batch-sizes 1024 --threads 2 --reps 5 -- model.latent_dim=10
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from vaelab.config import compose_config
from vaelab.train import build


def hand_loop(run, steps: int) -> float:
    """A minimal loop: randperm batches from the training tensor, model.loss, Adam + OneCycle; seconds."""
    model, dm = run.model, run.datamodule
    x = dm.split("train")["x"]
    bs = dm.batch_size
    opt = torch.optim.Adam(model.parameters(), lr=run.module.optimizer_factory.keywords["lr"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=steps,
                                                cycle_momentum=False)
    start, done = time.perf_counter(), 0
    while done < steps:
        perm = torch.randperm(len(x))
        for i in range(len(x) // bs):
            loss = model.loss({"x": x.index_select(0, perm[i * bs:(i + 1) * bs])})["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def vaelab_loop(run, steps: int) -> float:
    """`trainer.fit` as `vaelab-train` runs it; seconds."""
    start = time.perf_counter()
    run.trainer.fit(run.module, datamodule=run.datamodule)
    elapsed = time.perf_counter() - start
    assert run.trainer.global_step == steps, (run.trainer.global_step, steps)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 128])
    parser.add_argument("--epochs", type=int, default=100, help="training epochs per repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("overrides", nargs="*", help="config overrides for both loops")
    args = parser.parse_args()

    results = []
    for bs in args.batch_sizes:
        times = {"hand": [], "vaelab": []}
        steps = None
        for rep in range(-1, args.reps):  # rep -1: warm-up, not timed
            for variant in ("hand", "vaelab"):
                epochs = args.epochs if rep >= 0 else 2
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = compose_config([f"data.batch_size={bs}", f"trainer.max_epochs={epochs}",
                                          f"torch_threads={args.threads}", f"seed={max(rep, 0)}", *args.overrides],
                                         output_dir=tmp)
                    run = build(cfg)
                    run.datamodule.setup()
                    steps = epochs * run.datamodule.train_dataloader().num_batches()
                    elapsed = hand_loop(run, steps) if variant == "hand" else vaelab_loop(run, steps)
                    if rep >= 0:
                        times[variant].append(elapsed)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"batch_size": bs, "steps": steps, "threads": args.threads,
               **{f"{k}_steps_per_s": round(steps / med[k], 1) for k in med},
               **{f"{k}_s_min_max": [round(min(v), 3), round(max(v), 3)] for k, v in times.items()},
               "ratio": round(med["vaelab"] / med["hand"], 3),
               "ratio_of_minima": round(min(times["vaelab"]) / min(times["hand"]), 3)}
        results.append(row)
        print(f"batch {bs:5d}: hand {row['hand_steps_per_s']:7.1f} steps/s, vaelab {row['vaelab_steps_per_s']:7.1f}"
              f" steps/s, ratio {row['ratio']:.3f} (median of {args.reps}; of minima {row['ratio_of_minima']:.3f};"
              f" {steps} steps, {args.threads} thread)",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
