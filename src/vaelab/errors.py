"""Errors that vaelab reports to the user as one line."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config value is invalid or incompatible; the message names the key and the fix."""


class RunExistsError(ConfigError):
    """The run directory already holds a run; vaelab never overwrites one (nothing is written to it)."""


class DataError(RuntimeError):
    """A data file is missing, corrupt or of the wrong format; the message names the file."""


class DivergenceError(RuntimeError):
    """The loss or a gradient became NaN/Inf. ``details`` goes into metrics.json (step, last finite values)."""

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.details = details or {}


class RunInterrupted(Exception):
    """SIGINT/SIGTERM stopped training at an epoch boundary after checkpoints/last.ckpt was saved."""

    def __init__(self, signal_name: str, signum: int, checkpoint: str, epoch: int, step: int):
        super().__init__(
            f"{signal_name} received: stopped after epoch {epoch} (step {step}); checkpoint saved to {checkpoint}"
        )
        self.signal_name, self.signum, self.checkpoint, self.epoch, self.step = (
            signal_name,
            signum,
            checkpoint,
            epoch,
            step,
        )
