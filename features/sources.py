"""Readers for every input format, each returning a polars LazyFrame of raw columns.

One reader per format, chosen from a registry by name. Text readers check that
every row has the expected number of columns, so a ragged row is reported with
its line number instead of being read as nulls or failing deep inside a later
stage.

Delimited text (CSV, TSV, Criteo), plain or compressed (`.gz`, `.bz2`, `.zst`,
told by magic bytes), is parsed once, in one streaming pass: each line-aligned
chunk is checked and parsed with polars, and kept in memory while the input's
parsed frames fit in IN_MEMORY_BYTES, else written as a parquet shard in a
scratch directory; the schema, split, vocabulary and encode passes read those
frames or shards, not text (see `features.textio`). A plain file of at most half the budget is
parsed in one polars read over all cores instead of chunk by chunk. Lines are counted only where the parse
leaves nulls in the last column or the text holds double quotes (see `_delimited_chunks`).
libsvm lines of plain files are still scanned as text.
"""

from __future__ import annotations

import atexit
import csv
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from featuremap import FieldKind
from featuremap.errors import InputError
from features.discovery import SNIFF_SEPARATORS, data_files
from features.textio import codec_of, data_stem, data_suffix, first_line, text_chunks

CRITEO_LABEL = "label"
CRITEO_NUMERIC = [f"I{i}" for i in range(1, 14)]
CRITEO_CATEGORICAL = [f"C{i}" for i in range(1, 27)]
LIBSVM_LABEL = "label"

_LINE = "__line"


@dataclass(frozen=True)
class SourceOptions:
    """How to read one input: format, label and format-specific settings."""

    format: str
    label: str | None = None
    separator: str | None = None
    multi_separator: str = "|"
    libsvm_field_ranges: tuple[tuple[int, int], ...] | None = None


@dataclass
class RawSource:
    """A LazyFrame of raw columns plus what the format itself says about the schema."""

    frame: pl.LazyFrame
    label: str | None
    known_kinds: dict[str, FieldKind] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the reader decided on its own (a sniffed separator), one line each
    files: tuple[Path, ...] = ()  # parquet input: the files `frame` scans, in order (what parts of it are read from)


Reader = Callable[[list[Path], SourceOptions, Path | None], RawSource]
INFER_ROWS = 10_000


def _lines_of(source: Path | bytes, path: Path, first_line_no: int = 1) -> pl.LazyFrame | pl.DataFrame:
    """Each line as one string column `__line`, numbered from `first_line_no`, with the file's name."""
    options = {"has_header": False, "separator": "\x1f", "quote_char": None, "new_columns": [_LINE], "schema": {_LINE: pl.String}}
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


class _Scratch:
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


def _text_lines(paths: list[Path], scratch: _Scratch) -> pl.LazyFrame:
    """Each line of the files as one string column, with a 1-based line number per file."""
    frames = []
    for p in paths:
        codec = codec_of(p)
        frames.append(_lines_of(p, p) if codec is None else scratch.stage(p, _line_chunks(p, codec)))
    return pl.concat(frames)


def _first_bad_count(lines: pl.LazyFrame, separator: str, expected: int, quoted: bool, header: bool) -> dict | None:
    """The first line (file, line_no, n) whose column count is not `expected`, or None."""
    line = pl.col(_LINE).fill_null("")
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
    bad = counts.filter(pl.col("n") != expected).head(1).collect(engine="streaming")
    return bad.row(0, named=True) if bad.height else None


def _raise_bad_count(bad: dict | None, expected: int) -> None:
    if bad is not None:
        raise InputError(f"{bad['file']}: line {bad['line_no']} has {bad['n']} columns, expected {expected}; fix or remove that line")


def _delimited_chunks(
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
            yield frame
            return
    quoted = options.get("quote_char", '"') is not None
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
            raise InputError(f"{path}: lines {first}-{line_no - 1} do not parse ({str(error).splitlines()[0]})") from error
        yield frame


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
        quoted = options.get("quote_char", '"') is not None
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


def _check_files(paths: list[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: file not found; check data.path")
        if p.is_file() and p.stat().st_size == 0:
            raise InputError(f"{p}: file is empty; give data.path a file with rows")


def _require_rows(frame: pl.LazyFrame, paths: list[Path], what: str = "no data rows") -> None:
    if frame.head(1).collect().height == 0:
        raise InputError(f"{paths[0]}: {what}; the file needs at least one data row")


def _delimited(
    paths: list[Path], scratch: _Scratch, separator: str, expected: int, header: bool, options: dict, how: str = "vertical"
) -> pl.LazyFrame:
    """The files as one frame, each parsed once (a plain file that fits the budget in one read, any other chunk by
    chunk; column counts checked on the way) and held in memory or staged as parquet shards, which every later pass
    reads instead of the text."""
    frames = []
    for p in paths:
        whole = p.stat().st_size * WHOLE_FILE_RATIO <= scratch.memory_left  # plain text that fits, parsed: one read
        frames.append(scratch.stage(p, _delimited_chunks(p, codec_of(p), separator, expected, header, options, whole)))
    if len(frames) > 1 and header:  # a header-only part (Spark writes them) would widen every column to String
        frames = [f for f in frames if f.head(1).collect().height] or frames[:1]
    return pl.concat(frames, how=how)


def read_criteo(paths: list[Path], opts: SourceOptions, scratch: Path | None = None) -> RawSource:
    """Criteo TSV without header: label, I1-I13 integers, C1-C26 hashed strings; empty = missing."""
    columns = [CRITEO_LABEL, *CRITEO_NUMERIC, *CRITEO_CATEGORICAL]
    schema = {CRITEO_LABEL: pl.Int64} | {c: pl.Int64 for c in CRITEO_NUMERIC} | {c: pl.String for c in CRITEO_CATEGORICAL}
    options = {"has_header": False, "separator": "\t", "quote_char": None, "new_columns": columns, "schema": schema}
    frame = _delimited(paths, _Scratch(scratch), "\t", len(columns), header=False, options=options)
    kinds: dict[str, FieldKind] = {c: "numeric" for c in CRITEO_NUMERIC} | {c: "categorical" for c in CRITEO_CATEGORICAL}
    return RawSource(frame, opts.label or CRITEO_LABEL, kinds)


def _names(header: str, separator: str) -> list[str]:
    return next(csv.reader([header], delimiter=separator), [])


def _csv_separator(path: Path, header: str, opts: SourceOptions, notes: list[str]) -> str:
    """The separator: the configured one, else `\t` for .tsv and `,` otherwise, sniffed when that leaves one column."""
    default = "\t" if data_suffix(path) == ".tsv" else ","
    separator = opts.separator or default
    if len(_names(header, separator)) > 1:
        return separator
    likely = max((s for s in SNIFF_SEPARATORS if s != separator), key=header.count)
    if header.count(likely) == 0:
        return separator
    shown = repr(likely)
    if opts.separator is not None:
        raise InputError(
            f"{path}: the header is one column with separator {separator!r} but holds {shown}; "
            f"the file looks {shown}-separated: set data.separator to {shown}"
        )
    notes.append(f"{path}: read as {shown}-separated (the header has no {default!r}); set data.separator to override")
    return likely


def _check_header(path: Path, names: list[str]) -> None:
    """Repeated or empty column names are errors (polars would rename or keep them silently)."""
    empty = [str(i + 1) for i, n in enumerate(names) if not n.strip()]
    if empty:
        raise InputError(f"{path}: header has an empty column name at position(s) {', '.join(empty)}; name every column")
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        seen.setdefault(n, []).append(i + 1)
    repeated = {n: at for n, at in seen.items() if len(at) > 1}
    if repeated:
        shown = "; ".join(f"{n!r} at positions {', '.join(map(str, at))}" for n, at in repeated.items())
        raise InputError(f"{path}: header repeats column name(s) {shown}; give each column a unique name")


def read_csv(paths: list[Path], opts: SourceOptions, scratch: Path | None = None) -> RawSource:
    """CSV or TSV with a header row; column types inferred by polars, overridable by the schema."""
    notes: list[str] = []
    headers = {p: first_line(p) for p in paths}  # one read each (a decompressing one for a compressed file)
    separator = _csv_separator(paths[0], headers[paths[0]], opts, notes)
    names = _names(headers[paths[0]], separator)
    for p, header in headers.items():
        _check_header(p, _names(header, separator))
    options = {"separator": separator, "infer_schema_length": INFER_ROWS}
    frame = _delimited(paths, _Scratch(scratch), separator, len(names), header=True, options=options, how="vertical_relaxed")
    _require_rows(frame, paths, "has a header but no data rows")
    return RawSource(frame, opts.label, {}, notes)


def read_libsvm(paths: list[Path], opts: SourceOptions, scratch: Path | None = None) -> RawSource:
    """libsvm/libfm `label idx:val ...`; labels -1/1 or 0/1 (mapped to 0/1).

    With `libsvm_field_ranges` each index goes to the field whose [start, end)
    range holds it (several in one field make it multi-valued). Without, every
    row must have the same number of indices and position j is field j (the
    one-hot layout of Frappe and Criteo_x1). Values other than 1 are ignored:
    indices are categorical tokens.
    """
    tokens = _text_lines(paths, _Scratch(scratch)).with_columns(pl.col(_LINE).str.extract_all(r"\S+").alias("tok"))
    label = pl.col("tok").list.first().cast(pl.Float64, strict=False)
    pairs = pl.col("tok").list.slice(1)
    index = pairs.list.eval(pl.element().str.split(":").list.first().cast(pl.Int64, strict=False))
    parsed = tokens.select("file", "line_no", label.alias(LIBSVM_LABEL), index.alias("idx"))
    bad_label = parsed.filter(pl.col(LIBSVM_LABEL).is_null()).head(1).collect(engine="streaming")
    if bad_label.height:
        row = bad_label.row(0, named=True)
        raise InputError(f"{row['file']}: line {row['line_no']} does not start with a numeric label")
    bad_index = parsed.filter(pl.col("idx").list.eval(pl.element().is_null()).list.any()).head(1).collect(engine="streaming")
    if bad_index.height:
        row = bad_index.row(0, named=True)
        raise InputError(f"{row['file']}: line {row['line_no']} has a token that is not idx:val")
    y = pl.when(pl.col(LIBSVM_LABEL) < 0).then(0.0).otherwise(pl.col(LIBSVM_LABEL)).alias(LIBSVM_LABEL)
    kinds: dict[str, FieldKind] = {}
    if opts.libsvm_field_ranges:
        columns = []
        for j, (start, end) in enumerate(opts.libsvm_field_ranges):
            name = f"f{j}"
            columns.append(pl.col("idx").list.filter((pl.element() >= start) & (pl.element() < end)).alias(name))
            kinds[name] = "multi"
        frame = parsed.select(y, *columns)
    else:
        width = parsed.select(pl.col("idx").list.len().first()).collect().item()
        if width is None:
            raise InputError(f"{paths[0]}: no data rows")
        ragged = parsed.filter(pl.col("idx").list.len() != width).head(1).collect(engine="streaming")
        if ragged.height:
            row = ragged.row(0, named=True)
            raise InputError(
                f"{row['file']}: line {row['line_no']} has {len(row['idx'])} indices, expected {width} like line 1; "
                "give libsvm_field_ranges in the config for variable-length rows"
            )
        frame = parsed.select(y, *[pl.col("idx").list.get(j).alias(f"f{j}") for j in range(width)])
        kinds = {f"f{j}": "categorical" for j in range(width)}
    return RawSource(frame, opts.label or LIBSVM_LABEL, kinds)


def read_parquet(paths: list[Path], opts: SourceOptions, scratch: Path | None = None) -> RawSource:
    """Parquet: a file, several files, or a directory of `*.parquet` shards."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            shards = sorted(f for f in p.iterdir() if f.suffix in (".parquet", ".pq") and f.is_file())
            if not shards:
                raise InputError(f"{p}: directory holds no .parquet or .pq files")
            files.extend(shards)
        else:
            files.append(p)
    try:
        frame = pl.scan_parquet(files)
        frame.collect_schema()
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise InputError(f"{files[0]}: not a readable parquet file ({str(exc).splitlines()[0]})") from exc
    _require_rows(frame, files)
    return RawSource(frame, opts.label, {}, files=tuple(files))


READERS: dict[str, Reader] = {
    "criteo": read_criteo,
    "csv": read_csv,
    "libsvm": read_libsvm,
    "parquet": read_parquet,
}


def open_source(paths: list[Path], opts: SourceOptions, scratch: Path | None = None) -> RawSource:
    """Read `paths` with the reader for `opts.format`, checking existence, emptiness and row shape.

    A directory stands for its data files (parquet: its shards). Compressed text is staged as
    parquet under `scratch` (a temporary directory when None), which must outlive the frame.
    """
    if opts.format not in READERS:  # FORMATS (features.discovery) lists the same names
        raise InputError(f"unknown format {opts.format!r}; use one of {', '.join(sorted(READERS))}")
    _check_files(paths)
    if opts.format != "parquet":
        expanded = [f for p in paths for f in data_files(p, opts.format)]
        if not expanded:
            raise InputError(f"{paths[0]}: no data files found in this directory")
        paths = expanded
        _check_files(paths)
    try:
        return READERS[opts.format](paths, opts, scratch)
    except pl.exceptions.PolarsError as exc:  # e.g. text that is not UTF-8
        first = str(exc).strip().splitlines()[0]
        hint = "" if opts.format == "parquet" else "; is it UTF-8 text in that format?"
        raise InputError(f"{paths[0]}: cannot be read as {opts.format} ({first}){hint}") from exc
