"""Readers for every input format, each returning a polars LazyFrame of raw columns.

One reader per format, chosen from a registry by name. Text readers check that
every row has the expected number of columns, so a ragged row is reported with
its line number instead of being read as nulls or failing deep inside a later
stage.

Delimited text (CSV, TSV, Criteo), plain or compressed (`.gz`, `.bz2`, `.zst`,
told by magic bytes), is parsed once (`features.delimited`); libsvm lines of
plain files are still scanned as text.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from featuremap import FieldKind
from featuremap.errors import InputError
from features.delimited import INFER_ROWS, LINE, Scratch, delimited_frame, text_lines
from features.discovery import SNIFF_SEPARATORS, data_files
from features.textio import data_suffix, first_line

CRITEO_LABEL = "label"
CRITEO_NUMERIC = [f"I{i}" for i in range(1, 14)]
CRITEO_CATEGORICAL = [f"C{i}" for i in range(1, 27)]
LIBSVM_LABEL = "label"


@dataclass(frozen=True)
class SourceOptions:
    """How to read one input: format, label and format-specific settings."""

    format: str
    label: str | None = None
    separator: str | None = None
    multi_separator: str = "|"
    libsvm_field_ranges: tuple[tuple[int, int], ...] | None = None
    text_columns: tuple[str, ...] = ()  # CSV columns read as text whatever their first rows look like
    # CSV columns read as text when the file has them: those train read as text (ids such as 0123 lose their zeros when
    # a later file's rows look like numbers), for the other splits' files, side tables and the rows predict scores
    as_train_text: tuple[str, ...] = ()
    null_values: tuple[str, ...] = ()  # CSV cell texts read as missing, besides the empty cell


@dataclass
class RawSource:
    """A LazyFrame of raw columns plus what the format itself says about the schema."""

    frame: pl.LazyFrame
    label: str | None
    known_kinds: dict[str, FieldKind] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the reader decided on its own (a sniffed separator), one line each
    files: tuple[Path, ...] = ()  # parquet input: the files `frame` scans, in order (what parts of it are read from)


Reader = Callable[[list[Path], SourceOptions, Path | None], RawSource]


def _check_files(paths: list[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: file not found; check data.path")
        if not (p.is_file() or p.is_dir()):  # read twice or more (header, types, rows), a pipe or a device cannot be
            raise InputError(f"{p}: not a regular file (a pipe or a device); save the data to a file first")
        if p.is_file() and p.stat().st_size == 0:
            raise InputError(f"{p}: file is empty; give data.path a file with rows")


def _require_rows(frame: pl.LazyFrame, paths: list[Path], what: str = "no data rows") -> None:
    if frame.head(1).collect().height == 0:
        raise InputError(f"{paths[0]}: {what}; the file needs at least one data row")


def read_criteo(paths: list[Path], opts: SourceOptions, scratch: Path | None = None) -> RawSource:
    """Criteo TSV without header: label, I1-I13 integers, C1-C26 hashed strings; empty = missing."""
    columns = [CRITEO_LABEL, *CRITEO_NUMERIC, *CRITEO_CATEGORICAL]
    schema = {CRITEO_LABEL: pl.Int64} | {c: pl.Int64 for c in CRITEO_NUMERIC} | {c: pl.String for c in CRITEO_CATEGORICAL}
    options = {"has_header": False, "separator": "\t", "quote_char": None, "new_columns": columns, "schema": schema}
    frame = delimited_frame(paths, Scratch(scratch), "\t", len(columns), header=False, options=options)
    kinds: dict[str, FieldKind] = {c: "numeric" for c in CRITEO_NUMERIC} | {c: "categorical" for c in CRITEO_CATEGORICAL}
    return RawSource(frame, opts.label or CRITEO_LABEL, kinds)


def _names(header: str, separator: str, path: Path) -> list[str]:
    header = header.removeprefix("\ufeff")  # a UTF-8 byte-order mark (Excel's), which polars drops too
    if "\r" in header.rstrip("\r\n"):
        raise InputError(f"{path}: the header line holds a bare carriage return (old Mac line ends?); lines must end in \\n or \\r\\n")
    try:
        return next(csv.reader([header], delimiter=separator), [])
    except csv.Error as exc:  # e.g. a header field past csv's size limit
        raise InputError(f"{path}: the header line cannot be read as {separator!r}-separated text ({exc})") from exc


def _csv_separator(path: Path, header: str, opts: SourceOptions, notes: list[str]) -> str:
    """The separator: the configured one, else `\t` for .tsv and `,` otherwise, sniffed when that leaves one column."""
    default = "\t" if data_suffix(path) == ".tsv" else ","
    separator = opts.separator or default
    if len(_names(header, separator, path)) > 1:
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
    names = _names(headers[paths[0]], separator, paths[0])
    for p, header in headers.items():
        theirs = _names(header, separator, p)
        _check_header(p, theirs)
        if theirs != names:  # polars' own error on this blamed the first file and asked about its encoding
            differ = "the same columns in another order" if sorted(theirs) == sorted(names) else "other columns"
            raise InputError(f"{p}: its header has {differ} than {paths[0].name}'s; give every file the same header")
    options: dict = {"separator": separator, "infer_schema_length": INFER_ROWS}
    if opts.null_values:
        options["null_values"] = list(opts.null_values)
    if opts.text_columns:
        unknown = [c for c in opts.text_columns if c not in names]
        if unknown:
            raise InputError(f"{paths[0]}: data.text_columns names unknown column(s) {', '.join(unknown)}")
    text = [*opts.text_columns, *(c for c in opts.as_train_text if c in names and c not in opts.text_columns)]
    if text:
        options["schema_overrides"] = dict.fromkeys(text, pl.String)
    frame = delimited_frame(paths, Scratch(scratch), separator, len(names), header=True, options=options, how="vertical_relaxed")
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
    tokens = text_lines(paths, Scratch(scratch)).with_columns(pl.col(LINE).str.extract_all(r"\S+").alias("tok"))
    tokens = tokens.filter(pl.col("tok").list.len() > 0)  # blank lines (a file ending in two newlines) are no rows
    label = pl.col("tok").list.first().cast(pl.Float64, strict=False)
    pairs = pl.col("tok").list.slice(1)
    # `idx:val`, one colon, a value after it: `7::1` or a bare `7` is no pair (null, then the error below)
    index = pairs.list.eval(pl.element().str.extract(r"^(\d+):[^:]+$", 1).cast(pl.Int64, strict=False))
    parsed = tokens.select("file", "line_no", label.alias(LIBSVM_LABEL), index.alias("idx"))
    bad_label = parsed.filter(pl.col(LIBSVM_LABEL).is_null()).head(1).collect(engine="streaming")
    if bad_label.height:
        row = bad_label.row(0, named=True)
        raise InputError(f"{row['file']}: line {row['line_no']} does not start with a numeric label")
    bad_index = parsed.filter(pl.col("idx").list.eval(pl.element().is_null()).list.any()).head(1).collect(engine="streaming")
    if bad_index.height:
        row = bad_index.row(0, named=True)
        raise InputError(f"{row['file']}: line {row['line_no']} has a token that is not idx:val")
    # -1 is 0 (a -1/1 file); any other value stays, for the label check to judge (-2 is no binary label). A file with
    # -1, 0 and 1 holds three classes, not two: merging -1 into 0 would hide that.
    both = parsed.select((pl.col(LIBSVM_LABEL) == -1).any().alias("minus"), (pl.col(LIBSVM_LABEL) == 0).any().alias("zero"))
    if all(both.collect(engine="streaming").row(0)):
        raise InputError(f"{paths[0]}: libsvm labels hold both -1 and 0; a binary label is -1/1 or 0/1")
    y = pl.when(pl.col(LIBSVM_LABEL) == -1).then(0.0).otherwise(pl.col(LIBSVM_LABEL)).alias(LIBSVM_LABEL)
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


def _unreadable(files: list[Path]) -> Path:
    """The first of `files` whose parquet footer cannot be read (the first file when each can: polars' error was
    about something else)."""
    import pyarrow.parquet as pq

    for f in files:
        try:
            pq.read_metadata(f)
        except Exception:  # any reason it cannot be read names it
            return f
    return files[0]


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
        first = frame.collect_schema()
        if len(files) > 1:  # polars' own error on a mismatch asks for its scan options; say which file differs, and how
            for f in files[1:]:
                _same_columns(f, dict(pl.read_parquet_schema(f)), files[0], dict(first))
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise InputError(f"{_unreadable(files)}: not a readable parquet file ({str(exc).splitlines()[0]})") from exc
    _require_rows(frame, files)
    return RawSource(frame, opts.label, {}, files=tuple(files))


def _same_columns(path: Path, schema: dict, first: Path, expected: dict) -> None:
    """An error naming how `path`'s columns differ from the first file's (their order may: polars reads by name)."""
    if schema == expected:
        return
    # A column all null in one file (pandas writes its type as null) is any type: polars reads it so.
    schema = {c: expected.get(c, t) if t in (pl.Null, pl.List(pl.Null)) else t for c, t in schema.items()}
    expected = {c: schema.get(c, t) if t in (pl.Null, pl.List(pl.Null)) else t for c, t in expected.items()}
    if schema == expected:
        return
    said = [f"lacks {', '.join(c for c in expected if c not in schema)}"] if set(expected) - set(schema) else []
    said += [f"adds {', '.join(c for c in schema if c not in expected)}"] if set(schema) - set(expected) else []
    said += [f"{c} is {schema[c]} here, {expected[c]} there" for c in expected if c in schema and schema[c] != expected[c]]
    raise InputError(f"{path}: its columns differ from {first.name}'s ({'; '.join(said)}); give every file the same columns and types")


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
