"""Data files: IDX and text readers on tiny files written here, checksums, the missing-file message, the download
fallback (through file:// URLs and fake fetchers), the MNIST datamodule on a tiny stand-in, and the real shared
data when it is present."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, read_metrics
from vaelab.data.files import DataFile, download_file, ensure_files, md5sum, read_idx, read_text_lines
from vaelab.data.mnist import DATASETS, FILE_NAMES, ImageDataset, MNISTData, to_unit_float
from vaelab.errors import ConfigError, DataError
from vaelab.train import train

SHARED = SHARED_DATA
needs_shared = pytest.mark.skipif(
    not (SHARED / "SOURCES.md").is_file(), reason=f"the shared data folder ({SHARED}) with SOURCES.md is not present"
)

IDX_CODES = {
    np.dtype("uint8"): 0x08,
    np.dtype("int8"): 0x09,
    np.dtype("int16"): 0x0B,
    np.dtype("int32"): 0x0C,
    np.dtype("float32"): 0x0D,
    np.dtype("float64"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array`: magic 00 00 <type> <ndim>, big-endian uint32 dims, big-endian payload."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([7, 0, 255], dtype=np.uint8),
        np.array([[-5, 70000], [1, 2]], dtype=np.int32),
        np.linspace(-1, 1, 6).reshape(3, 2),
    ],
)
def test_read_idx_round_trip(tmp_path, array, gz):
    path = write(tmp_path / ("a.idx.gz" if gz else "a.idx"), idx_bytes(array), gz)
    out = read_idx(path)
    assert out.shape == array.shape and out.dtype == array.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "raw.gz", idx_bytes(array))), array)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "zipped.idx", idx_bytes(array), gz=True)), array)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05",  # first bytes not 00 00
        b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05",  # unknown type code
        b"\x00\x00\x08\x00",  # zero dimensions
        b"\x00\x00",
        b"",  # shorter than a magic
        b"hello world, not idx at all",
    ],
)
def test_read_idx_wrong_magic_names_the_file(tmp_path, data):
    path = write(tmp_path / "bad-idx3-ubyte.gz", data, gz=True)
    with pytest.raises(DataError, match="not an IDX file") as err:
        read_idx(path)
    assert str(path) in one_line(err)


def test_read_idx_truncated_gzip_names_the_file(tmp_path):
    whole = gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)), mtime=0)
    for cut in (len(whole) // 2, len(whole) - 4):  # mid-stream; only the trailer (CRC, size) missing
        path = write(tmp_path / f"cut{cut}.gz", whole[:cut])
        with pytest.raises(DataError, match="corrupt or truncated gzip") as err:
            read_idx(path)
        assert str(path) in one_line(err)


def test_read_idx_corrupt_gzip_names_the_file(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)), mtime=0))
    data[len(data) // 2] ^= 0xFF
    path = write(tmp_path / "flipped.gz", bytes(data))
    with pytest.raises(DataError, match="corrupt or truncated gzip") as err:
        read_idx(path)
    assert str(path) in one_line(err)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("change, word", [(-1, "truncated"), (-50, "truncated"), (+3, "too long")])
def test_read_idx_payload_must_match_the_header(tmp_path, gz, change, word):
    data = idx_bytes(np.arange(10 * 5, dtype=np.uint8).reshape(10, 5))
    data = data[:change] if change < 0 else data + b"\x00" * change
    path = write(tmp_path / "short.idx", data, gz)
    with pytest.raises(DataError, match=word) as err:
        read_idx(path)
    assert str(path) in one_line(err) and "[10, 5]" in str(err.value)


def test_read_idx_header_cut_inside_the_dimensions(tmp_path):
    path = write(tmp_path / "hdr.idx", b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02")
    with pytest.raises(DataError, match="3 dimensions") as err:
        read_idx(path)
    assert str(path) in one_line(err)


# --------------------------------------------------------------------------------------------------------------
# read_text_lines
# --------------------------------------------------------------------------------------------------------------


def test_read_text_lines_keeps_lines_as_they_are(tmp_path):
    path = write(tmp_path / "t.txt", b" the cat <unk>\n a dog\r\n\nlast without newline")
    assert read_text_lines(path) == [" the cat <unk>", " a dog", "", "last without newline"]
    assert read_text_lines(write(tmp_path / "u.txt", "caf\u00e9 \u2028 x\n".encode())) == ["caf\u00e9 \u2028 x"]
    assert read_text_lines(write(tmp_path / "g.txt.gz", b"a\nb\n", gz=True)) == ["a", "b"]


@pytest.mark.parametrize("data", [b"", b"\n", b"\n\n  \n", b" \t"])
def test_read_text_lines_empty_file_names_the_file(tmp_path, data):
    path = write(tmp_path / "yahoo.valid.txt", data)
    with pytest.raises(DataError, match="empty text file") as err:
        read_text_lines(path)
    assert str(path) in one_line(err)


def test_read_text_lines_bad_encoding_and_missing_file(tmp_path):
    path = write(tmp_path / "latin1.txt", "caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid utf-8") as err:
        read_text_lines(path)
    assert str(path) in one_line(err)
    with pytest.raises(DataError, match="not found"):
        read_text_lines(tmp_path / "nope.txt")


# --------------------------------------------------------------------------------------------------------------
# ensure_files: checksums, the missing-file message, downloads
# --------------------------------------------------------------------------------------------------------------


def spec_for(name: str, data: bytes, urls: tuple[str, ...] = (), size: bool = True) -> DataFile:
    return DataFile(name, hashlib.md5(data).hexdigest(), len(data) if size else None, urls)


def test_ensure_files_finds_and_verifies(tmp_path):
    a, b = b"alpha" * 100, b"beta"
    write(tmp_path / "ds" / "a.bin", a)
    write(tmp_path / "ds" / "b.bin", b)
    paths = ensure_files(tmp_path, "ds", [spec_for("a.bin", a), spec_for("b.bin", b, size=False)])
    assert paths == {"a.bin": (tmp_path / "ds" / "a.bin").resolve(), "b.bin": (tmp_path / "ds" / "b.bin").resolve()}
    assert md5sum(paths["a.bin"]) == hashlib.md5(a).hexdigest()


@pytest.mark.parametrize("size", [True, False])
def test_ensure_files_md5_or_size_mismatch_names_the_file_and_is_not_overwritten(tmp_path, size):
    good, bad = b"original bytes", b"original bytez"
    path = write(tmp_path / "ds" / "f.gz", bad)
    src = write(tmp_path / "mirror" / "f.gz", good)
    spec = spec_for("f.gz", good, (src.as_uri(),), size=size)
    for download in (False, True):  # a present file is never replaced, even when downloads are allowed
        with pytest.raises(DataError, match="md5 .* does not match") as err:
            ensure_files(tmp_path, "ds", [spec], download=download)
        assert str(path.resolve()) in one_line(err) and "data.download=true" in str(err.value)
        assert path.read_bytes() == bad
    write(path, good[:5])
    with (
        pytest.raises(DataError, match=r"5 bytes, expected 14 \(truncated")
        if size
        else pytest.raises(DataError, match="md5")
    ):
        ensure_files(tmp_path, "ds", [spec])


def test_missing_files_message_lists_paths_sources_and_config_keys(tmp_path):
    present = b"here"
    write(tmp_path / "ds" / "present.gz", present)
    files = [
        spec_for("present.gz", present, ("https://example.org/d/present.gz",)),
        spec_for("gone-1.gz", b"1", ("https://example.org/d/gone-1.gz", "http://mirror.example/x/gone-1.gz")),
        spec_for("gone-2.gz", b"2", ("https://example.org/d/gone-2.gz",)),
    ]
    with pytest.raises(DataError) as err:
        ensure_files(tmp_path, "ds", files)
    message = one_line(err)
    folder = (tmp_path / "ds").resolve()
    assert message.startswith("ds: 2 of 3 files missing: ")
    assert str(folder / "gone-1.gz") in message and str(folder / "gone-2.gz") in message
    assert "present.gz" not in message
    assert "https://example.org/d/" in message and "http://mirror.example/x/" in message
    for key in ("paths.data_dir", "VAELAB_DATA_DIR", "data.download=true", "'ds/'"):
        assert key in message


def test_download_from_file_url_falls_back_to_the_next_mirror(tmp_path):
    data = b"\x00\x01payload" * 1000
    good = write(tmp_path / "mirror2" / "f.gz", data)
    wrong = write(tmp_path / "mirror1" / "f.gz", b"an error page")
    urls = ((tmp_path / "absent" / "f.gz").as_uri(), wrong.as_uri(), good.as_uri())
    paths = ensure_files(tmp_path / "data", "ds", [spec_for("f.gz", data, urls)], download=True)
    assert paths["f.gz"].read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "data" / "ds").iterdir()) == ["f.gz"]  # no .part left
    assert ensure_files(tmp_path / "data", "ds", [spec_for("f.gz", data)]) == paths  # now found, no URLs needed


class CutStream(io.RawIOBase):
    """A download that delivers `n` bytes of `data`, then fails as a dropped connection would."""

    def __init__(self, data: bytes, n: int):
        self.data, self.n, self.pos = data, n, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.pos >= self.n:
            raise ConnectionResetError("connection reset by peer")
        chunk = self.data[self.pos : min(self.n, self.pos + 7, self.pos + len(buffer))]
        buffer[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def test_interrupted_or_corrupt_download_leaves_no_file(tmp_path):
    data = bytes(range(256)) * 40
    spec = spec_for("f.gz", data, ("https://a.example/f.gz", "https://b.example/f.gz"))
    fetched = []

    def fetch(url):
        fetched.append(url)
        return CutStream(data, 5000) if "a.example" in url else io.BytesIO(data[:-1] + b"X")  # b: bad copy

    folder = tmp_path / "ds"
    with pytest.raises(DataError) as err:
        ensure_files(tmp_path, "ds", [spec], download=True, fetch=fetch)
    message = one_line(err)
    assert fetched == list(spec.urls)
    assert "connection reset" in message and "md5" in message and str(folder.resolve() / "f.gz") in message
    assert list(folder.iterdir()) == []  # neither the target nor a partial temporary file


def test_interrupt_during_download_leaves_no_file(tmp_path):
    class Interrupted(CutStream):
        def readinto(self, buffer):
            if self.pos >= self.n:
                raise KeyboardInterrupt
            return super().readinto(buffer)

    data = b"x" * 1000
    with pytest.raises(KeyboardInterrupt):
        download_file(
            spec_for("f", data, ("https://a.example/f",)), tmp_path / "f", fetch=lambda url: Interrupted(data, 500)
        )
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------------------
# MNISTData on a tiny stand-in dataset (same formats, same code path)
# --------------------------------------------------------------------------------------------------------------

TINY_TRAIN, TINY_TEST = 60, 20


def tiny_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        FILE_NAMES[0]: rng.integers(0, 256, (TINY_TRAIN, 28, 28), dtype=np.uint8),
        FILE_NAMES[1]: (np.arange(TINY_TRAIN) % 10).astype(np.uint8),
        FILE_NAMES[2]: rng.integers(0, 256, (TINY_TEST, 28, 28), dtype=np.uint8),
        FILE_NAMES[3]: (np.arange(TINY_TEST) % 10).astype(np.uint8),
    }


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """Registers dataset 'tiny' (60 train / 20 test images) with its files under tmp_path/data/tiny-mnist/;
    returns (data_dir, arrays, write_files)."""
    arrays = tiny_arrays()
    blobs = {name: gzip.compress(idx_bytes(a), mtime=0) for name, a in arrays.items()}
    folder = tmp_path / "data" / "tiny-mnist"
    files = tuple(spec_for(name, blob, ((tmp_path / "mirror" / name).as_uri(),)) for name, blob in blobs.items())
    monkeypatch.setitem(DATASETS, "tiny", ImageDataset("tiny-mnist", files, TINY_TRAIN, TINY_TEST))

    def write_files(where: Path = folder, override: dict[str, bytes] | None = None):
        for name, blob in blobs.items():
            write(where / name, (override or {}).get(name, blob))

    write_files(tmp_path / "mirror")
    return tmp_path / "data", arrays, write_files


def tiny_dm(data_dir, **kwargs) -> MNISTData:
    return MNISTData(
        **{"dataset": "tiny", "data_dir": data_dir, "n_val": 10, "batch_size": 8, "batches_per_fetch": 2, **kwargs}
    )


def test_mnist_splits_shapes_and_labels(tiny_mnist):
    data_dir, arrays, write_files = tiny_mnist
    write_files()
    dm = tiny_dm(data_dir)
    assert dm.spec.x_shape == (1, 28, 28) and dm.spec.n_classes == 10 and dm.spec.ground_truth == {}
    splits = {name: dm.split(name) for name in ("train", "val", "test")}
    train_images, test_images = arrays[FILE_NAMES[0]], arrays[FILE_NAMES[2]]
    expected = {
        "train": (train_images[:50], arrays[FILE_NAMES[1]][:50]),
        "val": (train_images[50:], arrays[FILE_NAMES[1]][50:]),
        "test": (test_images, arrays[FILE_NAMES[3]]),
    }
    for name, split in splits.items():
        assert set(split) == {"x", "y"}
        assert split["x"].dtype == torch.float32 and split["y"].dtype == torch.int64
        assert split["x"].shape == (len(expected[name][0]), 1, 28, 28)
        assert torch.equal(split["x"] * 255, torch.from_numpy(expected[name][0]).float().unsqueeze(1))
        assert torch.equal(split["y"], torch.from_numpy(expected[name][1]).long())
    assert float(splits["train"]["x"].min()) == 0 and float(splits["train"]["x"].max()) == 1
    assert torch.equal(tiny_dm(data_dir, n_train=7).split("train")["x"], splits["train"]["x"][:7])
    assert len(tiny_dm(data_dir, n_train=30, n_samples=12).split("train")["x"]) == 12  # debug=fast's knob


def float_splits(dm: MNISTData) -> dict:
    return {name: dm.split(name) for name in ("train", "val", "test")}


def test_mnist_binarize_options(tiny_mnist):
    data_dir, _, write_files = tiny_mnist
    write_files()
    grey = float_splits(tiny_dm(data_dir))
    for mode in ("threshold", "static", "dynamic"):
        splits = float_splits(tiny_dm(data_dir, binarize=mode))
        for name in ("val", "test") if mode == "dynamic" else ("train", "val", "test"):
            x = splits[name]["x"]
            assert x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}, (mode, name)
        if mode == "threshold":
            assert torch.equal(splits["test"]["x"], (grey["test"]["x"] > 0.5).float())
    assert torch.equal(float_splits(tiny_dm(data_dir, binarize="dynamic"))["train"]["x"], grey["train"]["x"])
    # static: fixed by binarize_seed, independent of n_train / n_val, ~ Bernoulli(x)
    a = float_splits(tiny_dm(data_dir, binarize="static", binarize_seed=3))
    b = float_splits(tiny_dm(data_dir, binarize="static", binarize_seed=3, n_train=5, n_val=20))
    c = float_splits(tiny_dm(data_dir, binarize="static", binarize_seed=4))
    assert torch.equal(a["train"]["x"][:5], b["train"]["x"]) and torch.equal(a["test"]["x"], b["test"]["x"])
    assert torch.equal(a["val"]["x"], b["val"]["x"][10:])
    assert not torch.equal(a["test"]["x"], c["test"]["x"])
    p, xs = grey["train"]["x"], a["train"]["x"]
    assert abs(float(xs.mean() - p.mean())) < 4 * float((p * (1 - p)).sum().sqrt() / p.numel())


@pytest.mark.parametrize("mode", ["none", "threshold", "static", "dynamic"])
def test_mnist_training_split_stays_uint8_and_batches_equal_the_float_split(tiny_mnist, mode):
    data_dir, _, write_files = tiny_mnist
    write_files()
    dm = tiny_dm(data_dir, binarize=mode)
    assert dm.training_split()["x"].dtype == torch.uint8
    loader = dm.train_dataloader()
    dm.trainer = SimpleNamespace(training=False)  # the conversion alone (no dynamic draw)
    fetch = dm.on_after_batch_transfer(next(iter(loader)), 0)
    rows = loader.sampler.indices()[: fetch["x"].shape[0] * fetch["x"].shape[1]]
    assert fetch["x"].dtype == torch.float32
    assert torch.equal(fetch["x"].flatten(0, 1), dm.split("train")["x"][rows])
    grey = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)  # the uint8 threshold is the float one
    assert torch.equal(to_unit_float(grey) > 0.5, torch.from_numpy(grey > 127).unsqueeze(1))


def test_mnist_dynamic_binarization_resamples_training_batches_only(tiny_mnist):
    data_dir, _, write_files = tiny_mnist
    write_files()
    dm = tiny_dm(data_dir, binarize="dynamic")
    batch = {"x": torch.full((2, 8, 1, 28, 28), 0.5), "y": torch.zeros(2, 8, dtype=torch.long)}
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    first, second = dm.on_after_batch_transfer(batch, 0), dm.on_after_batch_transfer(batch, 0)
    assert set(first["x"].unique().tolist()) == {0.0, 1.0} and not torch.equal(first["x"], second["x"])
    assert first["y"] is batch["y"] and torch.all(batch["x"] == 0.5)  # the stored split is untouched
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer(batch, 0)["x"] is batch["x"]
    assert tiny_dm(data_dir).on_after_batch_transfer(batch, 0) is batch


def test_mnist_missing_corrupt_and_download(tiny_mnist, tmp_path):
    data_dir, _, write_files = tiny_mnist
    with pytest.raises(DataError) as err:
        tiny_dm(data_dir).setup()
    message = one_line(err)
    assert all(str((data_dir / "tiny-mnist" / name).resolve()) in message for name in FILE_NAMES)
    assert "data.download=true" in message and "paths.data_dir" in message
    dm = tiny_dm(data_dir, download=True)
    dm.prepare_data()  # downloads (from the file:// mirror)
    assert len(dm.split("train")["x"]) == 50
    # a file whose md5 is right cannot be corrupt, so corrupt content is caught by the md5 first
    write_files(override={FILE_NAMES[1]: b"garbage"})
    with pytest.raises(DataError, match=re.escape(FILE_NAMES[1])):
        tiny_dm(data_dir).setup()


def test_mnist_content_checks_after_a_matching_md5(tiny_mnist, monkeypatch, tmp_path):
    """Declared md5s can be wrong too (a new mirror, a hand-made stand-in): contents are still checked."""
    data_dir, arrays, _ = tiny_mnist
    folder = data_dir / "tiny-mnist"
    cases = {
        "labels out of range": {FILE_NAMES[1]: np.full(TINY_TRAIN, 10, np.uint8)},
        "wrong image count": {FILE_NAMES[0]: arrays[FILE_NAMES[0]][:-1]},
        "wrong image size": {FILE_NAMES[2]: np.zeros((TINY_TEST, 28, 27), np.uint8)},
        "labels of the wrong type": {FILE_NAMES[3]: arrays[FILE_NAMES[3]].astype(np.int32)},
    }
    for case, changed in cases.items():
        blobs = {name: gzip.compress(idx_bytes(changed.get(name, a)), mtime=0) for name, a in arrays.items()}
        for name, blob in blobs.items():
            write(folder / name, blob)
        monkeypatch.setitem(
            DATASETS,
            "tiny",
            ImageDataset("tiny-mnist", tuple(spec_for(n, b) for n, b in blobs.items()), TINY_TRAIN, TINY_TEST),
        )
        with pytest.raises(DataError) as err:
            tiny_dm(data_dir).build()
        bad = next(iter(changed))
        assert str(folder.resolve() / bad) in one_line(err), case


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(dataset="cifar"), "data.dataset"),
        (dict(binarize="yes"), "data.binarize"),
        (dict(data_dir=None), "data.data_dir"),
        (dict(n_val=0), "data.n_val"),
        (dict(n_val=60), "data.n_val"),
        (dict(n_train=51), "data.n_train"),
        (dict(n_train=0), "data.n_train"),
        (dict(n_samples=100), "data.n_samples"),
    ],
)
def test_mnist_config_errors_name_the_key(tiny_mnist, kwargs, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        tiny_dm(**{"data_dir": tiny_mnist[0], **kwargs})


def test_train_with_missing_data_fails_before_training_and_is_recorded(make_cfg, tmp_path):
    cfg = make_cfg("data=fashion_mnist", f"paths.data_dir={tmp_path / 'empty'}", "callbacks.progress_bar=null")
    with pytest.raises(DataError, match="fashion-mnist: 4 of 4 files missing"):
        train(cfg)
    record = read_metrics(cfg.paths.output_dir)
    assert record["status"] == "failed" and "data.download=true" in record["error"]
    assert record.get("steps") is None


# --------------------------------------------------------------------------------------------------------------
# The real files in shared/data
# --------------------------------------------------------------------------------------------------------------


def sources_table() -> dict[str, tuple[int, str]]:
    """{'mnist/train-images-idx3-ubyte.gz': (bytes, md5), ...} from the tables of SOURCES.md."""
    table, folder = {}, None
    for line in (SHARED / "SOURCES.md").read_text().splitlines():
        heading = re.match(r"## \d+\. .*\(`([\w-]+)/`\)", line)
        if heading:
            folder = heading.group(1)
        row = re.match(r"\| ([\w.-]+\.(?:gz|txt)) \| ([\d,]+) \| ([0-9a-f]{32}) \|", line)
        if row and folder:
            table[f"{folder}/{row.group(1)}"] = (int(row.group(2).replace(",", "")), row.group(3))
    return table


@needs_shared
def test_declared_checksums_match_sources_md_and_the_shared_files():
    table = sources_table()
    assert len(table) == 14, sorted(table)
    for info in DATASETS.values():
        for spec in info.files:
            assert table[f"{info.folder}/{spec.name}"] == (spec.size, spec.md5), spec.name
    for rel, (size, md5) in table.items():  # every shared file, text ones included
        assert (SHARED / rel).stat().st_size == size and md5sum(SHARED / rel) == md5, rel
    for info in DATASETS.values():
        ensure_files(SHARED, info.folder, info.files)


@needs_shared
@pytest.mark.parametrize(
    "rel, n_lines",
    [
        ("ptb/ptb.train.txt", 42_068),
        ("ptb/ptb.valid.txt", 3_370),
        ("ptb/ptb.test.txt", 3_761),
        ("yahoo/yahoo.valid.txt", 10_000),
        ("yahoo/yahoo.test.txt", 10_000),
        ("yahoo/vocab.txt", None),
    ],
)
def test_shared_text_files_read_as_documented(rel, n_lines):
    lines = read_text_lines(SHARED / rel)
    if n_lines is not None:
        assert len(lines) == n_lines
    else:  # 19,997 distinct tokens including _UNK (SOURCES.md)
        assert len(set(lines)) == 19_997 and "_UNK" in lines


@needs_shared
@pytest.mark.parametrize("dataset, per_class", [("mnist", None), ("fashion_mnist", (6000, 1000))])
def test_real_mnist_loads(dataset, per_class):
    dm = MNISTData(dataset, str(SHARED))
    splits = {name: dm.split(name) for name in ("train", "val", "test")}
    for name, n in (("train", 50_000), ("val", 10_000), ("test", 10_000)):
        x, y = splits[name]["x"], splits[name]["y"]
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (n,) and y.dtype == torch.int64
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert set(y.unique().tolist()) == set(range(10))
    if per_class is not None:
        train_counts = torch.bincount(torch.cat([splits["train"]["y"], splits["val"]["y"]]), minlength=10)
        assert train_counts.tolist() == [per_class[0]] * 10
        assert torch.bincount(splits["test"]["y"]).tolist() == [per_class[1]] * 10
    else:  # the well-known MNIST test label counts
        assert torch.bincount(splits["test"]["y"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_shared
def test_short_training_run_on_real_mnist(make_cfg):
    cfg = make_cfg(
        "experiment=vae_mnist",
        f"paths.data_dir={SHARED}",
        "data.n_train=1024",
        "data.n_val=512",
        "data.binarize=dynamic",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "callbacks.diagnostics.every_n_epochs=1",
        "callbacks.progress_bar=null",
        "torch_threads=1",
        "callbacks.convergence.extend=false",
    )
    result = train(cfg)
    assert result["status"] == "completed" and result["data"] == "mnist" and result["steps"] == 16
    assert "true_manifold_dim" not in result
    assert 0 < result["recon_mse"] < 0.25 and result["kl"] > 0
    assert read_metrics(cfg.paths.output_dir)["status"] == "completed"
