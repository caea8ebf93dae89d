"""Callbacks: diagnostics on the validation split during training and on the test split at the end."""
from __future__ import annotations

import sys

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from tqdm.auto import tqdm

from vaelab.errors import ConfigError
from vaelab.evaluation import collect_posterior, diagnose
from vaelab.images import image_panels
from vaelab.metrics import check_threshold

SCALARS = ("active_dims", "active_units", "kl", "recon_mse")
POSTFIX = ("train/loss", "model/gamma")


class Diagnostics(L.Callback):
    """Every ``every_n_epochs`` epochs: active dims/units, KL, reconstruction error and per-dim encoder
    variances on the whole validation split (scalars, one scalar per dim, a histogram over dims, and a
    histogram of the posterior means of each dim); for image data also reconstructions, prior samples and
    traversals of the `image_dims` dims with the largest KL. ``run(trainer, module, "test")`` does the same on
    the test split at the end (for metrics.json)."""

    def __init__(self, every_n_epochs: int = 10, active_threshold: float = 0.1, au_threshold: float = 0.01,
                 eval_batch_size: int = 4096, per_dim_scalars: bool = True, per_dim_histograms: bool = True,
                 image_dims: int = 8):
        if every_n_epochs < 1:
            raise ConfigError(f"callbacks.diagnostics.every_n_epochs={every_n_epochs} must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.active_threshold = check_threshold("callbacks.diagnostics.active_threshold", active_threshold)
        self.au_threshold = check_threshold("callbacks.diagnostics.au_threshold", au_threshold)
        self.eval_batch_size = eval_batch_size
        self.per_dim_scalars = per_dim_scalars
        self.per_dim_histograms = per_dim_histograms
        self.image_dims = image_dims

    def run(self, trainer: L.Trainer, module: L.LightningModule, split: str) -> dict:
        """Diagnoses `split` of the trainer's datamodule, logs the scalars and returns all results."""
        model, split_data, seed = module.model, trainer.datamodule.split(split), getattr(module, "eval_seed", 0)
        collected = collect_posterior(model, split_data, self.eval_batch_size, seed)
        results = diagnose(model, split_data, self.eval_batch_size, self.active_threshold, self.au_threshold,
                           seed, collected)
        if not trainer.is_global_zero:
            return results
        step = trainer.global_step
        values = {f"{split}/{k}": float(results[k]) for k in SCALARS}
        enc_var = torch.tensor(results["per_dim_encoder_var"])
        if self.per_dim_scalars:
            values.update({f"encoder_var/dim_{j:03d}": float(v) for j, v in enumerate(enc_var)})
        for logger in trainer.loggers:  # straight to the loggers: LightningModule.log costs ~0.5 ms per key
            logger.log_metrics(values, step=step)
            if isinstance(logger, TensorBoardLogger):
                self._tensorboard(logger.experiment, model, split, split_data, collected, results, step, seed)
        return results

    def _tensorboard(self, writer, model, split: str, split_data: dict, collected: dict, results: dict,
                     step: int, seed: int) -> None:
        writer.add_histogram(f"{split}/encoder_var", torch.tensor(results["per_dim_encoder_var"]), step)
        if self.per_dim_histograms:
            for j, column in enumerate(collected["posterior"].mean.T):
                writer.add_histogram(f"{split}/posterior_mean/dim_{j:03d}", column, step)
        if len(split_data["x"].shape) == 4 and self.image_dims > 0:  # (N, C, H, W): image data
            by_kl = torch.tensor(results["per_dim_kl"]).argsort(descending=True)
            panels = image_panels(model, split_data, by_kl[:self.image_dims].tolist(), seed=seed)
            for name, image in panels.items():
                writer.add_image(f"{split}/{name}", image, step)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last:
            self.run(trainer, module, "val")


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
