"""In-memory datasets: every split is a dict of tensors, batches are cut by index permutation.

On CPU a per-sample DataLoader costs up to 1.4x on small models; here a batch is one ``index_select`` per
tensor and a shuffled epoch is one ``randperm`` from a generator seeded by (seed, epoch), so an epoch's order
does not depend on anything else that consumed random numbers (resumed runs see the same batches).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator

import lightning as L
import torch

from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError

Split = dict[str, torch.Tensor]
GROUND_TRUTH_KEYS = ("z_true",)  # kept for metrics, never fed to training steps


class EpochPermutation:
    """Index order of one epoch; ``set_epoch`` is called by Lightning at every epoch start."""

    def __init__(self, n: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor | None:
        """This rank's indices for the current epoch, or None for the plain order 0..n-1 on one process."""
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        per_rank = self.n // self.world_size
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return self.n // self.world_size


class TensorBatchLoader:
    """Iterable of dict batches from a dict of equally long tensors (all on CPU or all on one device).

    Plain batches have shape (batch_size, ...). With ``batches_per_fetch`` = k (training) each item holds up
    to k consecutive minibatches stacked along a new first dim, shape (k, batch_size, ...), and the training
    module takes one optimizer step per minibatch: Lightning's per-iteration overhead (~0.5 ms on CPU) is paid
    once per k steps while the sequence of minibatches and steps is the same for any k. A final partial
    minibatch (drop_last=False) comes alone, shape (1, r, ...).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        batches_per_fetch: int | None = None,
    ):
        self.split = split
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.batches_per_fetch = batches_per_fetch
        n = len(next(iter(split.values())))
        self.sampler = EpochPermutation(n, shuffle, seed, rank, world_size)
        self.batch_sampler = None  # DataLoader's attribute names: Lightning reads them (set_epoch, shuffle)

    def _fetch_sizes(self) -> list[int]:
        """Minibatches per fetch, in order."""
        n, bs, k = len(self.sampler), self.batch_size, self.batches_per_fetch or 1
        full, tail = divmod(n, bs)
        sizes = [k] * (full // k) + ([full % k] if full % k else [])
        return sizes + ([1] if tail and not self.drop_last else [])

    def __len__(self) -> int:
        """Items (fetches) per epoch."""
        return len(self._fetch_sizes())

    def num_batches(self) -> int:
        """Minibatches (optimizer steps, for training) per epoch."""
        return sum(self._fetch_sizes())

    def __iter__(self) -> Iterator[Split]:
        idx = self.sampler.indices()
        device = next(iter(self.split.values())).device
        if idx is not None and idx.device != device:
            idx = idx.to(device)  # once per epoch: the split is resident on an accelerator
        bs, start = self.batch_size, 0
        for n_batches in self._fetch_sizes():
            stop = min(start + n_batches * bs, len(self.sampler))
            if idx is None:
                fetch = {name: v[start:stop] for name, v in self.split.items()}
            else:
                rows = idx[start:stop]
                fetch = {name: v.index_select(0, rows) for name, v in self.split.items()}
            if self.batches_per_fetch is not None:
                fetch = {name: v.view(n_batches, -1, *v.shape[1:]) for name, v in fetch.items()}
            yield fetch
            start = stop


class InMemoryDataModule(L.LightningDataModule):
    """Base class: subclasses set ``spec`` and implement ``build`` returning {"train", "val", "test"} splits."""

    spec: DataSpec

    def __init__(
        self,
        batch_size: int = 1024,
        eval_batch_size: int = 4096,
        shuffle_seed: int = 0,
        drop_last: bool = True,
        batches_per_fetch: int = 16,
    ):
        super().__init__()
        for key, value in (
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("batches_per_fetch", batches_per_fetch),
        ):
            if value < 1:
                raise ConfigError(f"data.{key}={value} must be >= 1")
        self.batches_per_fetch = batches_per_fetch
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle_seed = shuffle_seed
        self.drop_last = drop_last
        self.splits: dict[str, Split] | None = None
        self._resident: tuple[torch.device, Split] | None = None  # the training split on an accelerator

    @abstractmethod
    def build(self) -> dict[str, Split]:
        """Create or load the data: {"train": {...}, "val": {...}, "test": {...}}, each a dict of tensors."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.build()

    def split(self, name: str) -> Split:
        self.setup()
        return self.splits[name]

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def training_split(self) -> Split:
        """The training tensors as stored, which the training loader cuts batches from (a subclass may store
        them compactly and convert each batch in ``on_after_batch_transfer``)."""
        return self.split("train")

    def _on_training_device(self, split: Split) -> Split:
        """On an accelerator the training tensors move to it once (and stay), so that batches are cut there
        with no host-to-device copy per step; on CPU nothing moves."""
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is None or device.type == "cpu":
            return split
        if self._resident is None or self._resident[0] != device:
            self._resident = (device, {k: v.to(device) for k, v in split.items()})
        return self._resident[1]

    def train_dataloader(self) -> TensorBatchLoader:
        rank, world = self._rank()
        train = self._on_training_device({k: v for k, v in self.training_split().items() if k not in GROUND_TRUTH_KEYS})
        n_per_rank = len(next(iter(train.values()))) // world
        if self.drop_last and n_per_rank < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} exceeds the {n_per_rank} training samples "
                "per process; lower data.batch_size or raise data.n_samples"
            )
        return TensorBatchLoader(
            train,
            self.batch_size,
            shuffle=True,
            seed=self.shuffle_seed,
            drop_last=self.drop_last,
            rank=rank,
            world_size=world,
            # DDP synchronises gradients once per forward through its wrapper
            batches_per_fetch=self.batches_per_fetch if world == 1 else 1,
        )

    def val_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.split("val"), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.split("test"), self.eval_batch_size, shuffle=False)
