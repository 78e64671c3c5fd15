"""Readers for every input format, each returning a polars LazyFrame of raw columns.

One reader per format, chosen from a registry by name. Text readers first make
one streaming pass that checks every row has the expected number of columns,
so a ragged row is reported with its line number instead of being read as
nulls or failing deep inside a later stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from common.errors import UserError
from common.featuremap import FieldKind

CRITEO_LABEL = "label"
CRITEO_NUMERIC = [f"I{i}" for i in range(1, 14)]
CRITEO_CATEGORICAL = [f"C{i}" for i in range(1, 27)]
LIBSVM_LABEL = "label"
SPLIT_NAMES = ("train", "valid", "test")
# File stems accepted for each split in a --data directory.
SPLIT_STEMS = {"train": ("train",), "valid": ("valid", "val", "validation", "dev"), "test": ("test",)}

_LINE = "__line"
_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".libsvm": "libsvm",
    ".svm": "libsvm",
    ".libfm": "libsvm",
}


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


Reader = Callable[[list[Path], SourceOptions], RawSource]


def _text_lines(paths: list[Path]) -> pl.LazyFrame:
    """Each line of the files as one string column, with a 1-based line number per file."""
    frames = [
        pl.scan_csv(
            p,
            has_header=False,
            separator="\x1f",
            quote_char=None,
            new_columns=[_LINE],
            schema={_LINE: pl.String},
        )
        .with_row_index("line_no", offset=1)
        .with_columns(pl.lit(str(p)).alias("file"))
        for p in paths
    ]
    return pl.concat(frames)


def _check_column_counts(paths: list[Path], separator: str, expected: int, quoted: bool, header: bool) -> None:
    """Raise UserError naming the first line whose column count is not `expected`."""
    line = pl.col(_LINE).fill_null("")
    if quoted:
        # A quoted field spanning lines makes physical lines meaningless: leave those files to
        # polars, which still rejects rows with too many fields.
        odd = _text_lines(paths).filter(pl.col(_LINE).fill_null("").str.count_matches('"', literal=True) % 2 == 1).head(1)
        if odd.collect(engine="streaming").height:
            return
        # Separators inside double-quoted fields do not split columns.
        line = line.str.replace_all(r'"[^"]*"', "")
    counts = _text_lines(paths).with_columns((line.str.count_matches(separator, literal=True) + 1).alias("n"))
    if header:
        counts = counts.filter(pl.col("line_no") > 1)
    bad = counts.filter(pl.col("n") != expected).head(1).collect(engine="streaming")
    if bad.height:
        row = bad.row(0, named=True)
        raise UserError(f"{row['file']}: line {row['line_no']} has {row['n']} columns, expected {expected}; fix or remove that line")


def _check_files(paths: list[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: file not found; check the --data path")
        if p.is_file() and p.stat().st_size == 0:
            raise UserError(f"{p}: file is empty; point --data at a file with rows")


def _require_rows(frame: pl.LazyFrame, paths: list[Path], what: str = "no data rows") -> None:
    if frame.head(1).collect().height == 0:
        raise UserError(f"{paths[0]}: {what}; the file needs at least one data row")


def read_criteo(paths: list[Path], opts: SourceOptions) -> RawSource:
    """Criteo TSV without header: label, I1-I13 integers, C1-C26 hashed strings; empty = missing."""
    columns = [CRITEO_LABEL, *CRITEO_NUMERIC, *CRITEO_CATEGORICAL]
    _check_column_counts(paths, "\t", len(columns), quoted=False, header=False)
    schema = {CRITEO_LABEL: pl.Int64} | {c: pl.Int64 for c in CRITEO_NUMERIC} | {c: pl.String for c in CRITEO_CATEGORICAL}
    frame = pl.concat(
        [pl.scan_csv(p, has_header=False, separator="\t", quote_char=None, new_columns=columns, schema=schema) for p in paths]
    )
    kinds: dict[str, FieldKind] = {c: "numeric" for c in CRITEO_NUMERIC} | {c: "categorical" for c in CRITEO_CATEGORICAL}
    return RawSource(frame, opts.label or CRITEO_LABEL, kinds)


def read_csv(paths: list[Path], opts: SourceOptions) -> RawSource:
    """CSV or TSV with a header row; column types inferred by polars, overridable by the schema."""
    separator = opts.separator or ("\t" if paths[0].suffix == ".tsv" else ",")
    header = pl.scan_csv(paths[0], separator=separator, n_rows=0).collect_schema().names()
    _check_column_counts(paths, separator, len(header), quoted=True, header=True)
    frame = pl.concat([pl.scan_csv(p, separator=separator, infer_schema_length=10_000) for p in paths], how="vertical_relaxed")
    _require_rows(frame, paths, "has a header but no data rows")
    return RawSource(frame, opts.label, {})


def read_libsvm(paths: list[Path], opts: SourceOptions) -> RawSource:
    """libsvm/libfm `label idx:val ...`; labels -1/1 or 0/1 (mapped to 0/1).

    With `libsvm_field_ranges` each index goes to the field whose [start, end)
    range holds it (several in one field make it multi-valued). Without, every
    row must have the same number of indices and position j is field j (the
    one-hot layout of Frappe and Criteo_x1). Values other than 1 are ignored:
    indices are categorical tokens.
    """
    tokens = _text_lines(paths).with_columns(pl.col(_LINE).str.extract_all(r"\S+").alias("tok"))
    label = pl.col("tok").list.first().cast(pl.Float64, strict=False)
    pairs = pl.col("tok").list.slice(1)
    index = pairs.list.eval(pl.element().str.split(":").list.first().cast(pl.Int64, strict=False))
    parsed = tokens.select("file", "line_no", label.alias(LIBSVM_LABEL), index.alias("idx"))
    bad_label = parsed.filter(pl.col(LIBSVM_LABEL).is_null()).head(1).collect(engine="streaming")
    if bad_label.height:
        row = bad_label.row(0, named=True)
        raise UserError(f"{row['file']}: line {row['line_no']} does not start with a numeric label")
    bad_index = parsed.filter(pl.col("idx").list.eval(pl.element().is_null()).list.any()).head(1).collect(engine="streaming")
    if bad_index.height:
        row = bad_index.row(0, named=True)
        raise UserError(f"{row['file']}: line {row['line_no']} has a token that is not idx:val")
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
            raise UserError(f"{paths[0]}: no data rows")
        ragged = parsed.filter(pl.col("idx").list.len() != width).head(1).collect(engine="streaming")
        if ragged.height:
            row = ragged.row(0, named=True)
            raise UserError(
                f"{row['file']}: line {row['line_no']} has {len(row['idx'])} indices, expected {width} like line 1; "
                "give libsvm_field_ranges in the config for variable-length rows"
            )
        frame = parsed.select(y, *[pl.col("idx").list.get(j).alias(f"f{j}") for j in range(width)])
        kinds = {f"f{j}": "categorical" for j in range(width)}
    return RawSource(frame, opts.label or LIBSVM_LABEL, kinds)


def read_parquet(paths: list[Path], opts: SourceOptions) -> RawSource:
    """Parquet: a file, several files, or a directory of `*.parquet` shards."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            shards = sorted(f for f in p.iterdir() if f.suffix in (".parquet", ".pq") and f.is_file())
            if not shards:
                raise UserError(f"{p}: directory holds no .parquet or .pq files")
            files.extend(shards)
        else:
            files.append(p)
    try:
        frame = pl.scan_parquet(files)
        frame.collect_schema()
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise UserError(f"{files[0]}: not a readable parquet file ({str(exc).splitlines()[0]})") from exc
    _require_rows(frame, files)
    return RawSource(frame, opts.label, {})


READERS: dict[str, Reader] = {
    "criteo": read_criteo,
    "csv": read_csv,
    "libsvm": read_libsvm,
    "parquet": read_parquet,
}


def detect_format(path: Path) -> str:
    """Guess the format from the extension, or from the first line of a .txt file."""
    probe = path
    if path.is_dir():
        candidates = [p for p in sorted(path.iterdir()) if p.suffix in _EXTENSIONS or p.suffix == ".txt"]
        if not candidates:
            raise UserError(f"{path}: no data files found in this directory; pass --format and a file")
        probe = candidates[0]
    if probe.suffix in _EXTENSIONS:
        return _EXTENSIONS[probe.suffix]
    if probe.suffix == ".txt" and probe.is_file():
        with probe.open() as handle:
            first = handle.readline()
        if first.count("\t") == 39:
            return "criteo"
        if ":" in first.split(" ", 2)[-1]:
            return "libsvm"
    raise UserError(f"{probe}: cannot tell the format from its name; pass --format {{{','.join(READERS)}}}")


def split_files(path: Path) -> dict[str, list[Path]] | None:
    """For a directory holding train.*, valid.* (or val/dev) and test.* files, those files by split; else None."""
    if not path.is_dir():
        return None
    found: dict[str, list[Path]] = {}
    for name in SPLIT_NAMES:
        matches = sorted(p for p in path.iterdir() if p.is_file() and p.stem in SPLIT_STEMS[name] and p.suffix != ".zip")
        if matches:
            found[name] = matches
    if "train" not in found:
        return None
    return found


def open_source(paths: list[Path], opts: SourceOptions) -> RawSource:
    """Read `paths` with the reader for `opts.format`, checking existence, emptiness and row shape."""
    if opts.format not in READERS:
        raise UserError(f"unknown format {opts.format!r}; use one of {', '.join(sorted(READERS))}")
    _check_files(paths)
    return READERS[opts.format](paths, opts)
