"""Whether a run has converged, judged from its validation diagnostics, and the training length that adapts to it.

The criterion (``assess``) reads the history of validation evaluations (one entry per diagnostics run: the
optimizer step, active dims, per-dim mean encoder variances, the validation negative ELBO and, for models with
a learnable decoder variance, gamma). A run has converged when

- ``enough_evaluations``: there are at least ``window`` evaluations;
- ``active_dims_stable``: the number of active dims is the same in the last ``window`` evaluations;
- ``variance_split`` (models with a learnable gamma, whose theory predicts it): no dim's mean encoder variance
  (ratio to the prior's when the prior is learned) lies inside ``variance_band``. At a converged solution the
  variances split into O(gamma) (active) and about 1 (inactive); a dim in between is still opening or closing.
  On data with classes or groups (``group_encoder_var`` in the history: a union of manifolds, condition groups)
  the split is judged within each group: a dim that one class uses and another does not has a pooled mean
  variance in between at a perfectly converged solution;
- ``units_match_dims`` (the same models): active units = active dims. An inactive dim of a converged solution
  is the prior, so its posterior mean carries nothing; posterior means that still vary in a dim whose variance
  is near 1 mean it is on its way in or out. With groups: active units = the dims that some group uses;
- ``loss_settled`` (models without a learnable gamma): the validation loss that training minimises (the
  negative ELBO, or the model's own objective where it differs, e.g. the iVAE's weighted one, whose ELBO may
  drift while the objective settles) changed by less than ``loss_rtol`` (relative) over the window. With a
  learnable gamma the loss keeps falling as gamma -> 0 on a correct solution (the (d - r)/2 log gamma term), so
  it says nothing about the structure and is not checked. With ``representation_corr`` set (the iVAE
  experiments: their result is the representation, not the objective) the check is ``settled`` instead: the
  loss settled as above, *or* the representation did: the posterior means of the first validation points at
  the window's last evaluation match those at its first, dim to dim up to permutation, sign and scale, with
  every matched |correlation| at least ``representation_corr`` (``metrics.representation_match``; the evidence
  keeps ``loss_settled`` and ``representation_match_window``). A decoder that still sharpens moves the
  objective by a few percent while the latents, and so MCC, stay where they are;
- ``dims_cover_data`` (models with a learnable gamma on data without a condition, vectors of at most
  ``LOCAL_DIM_MAX_WIDTH`` numbers): the active dims are at least the data's own local dimension
  (``metrics.local_pca_dimension`` on the training points: the data alone, no ground truth). A direction that
  the data spans but that no active dim carries is absorbed into gamma as noise: the run plateaus with every
  other check passing (seen where the data expresses one direction several times more weakly than the others).
  With groups, the group that uses the most dims is compared (the local dimension is a median over the data);
- ``group_dims_match_data`` (models with a learnable gamma on data whose condition is a function of the class
  ``y``, e.g. a one-hot class on a discrete union of manifolds: vectors of at most ``LOCAL_DIM_MAX_WIDTH``
  numbers): each class's active dims (variance at most the band's low end, within the class) equal that
  class's own local dimension (local PCA on the class's training points). Within a class the condition is
  constant, so it can carry none of the class's dims: fewer active dims leave a direction to gamma, more are
  still open. Not applied where the condition varies within a class (condition groups revealing coordinates:
  there the condition carries some of them);
- ``dims_within_data`` (the same runs, without groups): the active dims are at most the data's local dimension.
  More means dims that carry nothing the data has are still open: gamma has not fallen far enough to close them
  (seen with a small initial gamma that then hardly moves, e.g. model.log_gamma_init=-8);
- ``held_through_extension`` (only when the run was extended, see ``Convergence``): the active dims at the end
  equal those at the end of the previous learning-rate cycle. Dims can sit closed while the learning rate
  anneals to zero and open when training goes on (a saddle, not a solution): only more training shows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch

from vaelab.console import FILE_ONLY, log
from vaelab.errors import ConfigError
from vaelab.metrics import representation_match
from vaelab.schedules import takes_total_steps, total_steps

EXTEND_CHOICES = ("auto", True, False)
LOCAL_DIM_MAX_WIDTH = 256  # wider samples (images) get no local-dimension check: their neighbourhoods are too sparse


def assess(
    history: Sequence[Mapping[str, Any]],
    window: int = 3,
    variance_band: Sequence[float] = (0.05, 0.8),
    loss_rtol: float = 0.01,
    learnable_gamma: bool = False,
    extensions: Sequence[Mapping[str, Any]] = (),
    data_dimension: int | None = None,
    representation_corr: float | None = None,
    group_data_dimensions: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """The convergence verdict of a run. ``history``: validation evaluations in step order, each with ``step``,
    ``active_dims``, ``encoder_var`` (k mean variances), ``neg_elbo`` (nats) and optionally ``active_units``,
    ``gamma`` and ``objective`` (the loss training minimises where it is not neg_elbo: the loss check reads it);
    ``extensions``: the cycles added by ``Convergence``, each with ``active_dims_before``; ``data_dimension``:
    the data's local dimension when the model should use at least that many dims (None: no such check);
    ``representation_corr``: see the module docstring (None: the loss alone; entries then may carry
    ``posterior_means``, (M, k), of the same M validation points each); ``group_data_dimensions``: each class's
    local dimension (None for a class with too few points to tell) when the model should use exactly that many
    dims in the class (None: no such check).

    Returns ``{"converged": bool, "convergence": evidence}``; the evidence has ``checks`` (name -> bool),
    ``reason`` (one line: what failed, or why it passed) and the numbers behind each check."""
    low, high = variance_band
    recent = list(history[-window:])
    checks: dict[str, bool] = {"enough_evaluations": len(history) >= window}
    evidence: dict[str, Any] = {
        "evaluations": len(history),
        "window": window,
        "window_steps": [recent[0]["step"], recent[-1]["step"]] if recent else None,
        "active_dims_window": [e["active_dims"] for e in recent],
    }
    reasons = (
        []
        if checks["enough_evaluations"]
        else [f"only {len(history)} validation evaluation(s), {window} needed (train longer or evaluate more often)"]
    )
    if recent:
        ads = evidence["active_dims_window"]
        checks["active_dims_stable"] = len(set(ads)) == 1
        if not checks["active_dims_stable"]:
            reasons.append(
                f"active dims still changing ({' -> '.join(map(str, ads))} over the last {len(ads)} evaluations)"
            )
        last = recent[-1]
        groups = last.get("group_encoder_var")  # data with classes/groups: variances judged within each
        if learnable_gamma:
            variances = (
                {(g, j): v for g, group in enumerate(groups) for j, v in enumerate(group)}
                if groups
                else dict(enumerate(last["encoder_var"]))
            )
            ambiguous = {key: v for key, v in variances.items() if low < v < high}
            checks["variance_split"] = not ambiguous
            evidence["ambiguous_dims"] = {(_dim_name(k) if groups else k): v for k, v in ambiguous.items()}
            active = [v for v in variances.values() if v <= low]
            inactive = [v for v in variances.values() if v >= high]
            evidence["max_active_var"] = max(active) if active else None
            evidence["min_inactive_var"] = min(inactive) if inactive else None
            if ambiguous:
                reasons.append(
                    f"{len(ambiguous)} dim(s) with encoder variance between {low:g} and {high:g} "
                    "(" + ", ".join(f"{_dim_name(k)}: {v:.2g}" for k, v in list(ambiguous.items())[:6]) + ")"
                )
            # with groups, a dim is used when any group uses it: the posterior means vary in exactly those
            used = len({key[1] for key, v in variances.items() if v <= low}) if groups else last["active_dims"]
            if last.get("active_units") is not None:
                checks["units_match_dims"] = last["active_units"] == used
                evidence["active_units"] = last["active_units"]
                if not checks["units_match_dims"]:
                    reasons.append(
                        f"{last['active_units']} active units (posterior means that vary) but "
                        f"{used} {'dims active in some group' if groups else 'active dims'}"
                    )
            gammas = [e.get("gamma") for e in recent]
            if all(g is not None and g > 0 for g in gammas):
                evidence["log_gamma_change_window"] = math.log(gammas[-1]) - math.log(gammas[0])
        # the loss training minimises: the objective where it is not the negative ELBO (the iVAE's weighted one)
        key = "objective" if all(e.get("objective") is not None for e in recent) else "neg_elbo"
        first_loss, last_loss = recent[0][key], last[key]
        change = abs(last_loss - first_loss) / max(abs(last_loss), 1.0)
        evidence["val_loss_rel_change"], evidence["val_loss"] = change, key
        if not learnable_gamma:
            loss_settled = change < loss_rtol
            moving = (
                f"validation {'objective' if key == 'objective' else 'loss'} still moving ({first_loss:.4g} -> "
                f"{last_loss:.4g} nats, {change:.2%} over the window; tolerance {loss_rtol:.2%})"
            )
            means = [recent[0].get("posterior_means"), last.get("posterior_means")]
            if representation_corr is None or any(m is None for m in means):
                checks["loss_settled"] = loss_settled
                if not loss_settled:
                    reasons.append(moving)
            else:
                match = representation_match(*means)
                evidence["loss_settled"], evidence["representation_match_window"] = loss_settled, match
                checks["settled"] = loss_settled or match >= representation_corr
                if not checks["settled"]:
                    reasons.append(
                        f"{moving}, and the representation too (matched posterior-mean |correlation| {match:.4f} "
                        f"over the window; needs {representation_corr:g})"
                    )
        if data_dimension is not None:
            covered = (
                max(sum(v <= low for v in group) for group in groups)
                if learnable_gamma and groups
                else last["active_dims"]
            )
            checks["dims_cover_data"] = covered >= data_dimension
            evidence["data_local_dimension"] = data_dimension
            if not checks["dims_cover_data"]:
                reasons.append(
                    f"{covered} active dims but the data's local dimension is "
                    f"{data_dimension} (local PCA): a direction of the data is not represented"
                )
            if not (learnable_gamma and groups):  # groups: each uses its own number, the median says little
                checks["dims_within_data"] = last["active_dims"] <= data_dimension
                if not checks["dims_within_data"]:
                    reasons.append(
                        f"{last['active_dims']} active dims but the data's local dimension is {data_dimension} "
                        "(local PCA): dims beyond the data's own are still open"
                    )
        if group_data_dimensions is not None and learnable_gamma and groups:
            used = [sum(v <= low for v in group) for group in groups]
            pairs = [(g, used[g], r) for g, r in enumerate(group_data_dimensions) if r is not None and g < len(used)]
            wrong = [(g, a, r) for g, a, r in pairs if a != r]
            checks["group_dims_match_data"] = not wrong
            evidence["group_data_local_dimension"] = list(group_data_dimensions)
            evidence["group_active_dims"] = used
            if wrong:
                reasons.append(
                    "class active dims differ from the class's local dimension (local PCA): "
                    + ", ".join(f"class {g}: {a} active, data {r}" for g, a, r in wrong[:6])
                    + (" (a direction left to gamma)" if any(a < r for _, a, r in wrong) else "")
                )
        if extensions:
            before = extensions[-1]["active_dims_before"]
            checks["held_through_extension"] = last["active_dims"] == before
            evidence["extensions"] = list(extensions)
            if not checks["held_through_extension"]:
                reasons.append(
                    f"active dims changed from {before} to {last['active_dims']} in the last extension of training"
                )
    converged = all(checks.values())
    if converged:
        reasons = [
            f"active dims {recent[-1]['active_dims']} over the last {len(recent)} evaluations"
            + (
                ", variances split"
                if learnable_gamma
                else f", loss within {loss_rtol:.2%}"
                if checks.get("loss_settled", evidence.get("loss_settled"))
                else f", representation settled (matched |correlation| {evidence['representation_match_window']:.4f})"
            )
            + (f", held through {len(extensions)} extension(s)" if extensions else "")
        ]
    evidence["checks"] = checks
    evidence["reason"] = "; ".join(reasons)
    return {"converged": converged, "convergence": evidence}


def condition_is_class(c: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the condition c (N, t) is constant within each class of y (N,): a class label in disguise."""
    return all(bool((part == part[:1]).all()) for part in (c[y == g] for g in y.unique()))


def _dim_name(key: int | tuple[int, int]) -> str:
    """``3`` -> ``dim 3``; ``(1, 3)`` -> ``group 1 dim 3``."""
    return f"group {key[0]} dim {key[1]}" if isinstance(key, tuple) else f"dim {key}"


def extension_record(
    at_epoch: int, at_step: int, epochs: int, active_dims: int, verdict: dict[str, Any]
) -> dict[str, Any]:
    """One entry of ``convergence.extensions``: where the extension starts, its length and why it was made."""
    return {
        "at_epoch": at_epoch,
        "at_step": at_step,
        "epochs": epochs,
        "active_dims_before": active_dims,
        "reason": verdict["convergence"]["reason"]
        if not verdict["converged"]
        else "confirmation: the active dims must hold through more training",
    }


def has_learnable_gamma(model: Any) -> bool:
    """Whether `model` (or the model it wraps, e.g. SA-VAE) has a learnable decoder variance gamma."""
    inner = getattr(model, "base", model)  # SA-VAE wraps the model it refines
    log_gamma = getattr(inner, "log_gamma", None)
    return log_gamma is not None and getattr(log_gamma, "requires_grad", False)


class Convergence(L.Callback):
    """Judges convergence from the ``Diagnostics`` callback's validation history and, with ``extend``, lengthens
    training until the run has converged or the budget is spent.

    extend: ``auto`` (extend models with a learnable gamma: the manifold-dimension experiments), true, false.
    When the learning-rate schedule ends (``trainer.max_epochs``), a run that has not converged, or that has not
    yet been through ``min_extensions`` extensions, gets another cycle of ``extension_epochs`` epochs (null: a
    third of ``trainer.max_epochs``) with a fresh schedule (the config's scheduler over the extension's steps, same
    peak learning rate), as long as the total stays within ``max_epochs`` (null: 3 x ``trainer.max_epochs``).
    ``min_extensions`` = 1 makes every extended run show that its active dims hold through more training.
    window, variance_band, loss_rtol, representation_corr: the criterion of ``assess``.
    reopen_gamma_factor: when an extension is made because a direction of the data is not represented (the active
    dims below the data's local dimension: ``dims_cover_data`` failed, or a class of ``group_dims_match_data`` is
    short), gamma is divided by this factor at the start of the extension (null: left as it is). Such a run sits
    at a saddle: gamma has settled at the residual of the missing direction, and a closed dim gets no gradient to
    open. A smaller gamma makes that residual cost more than a dim's KL, so the dim opens if the data needs it;
    gamma is learned again from there. Runs whose dims cover the data are never touched.
    """

    def __init__(
        self,
        extend: str | bool = "auto",
        extension_epochs: int | None = None,
        max_epochs: int | None = None,
        min_extensions: int = 1,
        window: int = 3,
        variance_band: Sequence[float] = (0.05, 0.8),
        loss_rtol: float = 0.01,
        representation_corr: float | None = None,
        reopen_gamma_factor: float | None = 30.0,
    ):
        if extend not in EXTEND_CHOICES:
            raise ConfigError(f"callbacks.convergence.extend={extend!r} must be one of auto, true, false")
        if window < 2:
            raise ConfigError(f"callbacks.convergence.window={window} must be >= 2 (evaluations compared)")
        band = [float(b) for b in variance_band]
        if len(band) != 2 or not 0 < band[0] < band[1]:
            raise ConfigError(
                f"callbacks.convergence.variance_band={list(variance_band)} must be two numbers "
                "0 < low < high (e.g. [0.05, 0.8])"
            )
        if not loss_rtol > 0:
            raise ConfigError(f"callbacks.convergence.loss_rtol={loss_rtol} must be > 0 (e.g. 0.01)")
        if representation_corr is not None and not 0 < representation_corr <= 1:
            raise ConfigError(
                f"callbacks.convergence.representation_corr={representation_corr} must be in (0, 1] "
                "(e.g. 0.99), or null (judge by the loss alone)"
            )
        self.representation_corr = representation_corr
        if reopen_gamma_factor is not None and not reopen_gamma_factor > 1:
            raise ConfigError(
                f"callbacks.convergence.reopen_gamma_factor={reopen_gamma_factor} must be > 1 (e.g. 30), "
                "or null (leave gamma as it is)"
            )
        self.reopen_gamma_factor = reopen_gamma_factor
        if extension_epochs is not None and extension_epochs < 1:
            raise ConfigError(
                f"callbacks.convergence.extension_epochs={extension_epochs} must be >= 1 (or null: "
                "a third of trainer.max_epochs)"
            )
        if min_extensions < 0:
            raise ConfigError(f"callbacks.convergence.min_extensions={min_extensions} must be >= 0")
        self.extend_option, self.extension_epochs, self.max_epochs = extend, extension_epochs, max_epochs
        self.min_extensions, self.window, self.variance_band, self.loss_rtol = min_extensions, window, band, loss_rtol
        self.extensions: list[dict[str, Any]] = []
        self.data_dimension: int | None = None  # set when training starts, where it applies
        self.group_data_dimensions: list[int | None] | None = None  # the same, per class
        self.base_epochs: int | None = None
        self._trainer: L.Trainer | None = None

    def budget(self, base_epochs: int) -> tuple[int, int]:
        """(epochs per extension, maximum total epochs) for a run whose schedule has `base_epochs`. The default
        maximum (``max_epochs`` null) is 3 x `base_epochs` plus one extension for each extension so far that moved
        gamma (a moved gamma needs a cycle to settle), at most 6 x `base_epochs`; a ``max_epochs`` given is the
        maximum. Raises ConfigError when the maximum cannot hold the base schedule and ``min_extensions``
        extensions."""
        extension = self.extension_epochs or max(1, base_epochs // 3)
        maximum = self.max_epochs if self.max_epochs is not None else 3 * base_epochs
        needed = base_epochs + self.min_extensions * extension
        if maximum < needed:
            raise ConfigError(
                f"callbacks.convergence.max_epochs={maximum} is below the minimum {needed} "
                f"(trainer.max_epochs={base_epochs} + callbacks.convergence.min_extensions="
                f"{self.min_extensions} x {extension} epochs); raise it, or lower min_extensions"
            )
        if self.max_epochs is not None:
            return extension, maximum
        moved = sum("log_gamma_lowered" in e or "log_gamma_raised" in e for e in self.extensions)
        return extension, min(maximum + moved * extension, 2 * maximum)

    def extends(self, module: L.LightningModule) -> bool:
        if self.extend_option == "auto":
            return has_learnable_gamma(module.model)
        return bool(self.extend_option)

    def verdict(self, history: Sequence[Mapping[str, Any]], module: L.LightningModule) -> dict[str, Any]:
        return assess(
            history,
            self.window,
            self.variance_band,
            self.loss_rtol,
            has_learnable_gamma(module.model),
            self.extensions,
            self.data_dimension,
            self.representation_corr,
            self.group_data_dimensions,
        )

    def gamma_shift(self, verdict: dict[str, Any], log_gamma: float | None = None) -> float | None:
        """The amount (in log gamma) by which an extension made on `verdict` moves gamma, now at `log_gamma`:
        -log ``reopen_gamma_factor`` when a direction of the data is not represented; when more dims are open than
        the data has (``dims_within_data`` failed, or a class of ``group_dims_match_data`` has more) in a run whose
        gamma an earlier extension lowered, +log ``reopen_gamma_factor`` / 2, up to at most the gamma before the
        first lowering (the extra dims close, the one opened stays); else None (a run never lowered is never
        raised)."""
        if self.reopen_gamma_factor is None or verdict["converged"]:
            return None
        evidence, step = verdict["convergence"], math.log(self.reopen_gamma_factor)
        checks = evidence["checks"]
        dims = evidence.get("group_active_dims", []), evidence.get("group_data_local_dimension", [])
        pairs = list(zip(*dims, strict=False))
        classes = checks.get("group_dims_match_data") is False
        if checks.get("dims_cover_data") is False or (classes and any(r is not None and a < r for a, r in pairs)):
            return -step
        over = checks.get("dims_within_data") is False or (classes and any(r is not None and a > r for a, r in pairs))
        lowered = [e["log_gamma_lowered"] for e in self.extensions[:-1] if "log_gamma_lowered" in e]
        if not over or not lowered or log_gamma is None:
            return None
        room = lowered[0][0] - log_gamma  # never above gamma before the first lowering
        return min(step / 2, room) if room > 0 else None

    def move_gamma(self, log_gamma: torch.Tensor, shift: float | None) -> None:
        """Adds `shift` (from ``gamma_shift``; None: nothing) in place to `log_gamma` (a 0-d tensor: the model's
        parameter, or one member's entry of the stacked ones) and records it in the last extension
        (``log_gamma_lowered`` or ``log_gamma_raised``: [before, after])."""
        if shift is None:
            return
        before = log_gamma.item()
        self.extensions[-1]["log_gamma_lowered" if shift < 0 else "log_gamma_raised"] = [before, before + shift]
        with torch.no_grad():
            log_gamma.add_(shift)

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """The data's local dimension, for models with a learnable gamma on vector data: of the whole data
        without a condition, of each class where the condition is a function of the class."""
        from vaelab.metrics import local_pca_dimension

        spec = trainer.datamodule.spec
        if (
            not has_learnable_gamma(module.model)
            or spec.aux_dim
            or len(spec.x_shape) != 1
            or spec.x_dim > LOCAL_DIM_MAX_WIDTH
            or spec.vocab_size
        ):
            return
        train = trainer.datamodule.split("train")
        x, enough = train["x"], 10 * max(2 * spec.x_dim, 20)
        if not spec.condition_dim:
            if len(x) >= enough:
                self.data_dimension = local_pca_dimension(x)[0]
        elif "y" in train and condition_is_class(train["c"], train["y"]):
            y = train["y"].long()
            members = [x[y == g] for g in range(int(y.max()) + 1)]
            self.group_data_dimensions = [local_pca_dimension(m)[0] if len(m) >= enough else None for m in members]

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if self.base_epochs is None:
            self.base_epochs = trainer.max_epochs
        if self.extends(module) and trainer.max_epochs is not None and trainer.max_epochs > 0:
            self.budget(self.base_epochs)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.max_epochs is None or trainer.max_epochs <= 0 or trainer.should_stop:
            return  # a max_steps-bounded run (or one told to stop) is not extended
        if trainer.current_epoch + 1 < trainer.max_epochs or not self.extends(module):
            return
        from vaelab.callbacks import Diagnostics  # here: callbacks imports this module

        diagnostics = next(c for c in trainer.callbacks if isinstance(c, Diagnostics))
        verdict = self.verdict(diagnostics.history, module)
        extension, maximum = self.budget(self.base_epochs)
        wanted = not (verdict["converged"] and len(self.extensions) >= self.min_extensions)
        # every process of a multi-device run takes rank 0's decision, so that all train the same epochs
        extend = trainer.strategy.broadcast(wanted and trainer.max_epochs + extension <= maximum, src=0)
        if extend:
            self._extend(trainer, module, extension, diagnostics.history[-1]["active_dims"], verdict)
        if getattr(trainer, "is_global_zero", True):
            reason = verdict["convergence"]["reason"]
            decision = (
                f"extended by {extension} epochs (extension {len(self.extensions)}, to epoch {trainer.max_epochs})"
                if extend
                else ("not extended: converged" if not wanted else f"not extended: the budget of {maximum} epochs")
            )
            log.info(
                "vaelab: convergence at step %d: %s (%s); %s",
                trainer.global_step,
                "converged" if verdict["converged"] else "not converged",
                reason,
                decision,
                extra=FILE_ONLY,
            )

    def _extend(
        self, trainer: L.Trainer, module: L.LightningModule, epochs: int, active_dims: int, verdict: dict[str, Any]
    ) -> None:
        steps_per_epoch = trainer.datamodule.train_dataloader().num_batches()
        self.extensions.append(extension_record(trainer.max_epochs, trainer.global_step, epochs, active_dims, verdict))
        log_gamma = getattr(module.model, "base", module.model).log_gamma
        shift = self.gamma_shift(verdict, log_gamma.item())
        self.move_gamma(log_gamma, trainer.strategy.broadcast(shift, src=0))  # every process: the same move
        trainer.fit_loop.max_epochs = trainer.max_epochs + epochs
        if trainer.fit_loop.epoch_loop.max_steps > 0:
            trainer.fit_loop.epoch_loop.max_steps += epochs * steps_per_epoch
        factory = module.scheduler_factory
        if factory is not None and trainer.lr_scheduler_configs and takes_total_steps(factory):
            optimizer = trainer.lr_scheduler_configs[0].scheduler.optimizer
            steps = total_steps(None, epochs, steps_per_epoch)  # the extension's own schedule
            trainer.lr_scheduler_configs[0].scheduler = factory(optimizer, total_steps=steps)

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        return {
            "extensions": self.extensions,
            "base_epochs": self.base_epochs,
            "max_epochs": None if trainer is None else trainer.max_epochs,
            "max_steps": None if trainer is None else trainer.fit_loop.epoch_loop.max_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resumed run keeps its extensions: the raised epoch (and, where set, step) limits come back."""
        self.extensions = list(state_dict.get("extensions", []))
        self.base_epochs = state_dict.get("base_epochs", self.base_epochs)
        trainer = self._trainer
        if trainer is None:
            return
        if state_dict.get("max_epochs"):
            trainer.fit_loop.max_epochs = max(trainer.max_epochs, state_dict["max_epochs"])
        epoch_loop = trainer.fit_loop.epoch_loop
        if (state_dict.get("max_steps") or -1) > 0 and epoch_loop.max_steps > 0:
            epoch_loop.max_steps = max(epoch_loop.max_steps, state_dict["max_steps"])
