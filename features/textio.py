"""Compressed text inputs: the codec of a file, its text in line-aligned chunks, its first line.

Polars scans plain text lazily but reads a compressed file whole into memory. Here a
`.gz`, `.bz2` or `.zst` file is decompressed by pyarrow's streaming codecs and cut into
chunks of about `CHUNK_BYTES` that end at a line end outside double quotes, so each
chunk parses on its own with the options the plain reader uses (`features.sources`
parses each chunk with polars and writes it as one parquet shard). Memory stays bounded
by the chunk size, whatever the file's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from featuremap.errors import InputError

# File-name suffixes of the codecs read directly (pyarrow's codec names).
CODEC_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
CHUNK_BYTES = 16 << 20
FIRST_CHUNK_MAX = 256 << 20  # the first chunk grows to hold the rows a schema is inferred from, up to this
_READ_BYTES = 8 << 20


def _magic_codec(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[3:4] != b"0":
        return "bz2"
    return None


def codec_of(path: Path) -> str | None:
    """The file's compression codec from its magic bytes (None for plain text); a codec suffix on plain data is an error."""
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        codec = _magic_codec(handle.read(4))
    named = CODEC_SUFFIXES.get(path.suffix.lower())
    if codec is None and named is not None:
        raise InputError(f"{path}: named {path.suffix} but is not {named} data; rename it or recompress it")
    return codec


def data_suffix(path: Path) -> str:
    """The suffix that names the format, under any codec suffix: `clicks.csv.gz` -> `.csv`, `day_0.gz` -> ``."""
    name = Path(path.name)
    if name.suffix.lower() in CODEC_SUFFIXES:
        name = Path(name.stem)
    return name.suffix.lower()


def data_stem(path: Path) -> str:
    """The file's name without codec and format suffixes: `train.csv.gz` -> `train`."""
    name = Path(path.name)
    if name.suffix.lower() in CODEC_SUFFIXES:
        name = Path(name.stem)
    return name.stem


def natural_key(path: Path) -> list[int | str]:
    """Sort key that puts `day_2` before `day_10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _open(path: Path, codec: str | None) -> BinaryIO:
    """The file's bytes, decompressed by pyarrow's streaming codec when `codec` is set (pyarrow is imported only then:
    plain text does without its import time)."""
    if codec is None:
        try:
            return path.open("rb")
        except OSError as exc:
            raise InputError(f"{path}: cannot open as text ({str(exc).splitlines()[0]})") from exc
    import pyarrow as pa

    try:
        return pa.input_stream(str(path), compression=codec)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot open as {codec} ({str(exc).splitlines()[0]})") from exc


def _read(stream: BinaryIO, path: Path, codec: str | None, size: int) -> bytes:
    if codec is None:
        errors: tuple[type[Exception], ...] = (OSError,)
    else:
        import pyarrow as pa  # already imported by `_open`

        errors = (OSError, pa.ArrowException)
    try:
        return stream.read(size)
    except errors as exc:
        raise InputError(f"{path}: not valid {codec or 'text'} data ({str(exc).splitlines()[0]}); the file may be truncated") from exc


def _line_cut(buf: bytes, quoted: bool, quotes: int) -> int:
    """Index of the last newline in `buf` that ends a whole record (outside double quotes), or -1.

    `quotes` is the number of double quotes in `buf` (kept by the caller, so a long quoted
    record is not recounted on every block); the scan back from the end is linear in `buf`.
    """
    cut = buf.rfind(b"\n")
    if not quoted or cut < 0:
        return cut
    before = quotes - buf.count(b'"', cut)
    while cut >= 0 and before % 2:
        previous = buf.rfind(b"\n", 0, cut)
        before -= buf.count(b'"', max(previous, 0), cut)
        cut = previous
    return cut


def _records(buf: bytes, quoted: bool) -> int:
    """How many records end in `buf`: its newlines, only those outside double quotes when `quoted`."""
    if not quoted or b'"' not in buf:
        return buf.count(b"\n")
    data = np.frombuffer(buf, dtype=np.uint8)
    # odd: inside a quoted field. A uint8 running count wraps at 256 but keeps its parity, in an eighth of the memory
    # of the default int64 (whose first touch cost seconds on a 16 MiB chunk).
    inside = np.cumsum(data == ord('"'), dtype=np.uint8) & 1
    return int(np.count_nonzero(inside[data == ord("\n")] == 0))


def text_chunks(path: Path, codec: str | None, quoted: bool, chunk_bytes: int | None = None, first_lines: int = 0) -> Iterator[bytes]:
    """The (decompressed, with `codec`) text of `path` in chunks of whole lines (whole quoted records when `quoted`).

    The first chunk holds at least `first_lines` records when the file has them (a schema is
    inferred from it), up to FIRST_CHUNK_MAX bytes. More than four chunks of text after the
    last record end is taken for an unbalanced double quote: a InputError naming the line,
    not an ever-growing buffer.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    rest, rest_quotes, done, first = b"", 0, 0, True  # done: the bytes yielded so far
    with _open(path, codec) as stream:
        while True:
            block = _read(stream, path, codec, chunk_bytes)
            if not block:
                break
            buf = rest + block if rest else block
            quotes = rest_quotes + _quotes(block, quoted)
            cut = _line_cut(buf, quoted, quotes)
            if len(buf) - (cut + 1) > 4 * chunk_bytes:
                line = _lines_in(path, codec, done) + buf.count(b"\n", 0, cut + 1) + 1
                raise InputError(
                    f"{path}: from line {line} on, {(len(buf) - cut - 1) >> 20} MiB of text hold no record end outside "
                    "double quotes; an unbalanced double quote? Fix the quoting of that line"
                )
            if first and first_lines and len(buf) < FIRST_CHUNK_MAX and _records(buf, quoted) <= first_lines:
                rest, rest_quotes = buf, quotes  # too few records yet for the first chunk: read on
                continue
            if cut < 0:
                rest, rest_quotes = buf, quotes
                continue
            yield buf[: cut + 1]
            first, done = False, done + cut + 1
            rest = buf[cut + 1 :]
            rest_quotes = _quotes(rest, quoted)
    if rest:
        yield rest


def _quotes(text: bytes, quoted: bool) -> int:
    """The double quotes in `text` (0 when quotes are not special); most text has none, which a search finds faster
    than a count."""
    return text.count(b'"') if quoted and b'"' in text else 0


def _lines_in(path: Path, codec: str | None, size: int) -> int:
    """The newlines in the first `size` bytes of the (decompressed) text: counted again only for an error message."""
    lines = 0
    with _open(path, codec) as stream:
        while size > 0:
            block = _read(stream, path, codec, min(size, _READ_BYTES))
            if not block:
                break
            lines, size = lines + block.count(b"\n"), size - len(block)
    return lines


def first_line(path: Path) -> str:
    """The file's first line of text, decompressed when it is compressed."""
    codec = codec_of(path)
    if codec is None:
        with path.open("rb") as handle:
            raw = handle.readline()
    else:
        with _open(path, codec) as stream:
            raw = b""
            while b"\n" not in raw:
                block = _read(stream, path, codec, _READ_BYTES)
                if not block:
                    break
                raw += block
            raw = raw.split(b"\n", 1)[0]
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")
