"""Test-only callbacks and data, referenced from configs as ``+callbacks.x._target_=helpers.Name``."""
import lightning as L
import torch

from vaelab.data.in_memory import InMemoryDataModule
from vaelab.data.spec import DataSpec


class InterruptAfterEpoch(L.Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) at the end of epoch index `epoch`."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt



class TinyImageData(InMemoryDataModule):
    """Stands in for an image dataset (``data._target_=helpers.TinyImageData``): 8x8 single-channel images of
    a bright square in one of 4 quadrants, x of shape (N, 1, 8, 8) in [0, 1]."""

    spec = DataSpec("tiny_images", (1, 8, 8))

    def __init__(self, n_samples: int = 512, batch_size: int = 32, eval_batch_size: int = 256,
                 shuffle_seed: int = 0, batches_per_fetch: int = 4, **synthetic_manifold_keys):
        super().__init__(batch_size, eval_batch_size, shuffle_seed, batches_per_fetch=batches_per_fetch)
        self.n_samples = n_samples

    def build(self):
        g = torch.Generator().manual_seed(0)
        quadrant = torch.randint(0, 4, (self.n_samples,), generator=g)
        x = torch.full((self.n_samples, 1, 8, 8), 0.1)
        for i, q in enumerate(quadrant.tolist()):
            x[i, 0, 4 * (q // 2):4 * (q // 2) + 4, 4 * (q % 2):4 * (q % 2) + 4] = 0.9
        cut = [int(0.8 * self.n_samples), int(0.9 * self.n_samples)]
        return {name: {"x": part} for name, part in zip(("train", "val", "test"), x.tensor_split(cut))}
