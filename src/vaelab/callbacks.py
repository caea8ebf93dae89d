"""Callbacks: diagnostics (vaelab.diagnostics' evaluators) on the validation split during training and on the test
split at the end, the resumable ``last.ckpt`` (periodic, and on SIGINT/SIGTERM), the progress bar."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from tqdm.auto import tqdm

from vaelab.console import FILE_ONLY
from vaelab.diagnostics.base import Evaluation, Evaluator, progress_mode, run_evaluators, slow_evaluators
from vaelab.errors import ConfigError, DivergenceError, RunInterrupted

POSTFIX = ("train/loss", "model/gamma")
HISTORY_KEYS = ("active_dims", "active_units", "per_dim_encoder_var", "elbo")  # what convergence reads
REPRESENTATION_POINTS = 1000  # validation points whose posterior means each history entry keeps ...
REPRESENTATION_KEPT = 10  # ... in the last this many entries (convergence compares the ends of its window)
HISTOGRAM_BINS = 64  # equal bins: half the cost of TensorBoard's default ~1500 exponential buckets
RESULT_KEYS = ("active_dims", "active_units", "elbo", "kl", "recon_mse", "gamma", "mcc", "mi", "iw_nll", "iw_ppl")
log = logging.getLogger("vaelab")


class Diagnostics(L.Callback):
    """Every ``every_n_epochs`` epochs (and after the last epoch, or the last step of a ``max_steps`` run, so
    the validation curves end where training ends) the configured evaluators on the whole validation split;
    ``run(trainer, module, "test")`` runs them on the test split at the end (for metrics.json).

    One pass of the model over the split (vaelab.evaluation.collect_posterior, in chunks of
    ``eval_batch_size``) feeds every evaluator (vaelab.diagnostics: name -> evaluator, e.g. Hydra nodes with a
    ``_target_``; a None entry is left out). Everything is logged at the optimizer step (``trainer.global_step``):
    their scalars go to every logger as ``<split>/<key>``, their logger-only curves under their own tags (each
    under its ``<split>/`` too), their histograms and images to TensorBoard; ``history`` keeps one entry per
    validation run, what vaelab.convergence judges convergence from. Where the validation loop wrote a
    ``val/<term>`` at the same step already (``val/loss``, ``val/kl``), vaelab's loggers keep that first value
    (vaelab.loggers: one value per tag and step).

    Progress: work that takes seconds (the pass over the split, IW-NLL, MI, probes) shows its progress below the
    training bar (vaelab.diagnostics.base.Progress; nothing without the progress bar); each run logs one line
    of its results to train.log, and, when an evaluator took more than 2 s, one console line naming it.
    """

    def __init__(
        self, evaluators: Mapping[str, Evaluator | None], every_n_epochs: int = 10, eval_batch_size: int = 4096
    ):
        if every_n_epochs < 1:
            raise ConfigError(f"callbacks.diagnostics.every_n_epochs={every_n_epochs} must be >= 1")
        self.every_n_epochs, self.eval_batch_size = every_n_epochs, eval_batch_size
        self.evaluators = {name: e for name, e in evaluators.items() if e is not None}
        self.history: list[dict] = []  # one entry per validation run: what vaelab.convergence.assess reads

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))

    def run(self, trainer: L.Trainer, module: L.LightningModule, split: str) -> dict:
        """Evaluates `split` of the trainer's datamodule, logs the results and returns the metrics.json entries."""
        from vaelab.evaluation import evaluation_context

        start = time.perf_counter()
        datamodule = trainer.datamodule
        mode = progress_mode(trainer.is_global_zero and getattr(trainer, "progress_bar_callback", None) is not None)
        ctx = evaluation_context(
            module.model,
            split,
            datamodule.split(split),
            self.eval_batch_size,
            getattr(module, "eval_seed", 0),
            getattr(datamodule, "evaluation_split", datamodule.split),
            progress_mode=mode,
        )
        passed = time.perf_counter() - start
        evaluation = run_evaluators(self.evaluators, ctx)
        results = evaluation.results()
        if split == "val":
            entry = self._history_entry(trainer.global_step, results)
            # the same first points at every evaluation: whether the representation still moves (convergence)
            entry["posterior_means"] = ctx.posterior.mean[:REPRESENTATION_POINTS].detach().cpu().clone()
            if len(self.history) >= REPRESENTATION_KEPT:  # only recent ones are compared: checkpoints stay small
                self.history[-REPRESENTATION_KEPT].pop("posterior_means", None)
            self.history.append(entry)
        if trainer.is_global_zero:
            self._log(trainer, split, evaluation)
            self._report(trainer, split, results, {"posterior pass": passed, **evaluation.durations}, mode, start)
        return results

    @staticmethod
    def _report(trainer: L.Trainer, split: str, results: dict, durations: dict, mode: str, start: float) -> None:
        """One line of results (train.log) and, when something took over 2 s, one naming it (console too)."""
        took = time.perf_counter() - start
        where = f"{split} diagnostics at step {trainer.global_step} (epoch {trainer.current_epoch})"
        numbers = " ".join(
            f"{k}={results[k]:.4g}" if isinstance(results[k], float) else f"{k}={results[k]}"
            for k in RESULT_KEYS
            if isinstance(results.get(k), (int, float))
        )
        log.info("vaelab: %s: %s (%.1f s)", where, numbers, took, extra=FILE_ONLY)
        slow = slow_evaluators(durations)
        if slow:
            log.info("vaelab: %s took %.1f s: %s", where, took, slow, extra=None if mode != "off" else FILE_ONLY)

    def _history_entry(self, step: int, results: dict) -> dict:
        missing = [key for key in HISTORY_KEYS if key not in results]
        if missing:
            raise ConfigError(
                f"callbacks.diagnostics.evaluators: convergence reads {missing} from every validation "
                "run; keep the evaluators active_dims, active_units and loss_terms"
            )
        return {
            "step": step,
            "active_dims": results["active_dims"],
            "active_units": results["active_units"],
            "encoder_var": results["per_dim_encoder_var"],
            "neg_elbo": -results["elbo"],
            "objective": results.get("objective"),  # what training minimises, when it is not neg_elbo
            "gamma": results.get("gamma"),
            "group_encoder_var": results.get("group_encoder_var"),
            "mcc": results.get("mcc"),  # against the true sources where the data has them: reported, never used
        }

    @staticmethod
    def _log(trainer: L.Trainer, split: str, evaluation: Evaluation) -> None:
        step = trainer.global_step
        values = dict(evaluation.logged)  # a scalar under the same tag wins (its value is metrics.json's)
        values.update({f"{split}/{key}": float(value) for key, value in evaluation.scalars.items()})
        for logger in trainer.loggers:  # straight to the loggers: LightningModule.log costs ~0.5 ms per key
            logger.log_metrics(values, step=step)
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment
                for tag, values_1d in evaluation.histograms.items():
                    writer.add_histogram(tag, values_1d, step, bins=HISTOGRAM_BINS)
                for draw in evaluation.images:
                    for tag, image in draw().items():
                        writer.add_image(tag, image, step, dataformats="HW" if image.dim() == 2 else "CHW")

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        max_steps = getattr(trainer, "max_steps", -1) or -1
        last = (
            (trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs)
            or (max_steps > 0 and trainer.global_step >= max_steps)
            or trainer.should_stop
        )
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last:
            self.run(trainer, module, "val")


class LastCheckpoint(Checkpoint):
    """Owns ``<dirpath>/last.ckpt``, the state a run resumes from (``ckpt_path=`` or ``resume=<run dir>``).

    Saved only at epoch boundaries, where a resumed run continues bit-identically (the batch order of an epoch
    is drawn from (seed, epoch); checkpoints carry the RNG state): when training starts (so even a run that
    diverges in its first steps leaves a loadable checkpoint), at the end of every ``every_n_epochs``-th
    epoch, at the end of the first epoch ``every_n_seconds`` after the previous save (so ``kill -9`` loses at
    most that much work), and at the end of training. Writes are atomic (a temporary file, then a rename), so
    a kill during a save leaves the previous checkpoint intact, and weights that are not finite are never
    saved (the run is stopped as diverged instead).

    ``on_signal``: SIGINT (Ctrl-C) and SIGTERM (what SLURM and ``kill`` send) are caught while training: the
    current epoch finishes, the checkpoint is saved, and the run ends with RunInterrupted (status
    ``interrupted``). A second signal stops at once, without a new checkpoint. Not with several processes
    (DDP), where Lightning's own SIGTERM handling stays in place.
    """

    FILENAME = "last.ckpt"

    def __init__(
        self, dirpath: str, every_n_epochs: int = 25, every_n_seconds: float | None = 60.0, on_signal: bool = True
    ):
        if every_n_epochs < 1:
            raise ConfigError(f"callbacks.last_checkpoint.every_n_epochs={every_n_epochs} must be >= 1")
        if every_n_seconds is not None and not every_n_seconds > 0:
            raise ConfigError(
                f"callbacks.last_checkpoint.every_n_seconds={every_n_seconds} must be > 0 "
                "(or null for epoch-based saves only)"
            )
        self.path = Path(dirpath) / self.FILENAME
        self.every_n_epochs, self.every_n_seconds, self.on_signal = every_n_epochs, every_n_seconds, on_signal
        self.signal_received: tuple[str, int] | None = None
        self._saved_at: float = 0.0
        self._saved_step: int | None = None
        self._previous_handlers: dict[int, object] = {}

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def save(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        bad = [name for name, p in module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise DivergenceError(
                f"non-finite weights {bad[:3]} at step {trainer.global_step}; the last good "
                f"checkpoint {self.path} is kept",
                {"diverged_at_step": trainer.global_step, "diverged_on": "weights"},
            )
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        self._saved_at, self._saved_step = time.monotonic(), trainer.global_step

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._saved_at = time.monotonic()
        if self.on_signal and trainer.world_size == 1:
            self._install_handlers()
        if trainer.global_step == 0:
            self.save(trainer, module)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        due = (
            (trainer.current_epoch + 1) % self.every_n_epochs == 0
            or self.signal_received is not None
            or (self.every_n_seconds is not None and time.monotonic() - self._saved_at >= self.every_n_seconds)
        )
        if due or trainer.should_stop:
            self.save(trainer, module)
        if self.signal_received is not None:
            name, signum = self.signal_received
            raise RunInterrupted(name, signum, str(self.path), trainer.current_epoch, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._restore_handlers()
        if trainer.global_step != self._saved_step:
            self.save(trainer, module)

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()  # nothing is saved here: the state may be mid-step (or diverged)

    def teardown(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        self._restore_handlers()

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self.signal_received = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signal_received is not None:  # the second signal: stop now
            self._restore_handlers()
            raise KeyboardInterrupt
        self.signal_received = (signal.Signals(signum).name, signum)
        print(
            f"vaelab: {self.signal_received[0]} received: finishing this epoch and saving {self.path} "
            "(send it again to stop at once, without saving)",
            file=sys.stderr,
            flush=True,
        )


class StepProgressBar(ProgressBar):
    """One bar over all training steps, refreshed every ``refresh_rate`` steps (Lightning's default bar
    redraws every epoch, which is every few steps with in-memory data)."""

    def __init__(self, refresh_rate: int = 200):
        super().__init__()
        if refresh_rate < 1:
            raise ConfigError(
                f"callbacks.progress_bar.refresh_rate={refresh_rate} must be >= 1; to turn the "
                "bar off set callbacks.progress_bar=null"
            )
        self.refresh_rate = refresh_rate
        self._enabled = True
        self._bar: tqdm | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            total = module.total_steps() if hasattr(module, "total_steps") else trainer.estimated_stepping_batches
            self._bar = tqdm(
                total=int(total),
                initial=trainer.global_step,
                desc="training",
                unit="step",
                dynamic_ncols=True,
                mininterval=0.5,
                file=sys.stderr,
            )

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self._bar is not None and trainer.global_step - self._bar.n >= self.refresh_rate:
            self._bar.n = trainer.global_step
            shown = {k: getattr(module, "last_train_terms", {}).get(k) for k in POSTFIX}
            shown["val/loss"] = trainer.callback_metrics.get("val/loss")
            self._bar.set_postfix(
                {k: f"{float(v):.4g}" for k, v in shown.items() if v is not None},
                refresh=False,
                epoch=trainer.current_epoch,
            )
            self._bar.refresh()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.n = trainer.global_step
            self._bar.close()
            self._bar = None
