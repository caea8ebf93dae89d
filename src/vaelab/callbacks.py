"""Callbacks: diagnostics on the validation split during training and on the test split at the end, the
resumable ``last.ckpt`` (periodic, and on SIGINT/SIGTERM), the progress bar."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from tqdm.auto import tqdm

from vaelab.errors import ConfigError, DivergenceError, RunInterrupted
from vaelab.evaluation import (collapse_diagnostics, collect_posterior, diagnose, mcc_latents,
                               posterior_means)
from vaelab.images import image_panels
from vaelab.metrics import MCC_METHODS, abs_correlation, check_threshold, pca_2d

SCALARS = ("active_dims", "active_units", "kl", "recon_mse")
COLLAPSE_SCALARS = ("mi", "iw_nll", "iw_ppl", "probe_accuracy")
POSTFIX = ("train/loss", "model/gamma")
HISTOGRAM_BINS = 64
log = logging.getLogger("vaelab")


class Diagnostics(L.Callback):
    """Every ``every_n_epochs`` epochs: active dims/units, KL, reconstruction error and per-dim encoder
    variances on the whole validation split (scalars, one scalar per dim, a histogram over dims, and a
    histogram of the posterior means of each dim); for image data also reconstructions, prior samples and
    traversals of the `image_dims` dims with the largest KL. ``run(trainer, module, "test")`` does the same on
    the test split at the end (for metrics.json)."""

    def __init__(self, every_n_epochs: int = 10, active_threshold: float = 0.1, au_threshold: float = 0.01,
                 eval_batch_size: int = 4096, per_dim_scalars: bool = True, per_dim_histograms: bool = True,
                 image_dims: int = 8, mcc_method: str = "pearson", mcc_sample: bool = False,
                 mcc_figures: bool = True, mi_points: int = 0, mi_batch_size: int | None = None,
                 iw_nll_samples: int = 0, iw_nll_points: int = 1000, iw_nll_on_val: bool = False,
                 iw_nll_max_rows: int = 20_000,
                 probe: bool = False, latent_pca: bool = True):
        if every_n_epochs < 1:
            raise ConfigError(f"callbacks.diagnostics.every_n_epochs={every_n_epochs} must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.active_threshold = check_threshold("callbacks.diagnostics.active_threshold", active_threshold)
        self.au_threshold = check_threshold("callbacks.diagnostics.au_threshold", au_threshold)
        self.eval_batch_size = eval_batch_size
        self.per_dim_scalars = per_dim_scalars
        self.per_dim_histograms = per_dim_histograms
        self.image_dims = image_dims
        for key, value in (("mi_points", mi_points), ("iw_nll_samples", iw_nll_samples),
                           ("iw_nll_points", iw_nll_points), ("iw_nll_max_rows", iw_nll_max_rows)):
            if value < 0:
                raise ConfigError(f"callbacks.diagnostics.{key}={value} must be >= 0 (0 turns it off)")
        if mi_batch_size is not None and mi_batch_size < 1:
            raise ConfigError(f"callbacks.diagnostics.mi_batch_size={mi_batch_size} must be >= 1 (or null: the "
                              "whole-set aggregate posterior)")
        # posterior collapse (Skip-VAE): MI, importance-sampled NLL, the label probe, the PCA picture
        self.mi_points, self.mi_batch_size = mi_points, mi_batch_size
        self.iw_nll_samples, self.iw_nll_points, self.iw_nll_on_val = iw_nll_samples, iw_nll_points, iw_nll_on_val
        self.iw_nll_max_rows = iw_nll_max_rows
        self.probe, self.latent_pca = probe, latent_pca
        if mcc_method not in MCC_METHODS:
            raise ConfigError(f"callbacks.diagnostics.mcc_method={mcc_method!r} is unknown; choose one of "
                              f"{list(MCC_METHODS)}")
        # data with true latents (z_true): MCC on posterior means (or one sample), and its TensorBoard figures
        self.mcc_method, self.mcc_sample, self.mcc_figures = mcc_method, mcc_sample, mcc_figures
        self.history: list[dict] = []  # one entry per validation run: what vaelab.convergence.assess reads

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))

    def run(self, trainer: L.Trainer, module: L.LightningModule, split: str) -> dict:
        """Diagnoses `split` of the trainer's datamodule, logs the scalars and returns all results."""
        model, split_data, seed = module.model, trainer.datamodule.split(split), getattr(module, "eval_seed", 0)
        collected = collect_posterior(model, split_data, self.eval_batch_size, seed)
        results = diagnose(model, split_data, self.eval_batch_size, self.active_threshold, self.au_threshold,
                           seed, collected, self.mcc_method, self.mcc_sample)
        results.update(self._collapse(trainer, model, split, split_data, collected, seed))
        if split == "val":
            self.history.append({"step": trainer.global_step, "active_dims": results["active_dims"],
                                 "active_units": results["active_units"],
                                 "encoder_var": results["per_dim_encoder_var"], "neg_elbo": -results["elbo"],
                                 "gamma": results.get("gamma"),
                                 "group_encoder_var": results.get("group_encoder_var")})
        if not trainer.is_global_zero:
            return results
        step = trainer.global_step
        values = {f"{split}/{k}": float(results[k]) for k in SCALARS if k in results}  # text: no recon_mse
        values.update({f"{split}/{k}": float(results[k]) for k in COLLAPSE_SCALARS if k in results})
        if "mcc" in results:
            values[f"{split}/mcc"] = results["mcc"]
        enc_var = torch.tensor(results["per_dim_encoder_var"])
        if self.per_dim_scalars:
            values.update({f"encoder_var/dim_{j:03d}": float(v) for j, v in enumerate(enc_var)})
        values.update(group_scalars(split, results))
        for logger in trainer.loggers:  # straight to the loggers: LightningModule.log costs ~0.5 ms per key
            logger.log_metrics(values, step=step)
            if isinstance(logger, TensorBoardLogger):
                self._tensorboard(logger.experiment, model, split, split_data, collected, results, step, seed)
        return results

    def _tensorboard(self, writer, model, split: str, split_data: dict, collected: dict, results: dict,
                     step: int, seed: int) -> None:
        # HISTOGRAM_BINS equal bins: half the cost of TensorBoard's default ~1500 exponential buckets
        writer.add_histogram(f"{split}/encoder_var", torch.tensor(results["per_dim_encoder_var"]), step,
                             bins=HISTOGRAM_BINS)
        if self.per_dim_histograms:
            for j, column in enumerate(collected["posterior"].mean.T):
                writer.add_histogram(f"{split}/posterior_mean/dim_{j:03d}", column, step, bins=HISTOGRAM_BINS)
        if len(split_data["x"].shape) == 4 and self.image_dims > 0:  # (N, C, H, W): image data
            by_kl = torch.tensor(results["per_dim_kl"]).argsort(descending=True)
            panels = image_panels(model, split_data, by_kl[:self.image_dims].tolist(), seed=seed)
            for name, image in panels.items():
                writer.add_image(f"{split}/{name}", image, step)
        # matplotlib figures cost seconds each (~3 s for the MCC pair): drawn once, on the final test split
        if self.latent_pca and "y" in split_data and split == "test":
            from vaelab.images import label_scatter  # matplotlib: imported only when drawing

            points = pca_2d(collected["posterior"].mean)
            writer.add_image(f"{split}/posterior_mean_pca", label_scatter(points, split_data["y"]), step)
        if "mcc" in results and self.mcc_figures and split == "test":
            from vaelab.mcc_figures import mcc_figures  # matplotlib: imported only when drawing

            z_true, z = split_data["z_true"], mcc_latents(collected["posterior"], self.mcc_sample, seed)
            figures = mcc_figures(z_true, z, abs_correlation(z_true, z, self.mcc_method),
                                  results["mcc_latent_of_source"], seed=seed)
            for name, image in figures.items():
                writer.add_image(f"{split}/{name}", image, step)
        if "y" in split_data:  # classes/groups: which dims each sample uses, rows grouped by class
            image = active_dims_image(collected, split_data["y"].long(), self.active_threshold)
            writer.add_image(f"{split}/active_dims_map", image, step, dataformats="HW")

    def _collapse(self, trainer: L.Trainer, model, split: str, split_data: dict, collected: dict,
                  seed: int) -> dict:
        """MI and IW-NLL when configured (IW-NLL on validation only with ``iw_nll_on_val``); the label probe on
        the test split only (it encodes the whole training split, as the datamodule's ``evaluation_split``
        gives it when it has one: e.g. a fixed binarization under dynamic binarization)."""
        probe_train = None
        if self.probe and split == "test" and "y" in split_data:
            datamodule = trainer.datamodule
            train = getattr(datamodule, "evaluation_split", datamodule.split)("train")
            probe_train = (posterior_means(model, train, self.eval_batch_size, seed), train["y"])
        iw_samples = self.iw_nll_samples if split == "test" or self.iw_nll_on_val else 0
        return collapse_diagnostics(model, split_data, collected["posterior"], seed, self.mi_points,
                                    self.mi_batch_size, iw_samples, self.iw_nll_points, probe_train,
                                    self.iw_nll_max_rows)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
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

    def __init__(self, dirpath: str, every_n_epochs: int = 25, every_n_seconds: float | None = 60.0,
                 on_signal: bool = True):
        if every_n_epochs < 1:
            raise ConfigError(f"callbacks.last_checkpoint.every_n_epochs={every_n_epochs} must be >= 1")
        if every_n_seconds is not None and not every_n_seconds > 0:
            raise ConfigError(f"callbacks.last_checkpoint.every_n_seconds={every_n_seconds} must be > 0 "
                              "(or null for epoch-based saves only)")
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
            raise DivergenceError(f"non-finite weights {bad[:3]} at step {trainer.global_step}; the last good "
                                  f"checkpoint {self.path} is kept", {"diverged_at_step": trainer.global_step,
                                                                      "diverged_on": "weights"})
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
        due = ((trainer.current_epoch + 1) % self.every_n_epochs == 0 or self.signal_received is not None or (
            self.every_n_seconds is not None and time.monotonic() - self._saved_at >= self.every_n_seconds))
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
        print(f"vaelab: {self.signal_received[0]} received: finishing this epoch and saving {self.path} "
              "(send it again to stop at once, without saving)", file=sys.stderr, flush=True)


class StepProgressBar(ProgressBar):
    """One bar over all training steps, refreshed every ``refresh_rate`` steps (Lightning's default bar
    redraws every epoch, which is every few steps with in-memory data)."""

    def __init__(self, refresh_rate: int = 200):
        super().__init__()
        if refresh_rate < 1:
            raise ConfigError(f"callbacks.progress_bar.refresh_rate={refresh_rate} must be >= 1; to turn the "
                              "bar off set callbacks.progress_bar=null")
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
            self._bar = tqdm(total=int(total), initial=trainer.global_step,
                             desc="training", unit="step", dynamic_ncols=True, mininterval=0.5, file=sys.stderr)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self._bar is not None and trainer.global_step - self._bar.n >= self.refresh_rate:
            self._bar.n = trainer.global_step
            shown = {k: getattr(module, "last_train_terms", {}).get(k) for k in POSTFIX}
            shown["val/loss"] = trainer.callback_metrics.get("val/loss")
            self._bar.set_postfix({k: f"{float(v):.4g}" for k, v in shown.items() if v is not None},
                                  refresh=False, epoch=trainer.current_epoch)
            self._bar.refresh()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.n = trainer.global_step
            self._bar.close()
            self._bar = None


def group_scalars(split: str, results: dict) -> dict[str, float]:
    """TensorBoard scalars of the per-class/group diagnostics: ``<split>/group_active_dims/g<i>``,
    ``<split>/group_recon_mse/g<i>`` and the gate counts of gated decoders."""
    values = {f"{split}/{key}/g{i}": float(v) for key in ("group_active_dims", "group_recon_mse",
                                                          "group_active_dims_by_gate")
              for i, v in enumerate(results.get(key, [])) if v is not None}
    if "active_dims_by_gate" in results:
        values[f"{split}/active_dims_by_gate"] = float(results["active_dims_by_gate"])
    return values


def active_dims_image(collected: dict, groups: torch.Tensor, threshold: float, per_group: int = 32,
                      scale: int = 4) -> torch.Tensor:
    """The per-sample active-dims map (metrics.active_dims_map) as an (H, W) image in [0, 1]: white where a
    sample (row; `per_group` per class, classes in order, a grey line between classes) uses a dim (column),
    each cell `scale` pixels wide and high."""
    from vaelab.metrics import active_dims_map

    prior = collected["prior"]
    cells, row_groups = active_dims_map(collected["posterior"].var, groups, threshold,
                                        None if prior is None else prior.var, per_group)
    rows = []
    for i, row in enumerate(cells):
        if i > 0 and row_groups[i] != row_groups[i - 1]:
            rows.append(torch.full_like(row, 0.5))
        rows.append(row)
    return torch.stack(rows).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
