"""Data files on disk: where they are, whether they are the right bytes, and how to read the standard formats.

A dataset declares its files as ``DataFile`` s (name, md5, size, canonical URLs). ``ensure_files`` finds them in
``<data_dir>/<dataset>/``, checks size and md5, and, only when asked (``data.download=true``), fetches missing
ones from their URLs into a temporary file that is renamed into place once its md5 is right, so an interrupted or
corrupt download never leaves a file behind. ``read_idx`` and ``read_text_lines`` read IDX (MNIST) and
one-item-per-line text files and refuse anything incomplete. Every problem is a ``DataError`` of one line that
names the file and the fix; nothing here returns a partial dataset.

md5 is recomputed on every load: it costs ~20 ms for the 9.9 MB MNIST training images (~0.1 s for the 26 MB
Fashion-MNIST ones), against ~0.25 s to decompress them, so no verification cache is kept.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vaelab.errors import DataError

HOW_TO_GET = (
    "set paths.data_dir (or the VAELAB_DATA_DIR environment variable) to the folder that holds "
    "'{dataset}/', or set data.download=true to fetch them"
)

# IDX type codes (the third byte of the magic number) -> big-endian numpy dtype
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"

# fetch(url) -> a readable binary stream; the default opens http(s):// and file:// URLs with urllib
Fetcher = Callable[[str], BinaryIO]


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its name inside ``<data_dir>/<dataset>/``, its md5, its size in bytes (None when
    unknown) and the URLs it can be downloaded from, tried in order."""

    name: str
    md5: str
    size: int | None = None
    urls: tuple[str, ...] = ()


def mirrored(names_md5_size: Sequence[tuple[str, str, int | None]], base_urls: Sequence[str]) -> tuple[DataFile, ...]:
    """DataFiles whose URLs are ``base_url + name`` for each base URL (a site and its mirrors)."""
    return tuple(
        DataFile(name, md5, size, tuple(base + name for base in base_urls)) for name, md5, size in names_md5_size
    )


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, spec: DataFile) -> None:
    """Raises DataError unless `path` has the declared size and md5."""
    size = path.stat().st_size
    fix = f"delete it and set data.download=true, or replace it with the original from {_first_url(spec)}"
    if spec.size is not None and size != spec.size:
        raise DataError(f"{path}: {size} bytes, expected {spec.size} (truncated or a different file); {fix}")
    digest = md5sum(path)
    if digest != spec.md5:
        raise DataError(
            f"{path}: md5 {digest} does not match the expected {spec.md5} (corrupt or a different file); {fix}"
        )


def _first_url(spec: DataFile) -> str:
    return spec.urls[0] if spec.urls else "its source"


def _urlopen(url: str) -> BinaryIO:
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310 (http, https and file URLs are all fine here)


def download_file(spec: DataFile, target: Path, fetch: Fetcher | None = None) -> None:
    """Downloads `spec` to `target` from the first of its URLs that yields the right bytes.

    Each attempt writes to a temporary file next to `target` and renames it into place only after its md5 (and
    size) match, so an interrupted download, a server error page or a corrupt copy never appears as `target`.
    """
    fetch = fetch or _urlopen
    target.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in spec.urls:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                source = fetch(url)
                try:
                    shutil.copyfileobj(source, out, 1 << 20)
                finally:
                    source.close()
            verify_file(tmp, spec)
            os.replace(tmp, target)  # atomic on one file system
            return
        except Exception as err:  # noqa: BLE001 (URLError, HTTPError, IncompleteRead, a bad copy: next URL)
            failures.append(f"{url}: {str(err).replace(str(tmp), 'download')}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(
        f"could not download {target}: "
        + "; ".join(failures or ["no URL is known"])
        + f"; download {spec.name} (md5 {spec.md5}) by hand into {target.parent}"
    )


def ensure_files(
    data_dir: str | os.PathLike,
    dataset: str,
    files: Sequence[DataFile],
    download: bool = False,
    fetch: Fetcher | None = None,
) -> dict[str, Path]:
    """The verified paths of `files` in ``<data_dir>/<dataset>/``, by file name.

    Missing files are downloaded when `download` is true (see ``download_file``); otherwise the DataError lists
    every expected path, where the files come from and the config keys that fix it. A present file with the
    wrong size or md5 is an error, never overwritten.
    """
    folder = Path(data_dir).expanduser().resolve() / dataset
    paths = {spec.name: folder / spec.name for spec in files}
    missing = [spec for spec in files if not paths[spec.name].is_file()]
    if missing and not download:
        sources = sorted({url.rsplit("/", 1)[0] + "/" for spec in missing for url in spec.urls})
        raise DataError(
            f"{dataset}: {len(missing)} of {len(files)} files missing: "
            + ", ".join(str(paths[s.name]) for s in missing)
            + f" (sources: {', '.join(sources) or 'none known'}); "
            + HOW_TO_GET.format(dataset=dataset)
        )
    for spec in files:
        if spec in missing:
            download_file(spec, paths[spec.name], fetch)
        else:
            verify_file(paths[spec.name], spec)
    return paths


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip data (detected by its magic bytes, not its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(
            f"{path}: corrupt or truncated gzip data ({type(err).__name__}: {err}); delete it and "
            "download it again (data.download=true)"
        ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (raw or gzipped) as a native-endian numpy array of the shape its header declares.

    Checks the magic number (two zero bytes, a known type code, at least one dimension) and that the payload
    is exactly as long as the dimensions say: a short or over-long file is an error, never a partial array.
    """
    path = Path(path)
    data = _read_bytes(path)
    redownload = "delete it and download it again (data.download=true)"
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES or data[3] == 0:
        raise DataError(
            f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'}, expected 0000 "
            f"then a type code in {sorted(f'{c:02x}' for c in IDX_DTYPES)} and a dimension count); "
            f"{redownload}"
        )
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: IDX header declares {ndim} dimensions but the file ends after {len(data)} bytes; {redownload}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: IDX payload is {len(data) - header} bytes but its header {list(shape)} of "
            f"{dtype.name} needs {expected}; the file is "
            f"{'truncated' if len(data) - header < expected else 'too long'}; "
            f"{redownload}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_text_lines(path: str | os.PathLike, encoding: str = "utf-8") -> list[str]:
    """The lines of a one-item-per-line text file (a sentence or document per line), without line endings.

    Only ``\\n`` (and ``\\r\\n``) end lines; lines are otherwise kept as they are (PTB lines start with a space).
    An empty file, or one with no non-blank line, is an error; so is text that is not valid `encoding`.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not valid {encoding} text (byte {err.start}: {err.reason}); check that it is the right file"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: empty text file ({len(data)} bytes, no non-blank line); replace it with the original")
    return lines
