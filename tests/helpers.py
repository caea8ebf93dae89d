"""Test-only callbacks and data, referenced from configs as ``+callbacks.x._target_=helpers.Name``."""

import lightning as L
import torch

from vaelab.data.in_memory import InMemoryDataModule
from vaelab.data.spec import DataSpec


class InterruptAfterEpoch(L.Callback):
    """Sends this process SIGINT (as Ctrl-C would) at the end of epoch index `epoch`."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)


class TinyImageData(InMemoryDataModule):
    """Stands in for an image dataset (``data._target_=helpers.TinyImageData``): 8x8 single-channel images of
    a bright square in one of 4 quadrants, x of shape (N, 1, 8, 8) in [0, 1]."""

    spec = DataSpec("tiny_images", (1, 8, 8), x_range=(0.0, 1.0))

    def __init__(
        self,
        n_samples: int = 512,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        shuffle_seed: int = 0,
        batches_per_fetch: int = 4,
        **synthetic_manifold_keys,
    ):
        super().__init__(batch_size, eval_batch_size, shuffle_seed, batches_per_fetch=batches_per_fetch)
        self.n_samples = n_samples

    def build(self):
        g = torch.Generator().manual_seed(0)
        quadrant = torch.randint(0, 4, (self.n_samples,), generator=g)
        x = torch.full((self.n_samples, 1, 8, 8), 0.1)
        for i, q in enumerate(quadrant.tolist()):
            x[i, 0, 4 * (q // 2) : 4 * (q // 2) + 4, 4 * (q % 2) : 4 * (q % 2) + 4] = 0.9
        cut = [int(0.8 * self.n_samples), int(0.9 * self.n_samples)]
        return {name: {"x": part} for name, part in zip(("train", "val", "test"), x.tensor_split(cut), strict=True)}


class EnvProbe(L.Callback):
    """A callback that does nothing unless the environment asks it to (so a run and its resumed or reference
    twin have the same config): at the end of epoch VAELAB_TEST_EPOCH (for every seed, or only for data seed
    VAELAB_TEST_SEED) it touches the file VAELAB_TEST_MARKER, then VAELAB_TEST_ACTION: ``sleep`` (0.5 s per
    epoch from then on, time to kill it), ``sigint`` (sends itself SIGINT, as Ctrl-C would)."""

    def on_train_epoch_end(self, trainer, pl_module):
        import os
        import pathlib
        import signal
        import time

        epoch, action = os.environ.get("VAELAB_TEST_EPOCH"), os.environ.get("VAELAB_TEST_ACTION")
        seed = os.environ.get("VAELAB_TEST_SEED")
        if epoch is None or trainer.current_epoch < int(epoch):
            return
        if seed is not None and int(seed) != trainer.datamodule.shuffle_seed:
            return
        if trainer.current_epoch == int(epoch) and os.environ.get("VAELAB_TEST_MARKER"):
            pathlib.Path(os.environ["VAELAB_TEST_MARKER"]).touch()
        if action == "sleep":
            time.sleep(0.5)
        elif action == "sigint" and trainer.current_epoch == int(epoch):
            os.kill(os.getpid(), signal.SIGINT)


class CountStepHooks(L.Callback):
    """Counts on_before_backward / on_after_backward / on_before_optimizer_step calls (overriding them makes
    every optimizer step go through Lightning's hook dispatch); writes the counts to the trainer's run dir."""

    def __init__(self):
        self.counts = {"before_backward": 0, "after_backward": 0, "before_optimizer_step": 0}

    def on_before_backward(self, trainer, pl_module, loss):
        self.counts["before_backward"] += 1

    def on_after_backward(self, trainer, pl_module):
        self.counts["after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.counts["before_optimizer_step"] += 1

    def on_train_end(self, trainer, pl_module):
        import json
        import pathlib

        pathlib.Path(trainer.default_root_dir, "step_hooks.json").write_text(json.dumps(self.counts))
