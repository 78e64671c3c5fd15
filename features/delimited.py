"""Delimited text (CSV, TSV, Criteo), plain or compressed, parsed once into polars frames with its shape checked.

Each line-aligned chunk (`features.textio.text_chunks`) is parsed with polars, and kept in memory while the input's
parsed frames fit in IN_MEMORY_BYTES, else written as a parquet shard in a scratch directory (`Scratch`); the
schema, split, vocabulary and encode passes read those frames or shards, not text. A plain file of at most half the
budget is parsed in one polars read over all cores instead of chunk by chunk. Every line must have the header's
number of fields, and a line that does not is named in the error; lines are counted only where the parse leaves
nulls in the last column or the text holds double quotes (see `delimited_chunks`).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from featuremap.errors import InputError
from features.textio import codec_of, data_stem, text_chunks

LINE = "__line"  # the column of a line's text (`text_lines`)


INFER_ROWS = 10_000


def _lines_of(source: Path | bytes, path: Path, first_line_no: int = 1) -> pl.LazyFrame | pl.DataFrame:
    """Each line as one string column `__line`, numbered from `first_line_no`, with the file's name."""
    options = {"has_header": False, "separator": "\x1f", "quote_char": None, "new_columns": [LINE], "schema": {LINE: pl.String}}
    if isinstance(source, bytes):
        frame: pl.LazyFrame | pl.DataFrame = pl.read_csv(source, **options)
    else:
        frame = pl.scan_csv(source, **options)
    return frame.with_row_index("line_no", offset=first_line_no).with_columns(pl.lit(str(path)).alias("file"))


# Parsed text is held in memory up to this many bytes (polars' estimate) per `open_source` call (an input, a given
# split's files, a side table), and staged as parquet beyond: an input that fits skips writing and decoding the
# shards (a 2 M-row, 120 MiB CSV parses to ~160 MB).
IN_MEMORY_BYTES = 512 << 20
# A plain file is parsed in one read when this many times its size fits in what is left of the budget (parsed text
# takes up to about twice the text's bytes: an 8-character id is a 16-byte string view).
WHOLE_FILE_RATIO = 2


class Scratch:
    """Where parsed text waits for the passes that read it: memory while the input's frames fit in `memory_bytes`,
    else parquet shards in the caller's directory (a temporary one, removed at exit, when None)."""

    def __init__(self, root: Path | None, memory_bytes: int | None = None) -> None:
        self.root = root
        self.memory_left = IN_MEMORY_BYTES if memory_bytes is None else memory_bytes

    def new(self, path: Path) -> Path:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="ctr-staged-"))
            atexit.register(shutil.rmtree, self.root, True)
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{data_stem(path)}-", dir=self.root))

    def stage(self, path: Path, frames: Iterator[pl.DataFrame]) -> pl.LazyFrame:
        """`frames` (a file's chunks, parsed) as one frame: held in memory while they fit in what is left of the
        budget; from the first chunk that does not, every chunk of the file goes to parquet shards, scanned."""
        held: list[pl.DataFrame] = []
        held_bytes = 0
        shards: list[Path] = []
        target: Path | None = None
        for frame in frames:
            size = frame.estimated_size()
            if target is None and size <= self.memory_left - held_bytes:
                held.append(frame)
                held_bytes += size
                continue
            if target is None:
                target = self.new(path)
            for chunk in (*held, frame):
                shards.append(target / f"{len(shards):05d}.parquet")
                chunk.write_parquet(shards[-1], compression_level=1)  # scratch, read back soon: fast to write
            held = []
        if shards:
            return pl.scan_parquet(shards)
        self.memory_left -= held_bytes
        if not held:
            raise InputError(f"{path}: file is empty once decompressed; give data.path a file with rows")
        return pl.concat(held, rechunk=False).lazy()


def _line_chunks(path: Path, codec: str) -> Iterator[pl.DataFrame]:
    """A compressed text file's lines, chunk by chunk, as `_lines_of` gives them (line numbers run on)."""
    line_no = 1
    for chunk in text_chunks(path, codec, quoted=False):
        lines = _lines_of(chunk, path, line_no)
        line_no += lines.height
        yield lines


def text_lines(paths: list[Path], scratch: Scratch) -> pl.LazyFrame:
    """Each line of the files as one string column, with a 1-based line number per file."""
    frames = []
    for p in paths:
        codec = codec_of(p)
        frames.append(_lines_of(p, p) if codec is None else scratch.stage(p, _line_chunks(p, codec)))
    return pl.concat(frames)


def _first_bad_count(lines: pl.LazyFrame, separator: str, expected: int, quoted: bool, header: bool) -> dict | None:
    """The first line (file, line_no, n) whose column count is not `expected`, or None."""
    line = pl.col(LINE).fill_null("")
    if quoted:
        # A quoted field spanning lines makes physical lines meaningless: leave those to polars,
        # which still rejects rows with too many fields.
        if lines.filter(line.str.count_matches('"', literal=True) % 2 == 1).head(1).collect(engine="streaming").height:
            return None
        # Separators inside double-quoted fields do not split columns.
        line = line.str.replace_all(r'"[^"]*"', "")
    counts = lines.with_columns((line.str.count_matches(separator, literal=True) + 1).alias("n"))
    if header:
        counts = counts.filter(pl.col("line_no") > 1)
    blank = pl.col(LINE).fill_null("").str.strip_chars_end("\r") == ""  # no row: polars reads it as nulls, dropped after
    bad = counts.filter((pl.col("n") != expected) & ~blank).head(1).collect(engine="streaming")
    return bad.row(0, named=True) if bad.height else None


def _raise_bad_count(bad: dict | None, expected: int) -> None:
    if bad is not None:
        raise InputError(f"{bad['file']}: line {bad['line_no']} has {bad['n']} columns, expected {expected}; fix or remove that line")


def delimited_chunks(
    path: Path, codec: str | None, separator: str, expected: int, header: bool, options: dict, whole: bool = False
) -> Iterator[pl.DataFrame]:
    """A delimited file (compressed by `codec`, or plain when None) parsed chunk by chunk with polars `options`;
    a plain file in one read when `whole` (see `_parsed_whole`).

    With a header, the first chunk is read with polars' schema inference over its first rows, as
    `scan_csv` would over the whole file; every later chunk is read with that schema. A chunk without
    double quotes that parses without nulls in its last column has one line a row and no short line
    (`_short_lines`), so its text is not counted; any other chunk's lines are (`_counted`).
    """
    if whole and codec is None:
        frame = _parsed_whole(path, separator, expected, header, options)
        if frame is not None:
            yield _without_blank_lines(frame)
            return
    quoted = _quoted(options)
    line_no, schema = 1, options.get("schema")
    for i, chunk in enumerate(text_chunks(path, codec, quoted, first_lines=INFER_ROWS + 1 if header else 0)):
        with_header = header and i == 0
        error = None
        try:
            if with_header:
                frame = pl.read_csv(chunk, **options)
                schema = frame.schema
            else:
                frame = pl.read_csv(chunk, **{**options, "has_header": False, "schema": schema})
        except pl.exceptions.PolarsError as exc:
            error = exc
        if error is None and not (quoted and b'"' in chunk) and not _short_lines(frame):
            line_no += frame.height + with_header
            yield frame
            continue
        first = line_no
        lines, even = _counted(chunk, path, line_no, separator, expected, quoted, with_header)
        line_no += lines
        if error is not None:
            if even:  # the counts added up, so some line has too many fields: name it
                _checked_lines(chunk, path, first, separator, expected, quoted, with_header)
            said = str(error).splitlines()[0]
            # Types inferred from the first rows (not a format's fixed ones): a later value that does not fit them
            late = (
                "; a column typed from its first rows holds other text later: if that text means missing (NA), list it in "
                "data.null_values; if the column is ids, list the column in data.text_columns"
            )
            hint = late if "schema" not in options and "could not parse" in said else ""
            raise InputError(f"{path}: lines {first}-{line_no - 1} do not parse ({said}){hint}") from error
        yield _without_blank_lines(frame)


def _quoted(options: dict) -> bool:
    """Whether polars `options` treat double quotes as quoting (Criteo's reader turns them off)."""
    return options.get("quote_char", '"') is not None


def _without_blank_lines(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame without the all-null rows polars reads from blank lines (and from lines of empty fields alone, which
    carry no label either); only a frame with `_short_lines` can have them."""
    return frame.filter(pl.any_horizontal(pl.all().is_not_null())) if _short_lines(frame) else frame


def _short_lines(frame: pl.DataFrame) -> bool:
    """Whether some line may have had fewer fields than the header: polars rejects a line with too many fields and
    fills a short (or empty) line's missing fields with nulls, so a last column without nulls rules them out."""
    return bool(frame.width and frame[:, -1].null_count())


def _counted(chunk: bytes, path: Path, line_no: int, separator: str, expected: int, quoted: bool, header: bool) -> tuple[int, bool]:
    """The chunk's line count, after an InputError naming its first line (numbered from `line_no`) whose field count is
    not `expected`; and whether its separators merely added up (`_even_lines`: a line with too many fields may hide
    beside a short one)."""
    lines = _even_lines(chunk, separator, expected, quoted)
    if lines is not None:
        return lines, True
    return _checked_lines(chunk, path, line_no, separator, expected, quoted, header), False


def _parsed_whole(path: Path, separator: str, expected: int, header: bool, options: dict) -> pl.DataFrame | None:
    """A plain file parsed in one polars read over all cores (the schema inferred from its first INFER_ROWS rows, as
    the chunked read infers it from its first chunk), or None when polars refuses the text: the chunked read then
    names the line. With `_short_lines`, the lines are counted chunk by chunk, as the chunked read counts them."""
    try:
        frame = pl.read_csv(path, **options)
    except pl.exceptions.PolarsError:
        return None
    if _short_lines(frame):
        quoted = _quoted(options)
        line_no = 1
        for i, chunk in enumerate(text_chunks(path, None, quoted, first_lines=INFER_ROWS + 1 if header else 0)):
            line_no += _counted(chunk, path, line_no, separator, expected, quoted, header and i == 0)[0]
    return frame


def _checked_lines(chunk: bytes, path: Path, line_no: int, separator: str, expected: int, quoted: bool, header: bool) -> int:
    """The chunk's line count, after an InputError naming its first line (numbered from `line_no`) whose field count
    is not `expected`."""
    lines = _lines_of(chunk, path, line_no)
    _raise_bad_count(_first_bad_count(lines.lazy(), separator, expected, quoted, header), expected)
    return lines.height


def _even_lines(chunk: bytes, separator: str, expected: int, quoted: bool) -> int | None:
    """The chunk's line count when its separators add up to `expected` fields on every line, else None (then each
    line is checked). Equal totals are enough: polars rejects a line with too many fields, so none has too few.
    Quoted text (separators inside quotes) and one-column files always take the per-line check."""
    if expected < 2 or (quoted and b'"' in chunk):
        return None
    lines = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
    return lines if chunk.count(separator.encode()) == (expected - 1) * lines else None


def delimited_frame(
    paths: list[Path], scratch: Scratch, separator: str, expected: int, header: bool, options: dict, how: str = "vertical"
) -> pl.LazyFrame:
    """The files as one frame, each parsed once (a plain file that fits the budget in one read, any other chunk by
    chunk; column counts checked on the way) and held in memory or staged as parquet shards, which every later pass
    reads instead of the text."""
    frames = []
    for p in paths:
        whole = p.stat().st_size * WHOLE_FILE_RATIO <= scratch.memory_left  # plain text that fits, parsed: one read
        frames.append(scratch.stage(p, delimited_chunks(p, codec_of(p), separator, expected, header, options, whole)))
    if len(frames) > 1 and header:  # a header-only part (Spark writes them) would widen every column to String
        frames = [f for f in frames if f.head(1).collect().height] or frames[:1]
    return pl.concat(frames, how=how)
