"""MNIST and Fashion-MNIST from their original IDX .gz files: x float32 (N, 1, 28, 28) in [0, 1], labels y int64.

Splits: the last ``n_val`` of the 60,000 training images are the validation split, the first ones (optionally
only ``n_train`` of them) the training split, and the 10,000 test images the test split. ``binarize``:

- ``none``: grey levels / 255;
- ``threshold``: x > 0.5, the same every time;
- ``static``: one Bernoulli(x) draw per pixel from ``binarize_seed``, fixed for the run (and the same for a given
  seed whatever ``n_train``/``n_val`` are: the draw covers the whole 60k/10k files before they are split);
- ``dynamic``: training batches are a fresh Bernoulli(x) draw every time they are used (from the run's seeded
  random stream, so a seed still gives the same numbers); validation and test are the ``static`` draw, so
  they are evaluated on fixed binary images.

The training images stay uint8 in memory (grey levels, or 0/1 once binarized: 47 MB instead of 188 MB for
50k images); each training batch is scaled to float32 after it reaches its device, with the same arithmetic
as ``to_unit_float``, so the numbers are those of a float32 copy. ``split("train")`` returns such a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.files import DataFile, ensure_files, mirrored, read_idx
from vaelab.data.in_memory import InMemoryDataModule, Split
from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError, DataError

SIDE, N_CLASSES = 28, 10
BINARIZE = ("none", "threshold", "static", "dynamic")
FILE_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class ImageDataset:
    folder: str  # <data_dir>/<folder>/
    files: tuple[DataFile, ...]  # in the order of FILE_NAMES
    n_train_file: int = 60_000  # images in the training / test files
    n_test_file: int = 10_000


DATASETS = {
    "mnist": ImageDataset(
        "mnist",
        mirrored(
            list(
                zip(
                    FILE_NAMES,
                    (
                        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                        "d53e105ee54ea40749a09fcbcd1e9432",
                        "9fb629c4189551a2d022fa330f9573f3",
                        "ec29112dd5afa0611ce80d1b7f02629c",
                    ),
                    (9_912_422, 28_881, 1_648_877, 4_542),
                    strict=True,
                )
            ),
            # the https mirror first: the original site has been refusing plain downloads
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        ),
    ),
    "fashion_mnist": ImageDataset(
        "fashion-mnist",
        mirrored(
            list(
                zip(
                    FILE_NAMES,
                    (
                        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                        "25c81989df183df01b3e8a0aad5dffbe",
                        "bef4ecab320f06d8554ea6380940ec79",
                        "bb300cfdad3c16e7a12a480ee83cd310",
                    ),
                    (26_421_880, 29_515, 4_422_102, 5_148),
                    strict=True,
                )
            ),
            (
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
            ),
        ),
    ),
}


def load_idx_pair(images_path: Path, labels_path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images and (n,) labels in 0..9 from two IDX files; anything else is a DataError."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.shape != (n, SIDE, SIDE):
        raise DataError(
            f"{images_path}: IDX array {images.dtype}{list(images.shape)}, expected uint8"
            f"{[n, SIDE, SIDE]}; replace it with the original file"
        )
    if labels.dtype != np.uint8 or labels.shape != (n,):
        raise DataError(
            f"{labels_path}: IDX array {labels.dtype}{list(labels.shape)}, expected uint8[{n}]; "
            "replace it with the original file"
        )
    if labels.max() >= N_CLASSES:
        raise DataError(
            f"{labels_path}: label {labels.max()} outside 0..{N_CLASSES - 1}; replace it with the original file"
        )
    return images, labels


def to_unit_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images).unsqueeze(1).float().div_(255.0)


def to_float(x: torch.Tensor, grey: bool) -> torch.Tensor:
    """uint8 pixels -> float32: grey levels / 255 (as ``to_unit_float``), or 0/1 values as they are."""
    return x.float().div_(255.0) if grey else x.float()


def bernoulli_static(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One fixed binary draw: 1 where a uniform from `generator` falls below x (P = x)."""
    return (torch.rand(x.shape, generator=generator) < x).float()


class MNISTData(InMemoryDataModule):
    """MNIST or Fashion-MNIST (``dataset``), read from ``<data_dir>/mnist/`` or ``<data_dir>/fashion-mnist/``;
    batches carry ``x`` (B, 1, 28, 28) and ``y`` (B,), and with ``condition`` ``c`` (B, 10), the one-hot label."""

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str | None = "data",
        download: bool = False,
        n_val: int = 10_000,
        n_train: int | None = None,
        binarize: str = "none",
        binarize_seed: int = 0,
        n_samples: int | None = None,
        condition: bool = False,
        batch_size: int = 128,
        eval_batch_size: int = 4096,
        shuffle_seed: int = 0,
        drop_last: bool = True,
        batches_per_fetch: int = 16,
    ):
        super().__init__(batch_size, eval_batch_size, shuffle_seed, drop_last, batches_per_fetch)
        if dataset not in DATASETS:
            raise ConfigError(f"data.dataset={dataset!r} is not one of {sorted(DATASETS)}")
        if binarize not in BINARIZE:
            raise ConfigError(f"data.binarize={binarize!r} is not one of {list(BINARIZE)}")
        if not data_dir:
            raise ConfigError(
                "data.data_dir is empty; set paths.data_dir (or VAELAB_DATA_DIR) to the folder "
                f"holding {DATASETS[dataset].folder}/"
            )
        n_file = DATASETS[dataset].n_train_file
        if not 1 <= n_val < n_file:
            raise ConfigError(
                f"data.n_val={n_val} must be in 1..{n_file - 1} (taken from the end of the {n_file} training images)"
            )
        available = n_file - n_val
        # n_samples: the size knob debug=fast sets for every dataset; here it caps the training split too
        caps = {k: v for k, v in (("n_train", n_train), ("n_samples", n_samples)) if v is not None}
        for key, value in caps.items():
            if not 1 <= value <= available:
                raise ConfigError(
                    f"data.{key}={value} must be in 1..{available} (the {n_file} training "
                    f"images minus data.n_val={n_val})"
                )
        self.dataset, self.data_dir, self.download = dataset, str(data_dir), bool(download)
        self.n_val, self.n_train = n_val, min(caps.values(), default=available)
        self.binarize, self.binarize_seed = binarize, binarize_seed
        self.condition = bool(condition)  # batches also carry c (B, 10), the one-hot label (for CVAEs)
        self.spec = DataSpec(
            name=dataset,
            x_shape=(1, SIDE, SIDE),
            n_classes=N_CLASSES,
            condition_dim=N_CLASSES if self.condition else 0,
            x_range=(0.0, 1.0),
        )

    def files(self) -> dict[str, Path]:
        """The four verified files (downloaded first when ``download`` is set and some are missing)."""
        info = DATASETS[self.dataset]
        return ensure_files(self.data_dir, info.folder, info.files, self.download)

    def prepare_data(self) -> None:
        """Lightning calls this on one process per machine before ``setup``: downloads happen here once."""
        if self.download:
            self.files()

    def build(self) -> dict[str, Split]:
        info = DATASETS[self.dataset]
        paths = [self.files()[name] for name in FILE_NAMES]
        train_images, train_labels = load_idx_pair(paths[0], paths[1], info.n_train_file)
        test_images, test_labels = load_idx_pair(paths[2], paths[3], info.n_test_file)
        val_start = info.n_train_file - self.n_val
        rows = {"train": slice(0, self.n_train), "val": slice(val_start, None), "test": slice(None)}
        source = {
            "train": (train_images, train_labels),
            "val": (train_images, train_labels),
            "test": (test_images, test_labels),
        }
        x = {name: torch.from_numpy(source[name][0][rows[name]]).unsqueeze(1) for name in rows}  # uint8
        if self.binarize == "threshold":
            x = {name: (v > 127).to(torch.uint8) for name, v in x.items()}  # k / 255 > 0.5 exactly when k > 127
        elif self.binarize in ("static", "dynamic"):
            x = self._static_draw(x, train_images, test_images, rows)
        # val/test: float32 (evaluated as whole splits); grey levels only under "none" (else the static draw)
        x.update({name: to_float(x[name], self.binarize == "none") for name in ("val", "test")})
        splits = {
            name: {"x": x[name], "y": torch.from_numpy(source[name][1][rows[name]].astype(np.int64))} for name in rows
        }
        if self.condition:
            for split in splits.values():
                split["c"] = torch.nn.functional.one_hot(split["y"], N_CLASSES).float()
        return splits

    def _train_float(self, x: torch.Tensor) -> torch.Tensor:
        """Stored uint8 training pixels (grey levels under none/dynamic, else 0/1) -> float32 in [0, 1]."""
        return to_float(x, self.binarize in ("none", "dynamic"))

    def training_split(self) -> Split:
        """The training split as stored, x uint8 (converted per batch in ``on_after_batch_transfer``)."""
        return super().split("train")

    def split(self, name: str) -> Split:
        """The split with x float32 in [0, 1] (a float copy for the uint8-stored training split)."""
        split = super().split(name)
        return {**split, "x": self._train_float(split["x"])} if name == "train" else split

    def evaluation_split(self, name: str) -> Split:
        """The split as diagnostics see it: under ``dynamic`` the training split (e.g. for the label probe) is
        one fixed binary draw (from ``binarize_seed + 1``), like validation and test; otherwise ``split``."""
        split = self.split(name)
        if name != "train" or self.binarize != "dynamic":
            return split
        return {**split, "x": bernoulli_static(split["x"], torch.Generator().manual_seed(self.binarize_seed + 1))}

    def _static_draw(
        self, x: dict[str, torch.Tensor], train_images: np.ndarray, test_images: np.ndarray, rows: dict[str, slice]
    ) -> dict[str, torch.Tensor]:
        """Binarizes with one draw over the whole training file, then the test file, so an image's binary
        version depends on the seed only. ``dynamic`` keeps the training split in grey levels (sampled per
        batch)."""
        g = torch.Generator().manual_seed(self.binarize_seed)
        full_train = bernoulli_static(to_unit_float(train_images), g).to(torch.uint8)
        out = {
            "val": full_train[rows["val"]].clone(),
            "test": bernoulli_static(to_unit_float(test_images), g).to(torch.uint8),
        }
        out["train"] = x["train"] if self.binarize == "dynamic" else full_train[rows["train"]].clone()
        return out

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches: uint8 -> float32 in [0, 1]; under ``dynamic`` then a fresh binary draw (on the
        batch's device, from the run's seeded random stream)."""
        if batch["x"].dtype == torch.uint8:
            batch = {**batch, "x": self._train_float(batch["x"])}
        if self.binarize == "dynamic" and self.trainer is not None and self.trainer.training:
            batch = {**batch, "x": torch.bernoulli(batch["x"])}
        return batch
