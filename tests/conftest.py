"""Shared fixtures: the real config, composed and shrunk for seconds-long runs."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from vaelab.config import compose_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout

# An easy case that recovers AD = 2 in a few seconds on one CPU thread.
EASY = ["data.manifold_dim=2", "data.ambient_dim=10", "data.n_samples=4000", "data.batch_size=256",
        "optimizer.lr=0.01", "trainer.max_epochs=150", "torch_threads=1", "callbacks.progress_bar=null"]
# Shorter still, for checks of the run machinery rather than of the science.
SHORT = [*EASY, "trainer.max_epochs=20", "trainer.check_val_every_n_epoch=5", "callbacks.convergence.extend=false",
         "callbacks.diagnostics.every_n_epochs=5"]


@pytest.fixture(autouse=True)
def _restore_torch_and_signals():
    """Runs change global state (threads, deterministic mode, Lightning's SIGINT handler): put it back."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    sigint = signal.getsignal(signal.SIGINT)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    signal.signal(signal.SIGINT, sigint)


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(*overrides, name="run") -> the composed config with its run dir under tmp_path."""
    def make(*overrides: str, name: str = "run"):
        return compose_config(list(overrides), output_dir=tmp_path / name)
    return make


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
