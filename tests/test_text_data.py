"""Text data: tiny files written here (vocabulary, special tokens, _UNK, max length, blank lines, splits), the
length-bucketed batch order, bad input, and the real PTB / Yahoo files when the shared data is present."""

from __future__ import annotations

import pytest
import torch

from conftest import SHARED_DATA
from vaelab.data.in_memory import EpochPermutation, TensorBatchLoader
from vaelab.data.text import BOS, EOS, PAD, UNK, BucketedPermutation, TextData, lengths_of
from vaelab.errors import ConfigError, DataError

TRAIN = ["the cat sat", "", "the dog _UNK sat on the mat", "   ", "the cat"]
VALID = ["the cat", "a dog"]
TEST = ["the mat", "cat cat cat cat cat cat", "dog", "the", "sat on"]


def write_corpus(root, folder="tiny", train=TRAIN, valid=VALID, test=TEST, vocab=None):
    (root / folder).mkdir(parents=True, exist_ok=True)
    for name, lines in (("train.txt", train), ("valid.txt", valid), ("test.txt", test), ("vocab.txt", vocab)):
        if lines is not None:
            (root / folder / name).write_text("\n".join(lines) + "\n")
    return root


def tiny(root, **kwargs) -> TextData:
    args = dict(
        dataset="tiny",
        data_dir=str(root),
        train="train.txt",
        valid="valid.txt",
        test="test.txt",
        unk_tokens=["_UNK"],
        batch_size=2,
        drop_last=False,
    )
    return TextData(**(args | kwargs))


def decode(data: TextData, row: torch.Tensor) -> list[str]:
    return [data.vocab.tokens[i] for i in row.tolist()]


def test_vocabulary_from_train_special_tokens_unk_and_blank_lines(tmp_path):
    data = tiny(write_corpus(tmp_path))
    # specials first, then by count (the 4, sat 2, cat 2 -> alphabetical), _UNK is <unk>, not a word
    assert data.vocab.tokens[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert data.vocab.tokens[4:] == ["the", "cat", "sat", "dog", "mat", "on"]
    train = data.split("train")["x"]
    assert train.shape == (3, 9) and train.dtype == torch.int64  # blank lines skipped; 7 words + <s> </s>
    assert decode(data, train[1]) == ["<s>", "the", "dog", "<unk>", "sat", "on", "the", "mat", "</s>"]
    assert decode(data, train[0])[:5] == ["<s>", "the", "cat", "sat", "</s>"] and train[0, 5:].eq(PAD).all()
    assert decode(data, data.split("val")["x"][1])[:3] == ["<s>", "<unk>", "dog"]  # "a" is not in train
    facts = data.spec.ground_truth
    assert facts["blank_docs_skipped"] == {"train": 2, "val": 0, "test": 0}
    assert facts["docs"] == {"train": 3, "val": 2, "test": 5}
    assert data.spec.vocab_size == 10 == facts["vocab_size"]


def test_vocab_file_min_count_max_size_and_max_length(tmp_path):
    write_corpus(tmp_path, vocab=["mat", "_UNK", "the", "cat"])
    data = tiny(tmp_path, vocab="vocab.txt", max_length=2)
    assert data.vocab.tokens == ["<pad>", "<unk>", "<s>", "</s>", "mat", "the", "cat"]  # file order, _UNK dropped
    train = data.split("train")["x"]
    assert train.shape[1] == 4 and decode(data, train[1]) == ["<s>", "the", "<unk>", "</s>"]
    assert data.spec.ground_truth["docs_truncated"] == {"train": 2, "val": 0, "test": 1}  # > 2 words
    frequent = tiny(tmp_path, min_count=2)
    assert frequent.vocab.tokens[4:] == ["the", "cat", "sat"]
    assert tiny(tmp_path, max_vocab_size=1).vocab.tokens[4:] == ["the"]


def test_n_train_keeps_the_vocabulary_of_the_whole_training_file(tmp_path):
    data = tiny(write_corpus(tmp_path), n_train=1)
    assert len(data.split("train")["x"]) == 1 and "mat" in data.vocab.tokens


def test_valid_from_test_is_a_seeded_disjoint_split(tmp_path):
    write_corpus(tmp_path)
    data = tiny(tmp_path, valid=None, valid_from_test=0.4, note="trained on something else")
    val, test = data.split("val")["x"], data.split("test")["x"]
    assert (len(val), len(test)) == (2, 3)
    rows = lambda x: {tuple(r[r != PAD].tolist()) for r in x}  # noqa: E731
    assert rows(val).isdisjoint(rows(test)) and len(rows(val) | rows(test)) == 5
    again = tiny(tmp_path, valid=None, valid_from_test=0.4)
    assert torch.equal(again.split("val")["x"], val)
    assert data.spec.ground_truth["data_note"] == "trained on something else"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(vocab="no_such_vocab.txt"), r"data.vocab=no_such_vocab.txt: .*tiny/no_such_vocab.txt not found"),
        (dict(train="missing.txt"), r"data.train=missing.txt: .*missing.txt not found"),
    ],
)
def test_missing_files_are_data_errors_naming_the_key_and_path(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        tiny(write_corpus(tmp_path), **kwargs).setup()


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.valid_from_test=1.5"):
        tiny(tmp_path, valid_from_test=1.5)
    with pytest.raises(ConfigError, match="data.valid is null"):
        tiny(tmp_path, valid=None)
    with pytest.raises(ConfigError, match="data.max_length=0"):
        tiny(tmp_path, max_length=0)


def test_all_blank_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="empty text file"):
        tiny(write_corpus(tmp_path, valid=["", "  "])).setup()


def _pad_fraction(order: torch.Tensor, lengths: torch.Tensor, batch_size: int) -> float:
    batches = lengths[order[: len(order) // batch_size * batch_size]].view(-1, batch_size).float()
    return float(1 - batches.sum() / (batches.max(1).values.sum() * batch_size))


def test_bucketed_epochs_hold_every_document_once_with_little_padding():
    lengths = torch.randint(3, 80, (1003,), generator=torch.Generator().manual_seed(0))
    bucketed = BucketedPermutation(lengths, batch_size=32, bucket_batches=10, seed=5)
    first = bucketed.indices()
    assert sorted(first.tolist()) == list(range(1003))  # the partial batch (11 docs) comes last
    assert _pad_fraction(first, lengths, 32) < 0.1
    plain = EpochPermutation(1003, True, seed=5)
    assert _pad_fraction(plain.indices(), lengths, 32) > 0.3
    assert torch.equal(BucketedPermutation(lengths, 32, 10, seed=5).indices(), first)  # (seed, epoch) only
    bucketed.set_epoch(1)
    assert not torch.equal(bucketed.indices(), first)
    assert not torch.equal(BucketedPermutation(lengths, 32, 10, seed=6).indices(), first)


def test_training_loader_is_bucketed_and_independent_of_batches_per_fetch(tmp_path):
    lines = [" ".join(["w"] * n) for n in torch.randint(1, 30, (200,), generator=torch.Generator().manual_seed(1))]
    write_corpus(tmp_path, train=lines)

    def batches(per_fetch: int) -> list[torch.Tensor]:
        loader = tiny(tmp_path, batch_size=8, bucket_batches=5, batches_per_fetch=per_fetch).train_dataloader()
        assert isinstance(loader, TensorBatchLoader) and isinstance(loader.sampler, BucketedPermutation)
        loader.sampler.set_epoch(3)
        return [b for fetch in loader for b in fetch["x"]]

    one, stacked = batches(1), batches(4)
    assert len(one) == 25 and all(torch.equal(a, b) for a, b in zip(one, stacked, strict=True))
    spread = [int(lengths_of(b).max() - lengths_of(b).min()) for b in one]
    assert sum(spread) / len(spread) < 8  # lengths 3..31 at random would spread ~25 per batch


needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "SOURCES.md").is_file(), reason=f"the shared data folder ({SHARED_DATA}) is not present"
)


@needs_shared
def test_real_ptb_counts_match_sources():
    data = TextData(dataset="ptb", data_dir=str(SHARED_DATA))
    facts = data.spec.ground_truth
    assert facts["docs"] == {"train": 42_068, "val": 3_370, "test": 3_761}  # SOURCES.md
    assert data.spec.vocab_size == 10_002  # 10k words with <unk>; + <pad> <s> </s>
    assert int((lengths_of(data.split("train")["x"]) - 2).sum()) == 887_521  # tokens excluding EOS
    assert facts["blank_docs_skipped"] == {"train": 0, "val": 0, "test": 0}


@needs_shared
def test_real_yahoo_local_counts_vocab_and_note():
    from hydra.utils import instantiate

    from vaelab.config import compose_config

    cfg = compose_config(["data=yahoo_local", f"paths.data_dir={SHARED_DATA}"])
    data = instantiate(cfg.data)
    facts = data.spec.ground_truth
    assert facts["docs"] == {"train": 10_000, "val": 5_000, "test": 5_000}  # yahoo.valid.txt; test split 50/50
    assert data.spec.vocab_size == 20_000  # vocab.txt's 19,997 words minus _UNK, plus the 4 specials
    assert int((lengths_of(data.split("train")["x"]) - 2).sum()) == 790_680  # max length 200: nothing cut
    assert int((data.split("train")["x"] == UNK).sum()) == 33_582  # the _UNK tokens of SOURCES.md
    assert "trained on yahoo.valid.txt" in facts["data_note"]
