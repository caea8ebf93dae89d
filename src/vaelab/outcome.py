"""What a run's metrics.json says of it once trained, shared by single runs (vaelab.train) and seed-parallel
members (vaelab.seed_parallel): its data and model (``run_fields``), its final test metrics and convergence
verdict (``final_metrics``) and their numbers for the loggers (``final_scalars``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaelab.build import Run


def run_fields(run: Run) -> dict[str, Any]:
    """What a run's metrics.json says of its data and model once they are built: the data's name and ground
    truth (``true_<key>``), the model's class and the sizes it resolved from the data (``model_latent_dim``, the
    iVAE's ``model_prior_mean``)."""
    model, spec = run.model, run.datamodule.spec
    inner = getattr(model, "base", model)  # SA-VAE wraps the model it refines
    fields = {"data": spec.name, "model": type(model).__name__}
    if getattr(model, "latent_dim", None) is not None:
        fields["model_latent_dim"] = model.latent_dim
    if hasattr(inner, "prior_mean"):
        fields["model_prior_mean"] = bool(inner.prior_mean)
    return fields | {f"true_{k}": v for k, v in spec.ground_truth.items()}


def final_metrics(
    trainer: Any, module: Any, diagnostics: Any, convergence: Any, gamma_floor_step: int | None
) -> dict[str, Any]:
    """The metrics.json fields of a trained model: the test split's diagnostics on the final weights, the
    training length, when gamma reached its floor and (with a Convergence callback) the verdict."""
    metrics = {
        **diagnostics.run(trainer, module, "test"),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "gamma_floor_reached_at_step": gamma_floor_step,
    }
    if convergence is not None:
        metrics.update(convergence.verdict(diagnostics.history, module))
    return metrics


def final_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """``final/<key>``: every number of `metrics` (and the converged flag) as a float, for the loggers."""
    return {
        f"final/{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) or k == "converged"
    }
