"""Evaluate a model on a whole split: one pass for the posterior statistics and loss terms, the context every
evaluator (vaelab.diagnostics) reads, and the default evaluators' results outside training."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vaelab.data.in_memory import Split
from vaelab.diagnostics.base import EvalContext, Evaluator, Progress, ProgressMode, run_evaluators
from vaelab.errors import ConfigError
from vaelab.models.base import LatentVariableModel
from vaelab.models.gaussian import DiagonalGaussian


def pass_label(model: LatentVariableModel, split_name: str) -> str:
    """The progress label of a pass of `model` over a split (SA-VAE's refinement named: it is the slow part)."""
    refine = getattr(model, "refine_in_eval", False) and getattr(model, "steps", 0)
    return f"posterior pass{f' with {refine} SA refinement steps' if refine else ''} ({split_name})"


@torch.no_grad()
def collect_posterior(
    model: LatentVariableModel,
    split: Split,
    batch_size: int,
    seed: int = 0,
    progress_mode: ProgressMode = "off",
    split_name: str = "split",
) -> dict:
    """Runs the model over `split` in chunks with the global RNG forked and seeded (training's random stream
    is untouched). Returns the posterior (N, k), the prior (or None), x_hat at the posterior mean (None for
    token data), and the sample-averaged loss terms (nats per sample). Progress over the points as
    `progress_mode` says (vaelab.diagnostics.base.Progress)."""
    device = next(model.parameters()).device
    n = len(split["x"])
    was_training = model.training
    model.eval()
    means, logvars, prior_means, prior_logvars, x_hats = [], [], [], [], []
    sums: dict[str, float] = {}
    label = pass_label(model, split_name)
    refining = "SA refinement" in label  # SA-VAE: the slow part is its SVI steps (encode and loss each refine)
    if refining:
        progress = Progress(2 * model.steps * -(-n // batch_size), label, progress_mode, unit="SVI step")
        model.progress = progress  # told of each step
    else:
        progress = Progress(n, label, progress_mode, unit="pt")
    try:
        with progress, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in range(0, n, batch_size):
                batch = {k: v[start : start + batch_size].to(device, non_blocking=True) for k, v in split.items()}
                q = model.encode(batch)
                p = model.prior(batch)
                means.append(q.mean)
                logvars.append(q.logvar)
                if p is not None:
                    prior_means.append(p.mean.expand_as(q.mean))
                    prior_logvars.append(p.logvar.expand_as(q.logvar))
                if split["x"].is_floating_point():  # token ids (text) have no point reconstruction to compare
                    x_hats.append(model.reconstruction(model.decode(q.mean, batch)))
                for name, value in model.loss(batch).items():
                    sums[name] = sums.get(name, 0.0) + float(value) * len(batch["x"])
                if not refining:
                    progress.update(len(batch["x"]))
    finally:
        if refining:
            model.progress = None
    model.train(was_training)
    cat = lambda ts: torch.cat(ts).cpu()  # noqa: E731
    prior = DiagonalGaussian(cat(prior_means), cat(prior_logvars)) if prior_means else None
    return {
        "posterior": DiagonalGaussian(cat(means), cat(logvars)),
        "prior": prior,
        "x_hat": cat(x_hats) if x_hats else None,
        "loss_terms": {name: total / n for name, total in sums.items()},
    }


def evaluation_context(
    model: LatentVariableModel,
    split_name: str,
    split: Split,
    batch_size: int,
    seed: int = 0,
    load_split: Callable[[str], Split] | None = None,
    collected: dict | None = None,
    progress_mode: ProgressMode = "off",
) -> EvalContext:
    """What every evaluator reads about `split`: one collect_posterior pass (or `collected`, its result when the
    caller already has it); `progress_mode` for the pass and the evaluators' ``ctx.progress``."""
    c = collected or collect_posterior(model, split, batch_size, seed, progress_mode, split_name)
    return EvalContext(
        model,
        split_name,
        split,
        c["posterior"],
        c["prior"],
        c["x_hat"],
        c["loss_terms"],
        batch_size,
        seed,
        load_split,
        progress_mode,
    )


def default_evaluators(**settings: Any) -> dict[str, Evaluator]:
    """The evaluators of conf/callbacks/default.yaml (``callbacks.diagnostics.evaluators``), each built with its
    settings there; `settings` override them by dotted key below that node, e.g. ``{"mcc.method": "spearman"}``.
    A bad setting raises the evaluator's ConfigError."""
    text = (resources.files("vaelab.conf") / "callbacks" / "default.yaml").read_text()
    node = OmegaConf.create(text).diagnostics.evaluators
    for key, value in settings.items():
        OmegaConf.update(node, key, value, merge=False)
    try:
        return {name: instantiate(sub) for name, sub in node.items() if sub is not None}
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise


def diagnose(
    model: LatentVariableModel,
    split: Split,
    batch_size: int,
    active_threshold: float = 0.1,
    au_threshold: float = 0.01,
    seed: int = 0,
    collected: dict | None = None,
    mcc_method: str = "pearson",
    mcc_sample: bool = False,
) -> dict:
    """The metrics.json entries (numbers and per-dim / per-group lists) of the default evaluators on `split`,
    evaluated as a validation split (test-only evaluators leave it out), with the active-dims and active-units
    thresholds and the MCC options given here; `collected` is collect_posterior's result when the caller
    already has it."""
    evaluators = default_evaluators(
        **{
            "active_dims.threshold": active_threshold,
            "active_units.threshold": au_threshold,
            "mcc.method": mcc_method,
            "mcc.sample": mcc_sample,
        }
    )
    ctx = evaluation_context(model, "val", split, batch_size, seed, collected=collected)
    return run_evaluators(evaluators, ctx).results()


@torch.no_grad()
def encode_split(
    model: LatentVariableModel, split: Split, batch_size: int, seed: int = 0, progress: Any = None
) -> DiagonalGaussian:
    """q(z | x) of every point of `split`, (N, k) on the CPU (encoder only; global RNG forked and seeded, for
    models whose encoder is stochastic, e.g. SemiAmortized's refinement). ``progress``: anything with
    ``update(points)`` (e.g. ``ctx.progress(len(split["x"]), pass_label(model, "train"), unit="pt")``)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    means, logvars = [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(split["x"]), batch_size):
            batch = {k: v[start : start + batch_size].to(device) for k, v in split.items()}
            q = model.encode(batch)
            means.append(q.mean.cpu())
            logvars.append(q.logvar.cpu())
            if progress is not None:
                progress.update(len(batch["x"]))
    model.train(was_training)
    return DiagonalGaussian(torch.cat(means), torch.cat(logvars))


def posterior_means(
    model: LatentVariableModel, split: Split, batch_size: int, seed: int = 0, progress: Any = None
) -> torch.Tensor:
    """E_q[z | x] of every point of `split`, shape (N, k), on the CPU: encode_split's means."""
    return encode_split(model, split, batch_size, seed, progress).mean
