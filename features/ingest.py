"""Ingest: raw input -> schema -> splits -> fitted encoder -> encoded (lazy) splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from featuremap.errors import InputError
from features import synthetic
from features.discovery import detect_format, split_files
from features.encode import Encoder, EncoderParams
from features.schema import ID_TEST_ALPHA, SAMPLE_ROWS, Schema, SchemaOptions, infer_schema, integer_ids
from features.sources import RawSource, SourceOptions, open_source
from features.split import SPLIT_TAG, SplitParams, carved_rows, check_fractions, source_splits, time_cuts


@dataclass(frozen=True)
class JoinSpec:
    """A side table left-joined onto the rows by a key column (e.g. MovieLens movies.csv on movieId)."""

    path: Path
    key: str
    format: str | None = None


@dataclass(frozen=True)
class IngestParams:
    """Everything ingest needs besides the data."""

    source: SourceOptions
    schema: SchemaOptions = field(default_factory=SchemaOptions)
    split: SplitParams = field(default_factory=SplitParams)
    encoder: EncoderParams = field(default_factory=EncoderParams)
    joins: tuple[JoinSpec, ...] = ()


@dataclass
class RawInput:
    """Raw frames: one per given split file, or one 'all' frame to be split."""

    frames: dict[str, RawSource]
    origin: str
    format: str

    @property
    def notes(self) -> list[str]:
        """What the readers decided on their own, one line each, without repeats."""
        return list(dict.fromkeys(note for src in self.frames.values() for note in src.notes))

    @property
    def in_parts(self) -> bool:
        """Whether every input is parquet files, which the Ray engine reads in parts (other formats ingest locally)."""
        return all(src.files for src in self.frames.values())


@dataclass
class IngestResult:
    """The fitted encoder and the encoded splits, still lazy so the caller can stream them to disk."""

    encoder: Encoder
    schema: Schema
    splits: dict[str, pl.LazyFrame]
    origin: str
    notes: list[str] = field(default_factory=list)
    holdout: dict[str, pl.LazyFrame] = field(default_factory=dict)
    """The valid and test rows as read (before joins and encoding): what another model's package can score."""
    holdout_files: dict[str, Path] = field(default_factory=dict)
    """Those of `holdout` already written by the caller's `Sink` (in the scratch directory, to be moved into place
    once the encoded splits, which read them, are written)."""


Sink = Callable[[pl.LazyFrame, "Path | pl.PartitionBy"], None]
"""Writes a lazy frame to a parquet file, or to the files of a `pl.PartitionBy`, as the caller writes its outputs."""


def load_raw(
    path: Path | list[Path] | None,
    params: IngestParams,
    synthetic_rows: int,
    synthetic_seed: int,
    scratch: Path | None = None,
    synthetic_kind: synthetic.SyntheticKind = "planted",
) -> RawInput:
    """Open the input: the synthetic default when `path` is None, split files, one file/directory, or a list of
    files/directories of one format read as one input (the daily partitions of a window), to be split.

    Compressed text is staged as parquet under `scratch` (see `open_source`), which must outlive the frames.
    """
    if path is None:
        if scratch is not None and synthetic_rows > synthetic.IN_MEMORY_ROWS:  # out of core, as any parquet input
            shards = synthetic.write_parquet_shards(scratch / "synthetic", synthetic_rows, synthetic_seed, kind=synthetic_kind)
            frame = pl.scan_parquet(shards)
        else:
            frame = synthetic.generate(synthetic_rows, synthetic_seed, synthetic_kind).lazy()
        named = "" if synthetic_kind == "planted" else f", kind={synthetic_kind}"
        return RawInput(
            {"all": RawSource(frame, synthetic.LABEL, synthetic.kinds(synthetic_kind))},
            f"synthetic(rows={synthetic_rows}, seed={synthetic_seed}{named})",
            "synthetic",
        )
    if isinstance(path, list) and len(path) > 1:
        return _several(path, params.source, scratch)
    path = path[0] if isinstance(path, list) else path
    if not path.exists():
        raise InputError(f"{path}: file not found; check data.path")
    opts = params.source
    given = split_files(path)
    if given is not None:
        fmt = opts.format or _one_format([p for files in given.values() for p in files], str(path))
        opts = SourceOptions(**{**opts.__dict__, "format": fmt})
        train = open_source(given["train"], opts, scratch)
        # The other splits read train's text columns as text (a file whose ids look like numbers would lose 0123's zero)
        holdout = replace(opts, as_train_text=text_columns(train.frame))
        sources = {name: train if name == "train" else open_source(paths, holdout, scratch) for name, paths in given.items()}
        return RawInput(sources, str(path), fmt)
    fmt = opts.format or detect_format(path)
    opts = SourceOptions(**{**opts.__dict__, "format": fmt})
    return RawInput({"all": open_source([path], opts, scratch)}, str(path), fmt)


def _several(paths: list[Path], opts: SourceOptions, scratch: Path | None) -> RawInput:
    """Several files or directories (e.g. dated partitions) read as one input, to be split; each must hold rows."""
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: file not found; check data.path")
        if split_files(p) is not None:
            raise InputError(f"{p}: holds split files (train/valid/test); a list in data.path takes plain data files only")
    fmt = opts.format or _one_format(paths, ", ".join(map(str, paths)))
    opts = SourceOptions(**{**opts.__dict__, "format": fmt})
    return RawInput({"all": open_source(paths, opts, scratch)}, ", ".join(map(str, paths)), fmt)


def _one_format(paths: list[Path], origin: str) -> str:
    """The one format of `paths` (by name or first line), or an InputError naming them when they differ: one reader
    would read the others as what they are not."""
    found = {p: detect_format(p) for p in paths}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{p.name}: {f}" for p, f in found.items())
        raise InputError(f"{origin}: files of several formats ({listed}); give every part one format")
    return found[paths[0]]


def _join(frame: pl.LazyFrame, spec: JoinSpec, multi_separator: str, scratch: Path | None = None) -> pl.LazyFrame:
    if not spec.path.exists():
        raise InputError(f"{spec.path}: side table not found; check data.joins' path")
    fmt = spec.format or detect_format(spec.path)
    left = frame.collect_schema()
    text_key = (spec.key,) if left.get(spec.key) == pl.String else ()  # a text key keeps 001's zeros on both sides
    side = open_source([spec.path], SourceOptions(format=fmt, multi_separator=multi_separator, as_train_text=text_key), scratch).frame
    right = side.collect_schema()
    for name, schema in ((str(spec.path), right), ("the data", left)):
        if spec.key not in schema:
            raise InputError(f"{name}: join key {spec.key!r} not found; columns are {', '.join(schema.names())}")
    side = side.unique(subset=[spec.key], keep="first", maintain_order=True).with_columns(pl.col(spec.key).cast(left[spec.key]))
    return frame.join(side, on=spec.key, how="left", maintain_order="left")


@dataclass(frozen=True)
class Prepared:
    """What ingest decides on the whole input before it reads all rows: the schema, the encoder's settings and the
    time split's cuts. `part_splits` splits any part of an input with them, so that parts split, counted and encoded
    apart (`pipeline.ray_engine`) give the rows, in the same order, of the whole input split at once."""

    params: IngestParams
    schema: Schema
    encoder_params: EncoderParams
    given: frozenset[str]  # the inputs: {'all'}, or the split files given
    read: tuple[str, ...]  # the columns as read, before any join: the raw holdout's
    cuts: tuple | None  # the time split's cuts on the whole input (None: a random split)
    origin: str
    notes: tuple[str, ...]

    def _joined(self, frame: pl.LazyFrame, scratch: Path | None) -> pl.LazyFrame:
        for spec in self.params.joins:
            frame = _join(frame, spec, self.params.schema.multi_separator, scratch)
        return frame

    def part_splits(self, source: str, frame: pl.LazyFrame, first_row: int = 0, scratch: Path | None = None) -> dict[str, pl.LazyFrame]:
        """The split frames of `frame`, rows of input `source` ('all', or a split file's name) from its row `first_row` on."""
        return source_splits(source, self._joined(frame, scratch), set(self.given), self.params.split, first_row, self.cuts)

    def carved(self, source: str, frame: pl.LazyFrame, scratch: Path | None = None) -> tuple[pl.LazyFrame, list[str]] | None:
        """The rows of the whole input `source` that go to splits other than train, tagged, and those splits' names
        (`features.split.carved_rows`)."""
        return carved_rows(source, self._joined(frame, scratch), set(self.given), self.params.split, self.cuts)

    def holdout(self, splits: dict[str, pl.LazyFrame]) -> dict[str, pl.LazyFrame]:
        """The valid and test rows as read (before joins and encoding): what another model's package can score."""
        return {name: frame.select(self.read) for name, frame in splits.items() if name != "train"}


def prepare(raw: RawInput, params: IngestParams, scratch: Path | None = None) -> tuple[Prepared, dict[str, pl.LazyFrame]]:
    """Check the inputs' columns, infer the schema, find the time cuts and the integer ids; with the whole input's
    split frames (lazy)."""
    frames = {name: src.frame for name, src in raw.frames.items()}
    if "train" in frames:
        expected = frames["train"].collect_schema().names()
        for name, frame in frames.items():
            missing = [c for c in expected if c not in frame.collect_schema()]
            if missing:
                raise InputError(
                    f"{raw.origin}: the {name} split lacks column(s) {', '.join(missing)} that train has; give every split the same columns"
                )
    check_fractions(params.split)
    joined = dict(frames)
    for spec in params.joins:
        joined = {name: _join(frame, spec, params.schema.multi_separator, scratch) for name, frame in joined.items()}
    first = next(iter(raw.frames.values()))
    schema_source = RawSource(joined.get("train", joined.get("all")), first.label, first.known_kinds)
    schema = infer_schema(schema_source, params.schema, raw.origin)
    if params.joins and f"{schema.label}_right" in schema.kinds:  # a side table's column named as the label: a leak
        raise InputError(
            f"{raw.origin}: a side table (data.joins) has a column named like the label {schema.label!r}, joined as "
            f"{schema.label}_right: the label itself as a feature; rename or drop it in the side table"
        )
    cuts = time_cuts(joined["all"], params.split) if "all" in joined and params.split.method == "time" else None
    read = tuple(first.frame.collect_schema().names())
    plan = Prepared(params, schema, params.encoder, frozenset(frames), read, cuts, raw.origin, ())
    splits: dict[str, pl.LazyFrame] = {}
    for name, frame in frames.items():
        splits |= plan.part_splits(name, frame, 0, scratch)
    schema, retyped = _integer_ids(schema, splits["train"], params.schema, first.known_kinds)
    encoder_params = params.encoder
    if encoder_params.numeric_bucketing == "auto":
        # Criteo's integer columns are counts: the log recipe is the field's convention.
        encoder_params = replace(encoder_params, numeric_bucketing="log" if raw.format == "criteo" else "quantile")
    mapping = schema.label_mapping()
    notes = raw.notes + ([f"{raw.origin}: {mapping}"] if mapping else [])
    listed = set(params.source.text_columns)  # read as text on purpose
    if raw.format == "csv" and (numbers := [n for n in _numbers_as_text(splits["train"], schema) if n not in listed]):
        notes.append(
            f"{raw.origin}: column(s) {', '.join(numbers)} read as ids (text) though nearly every value is a number; if "
            "the rest mean missing (NA, NULL), list them in data.null_values to read the column(s) as numbers"
        )
    if retyped:
        notes.append(
            f"{raw.origin}: integer column(s) {', '.join(retyped)} read as ids (categorical): on train rows their exact values "
            f"carry label information their order does not (p < {ID_TEST_ALPHA:g}); schema.numeric keeps a column numeric"
        )
    return replace(plan, schema=schema, encoder_params=encoder_params, notes=tuple(notes)), splits


def ingest(raw: RawInput, params: IngestParams, scratch: Path | None = None, sink: Sink | None = None) -> IngestResult:
    """Join side tables, infer the schema, split, fit the encoder on train and encode every split. With `scratch`
    and `sink`, the raw valid and test rows carved out of an input are written once, by `sink`, and read from there
    (`_staged`)."""
    plan, splits = prepare(raw, params, scratch)
    encoder = Encoder(plan.schema, plan.encoder_params).fit(splits["train"], origin=f"{raw.origin} (train split)")
    files: dict[str, Path] = {}
    if scratch is not None:
        splits, files = _staged(plan, raw, splits, scratch, sink)
    for name, frame in splits.items():
        if name != "train":
            encoder.check_labels(frame, f"{raw.origin} ({name} split)")
    encoded = {name: encoder.transform(frame) for name, frame in splits.items()}
    return IngestResult(encoder, plan.schema, encoded, raw.origin, list(plan.notes), plan.holdout(splits), files)


def _staged(
    plan: Prepared, raw: RawInput, splits: dict[str, pl.LazyFrame], scratch: Path, sink: Sink | None
) -> tuple[dict[str, pl.LazyFrame], dict[str, Path]]:
    """`splits` with the valid and test rows carved out of an input read from scratch parquet, which one pass over
    that input writes: their label check, encoded split and raw holdout then read those rows alone, where each read
    the whole input to keep a tenth of it (bench/RESULTS.md, "Out of core"). Without joins the carved rows are the
    raw holdouts (the columns as read): `sink` writes them as one file per split, which the caller moves into place
    (a 50 M-row ingest: 1.5-1.9 s less than writing the holdouts again); with joins, or no `sink`, one lz4 file tagged
    with each row's split. Also the files already in their final form, by split."""
    staged, files = dict(splits), {}
    for source, src in raw.frames.items():
        carved = plan.carved(source, src.frame, scratch)
        if carved is None:
            continue
        rows, names = carved
        if sink is not None and not plan.params.joins:
            directory = scratch / f"carved-{source}"
            directory.mkdir(parents=True, exist_ok=True)
            named = _SplitFiles(directory)
            sink(
                rows, pl.PartitionBy(directory, key=SPLIT_TAG, include_key=False, approximate_bytes_per_file=None, file_path_provider=named)
            )
            for name in names:
                files[name] = directory / f"{name}.parquet"
                if name not in named.seen:  # no rows for this split: the partitioned sink writes no file
                    sink(rows.drop(SPLIT_TAG).clear(), files[name])
                elif not files[name].is_file():
                    raise RuntimeError(f"{files[name]}: the partitioned sink wrote the {name} rows elsewhere")
                staged[name] = pl.scan_parquet(files[name])
            continue
        path = scratch / f"carved-{source}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.sink_parquet(path, compression="lz4", engine="streaming")
        for name in names:
            staged[name] = pl.scan_parquet(path).filter(pl.col(SPLIT_TAG) == name).drop(SPLIT_TAG)
    return staged, files


class _SplitFiles:
    """A partitioned sink's file names, `SPLIT.parquet` relative to its base directory (polars puts a relative name
    under the base: the base itself, when relative, would be taken twice), the splits that got a file (`seen`), and an
    error if polars starts a second file for a split (it would overwrite the first)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: set[str] = set()

    def __call__(self, args: pl.io.partition.FileProviderArgs) -> str:
        name = str(args.partition_keys[SPLIT_TAG][0])
        if name in self.seen:
            raise RuntimeError(f"{self.directory}: polars wrote the {name} rows in two files")
        self.seen.add(name)
        return f"{name}.parquet"


def text_columns(frame: pl.LazyFrame) -> tuple[str, ...]:
    """The columns `frame` reads as text."""
    return tuple(name for name, dtype in frame.collect_schema().items() if dtype == pl.String)


def read_for_scoring(path: Path, params: IngestParams, scratch: Path | None = None, as_text: tuple[str, ...] = ()) -> pl.LazyFrame:
    """New raw rows read as training read them (same format options and joins; `as_text`, the columns training read as
    text, read as text when present), not split."""
    if not path.exists():
        raise InputError(f"{path}: file not found; check data.path")
    opts = replace(params.source, format=params.source.format or detect_format(path), as_train_text=as_text)
    frame = open_source([path], opts, scratch).frame
    for spec in params.joins:
        frame = _join(frame, spec, params.schema.multi_separator, scratch)
    return frame


def _numbers_as_text(train: pl.LazyFrame, schema: Schema) -> list[str]:
    """The text columns taken as categorical whose values, on the first train rows, are numbers but for under 1 %."""
    dtypes = train.collect_schema()
    text = [n for n, k in schema.kinds.items() if k == "categorical" and dtypes[n] == pl.String]
    if not text:
        return []
    head = train.select(text).head(SAMPLE_ROWS).collect()
    shares = head.select(pl.col(n).cast(pl.Float64, strict=False).is_not_null().sum() / pl.col(n).is_not_null().sum() for n in text)
    return [n for n in text if (shares[n][0] or 0) >= 0.99 and shares[n][0] < 1]


def _integer_ids(schema: Schema, train: pl.LazyFrame, opts: SchemaOptions, known: dict[str, str]) -> tuple[Schema, list[str]]:
    """The schema with the integer columns that inference took as numeric, and that the id test finds to be ids, made
    categorical (`features.schema.integer_ids`, on train rows only); columns the config or the format typed stay."""
    dtypes = train.collect_schema()
    typed = {*opts.categorical, *opts.numeric, *opts.multi, *known}
    candidates = [n for n, k in schema.kinds.items() if k == "numeric" and n not in typed and dtypes[n].is_integer()]
    found = integer_ids(train, schema, candidates)
    if not found:
        return schema, []
    return replace(schema, kinds={n: "categorical" if n in found else k for n, k in schema.kinds.items()}), found
