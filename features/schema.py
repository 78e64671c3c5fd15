"""Schema: which column is the label and whether each other column is categorical, numeric or multi-valued."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl

from common.errors import UserError
from common.featuremap import FieldKind
from features.sources import RawSource

LABEL_NAMES = ("label", "click", "clicked", "is_click", "target", "y")
SAMPLE_ROWS = 50_000
# Integer columns with at most this many distinct values in the sample are categorical.
LOW_CARDINALITY = 32
# A string column is multi-valued when at least this share of its values contain the separator.
MULTI_SHARE = 0.01
# user_id, ID, item_key, but in camelCase only userId/itemKey (so `paid`, `valid`, `hockey` are not ids).
_ID_NAME = re.compile(r"(?i:(^|_)(id|key|hash)$)|[a-z](Id|ID|Key)$")


@dataclass(frozen=True)
class SchemaOptions:
    """User overrides for schema inference."""

    label: str | None = None
    label_threshold: float | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    multi: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    time_column: str | None = None
    multi_separator: str = "|"


@dataclass(frozen=True)
class Schema:
    """The label (and how to binarise it) plus an ordered kind per feature column."""

    label: str
    kinds: dict[str, FieldKind] = field(default_factory=dict)
    label_threshold: float | None = None
    multi_separator: str = "|"

    def label_expr(self) -> pl.Expr:
        """The label as Int8 0/1 (thresholded when a threshold is set)."""
        value = pl.col(self.label).cast(pl.Float64, strict=False)
        if self.label_threshold is not None:
            return (value >= self.label_threshold).cast(pl.Int8).alias(self.label)
        return (value == 1).cast(pl.Int8).alias(self.label)


def _infer_kind(name: str, series: pl.Series, separator: str) -> FieldKind:
    dtype = series.dtype
    if isinstance(dtype, pl.List):
        return "multi"
    if dtype == pl.String:
        values = series.drop_nulls()
        if values.len() and values.str.contains(separator, literal=True).mean() >= MULTI_SHARE:
            return "multi"
        return "categorical"
    if dtype.is_float():
        return "numeric"
    if dtype.is_integer():
        if _ID_NAME.search(name) or series.n_unique() <= LOW_CARDINALITY:
            return "categorical"
        return "numeric"
    if dtype.is_temporal():
        return "numeric"
    return "categorical"


def infer_schema(source: RawSource, opts: SchemaOptions, origin: str) -> Schema:
    """Decide the label and each column's kind from overrides, the format and a sample of rows."""
    columns = source.frame.collect_schema()
    label = opts.label or source.label or next((c for c in LABEL_NAMES if c in columns), None)
    if label is None:
        raise UserError(f"{origin}: no label column found (looked for {', '.join(LABEL_NAMES)}); pass --label COLUMN")
    if label not in columns:
        raise UserError(f"{origin}: label column {label!r} not found; columns are {', '.join(columns.names())}")
    for key, names in (("categorical", opts.categorical), ("numeric", opts.numeric), ("multi", opts.multi), ("drop", opts.drop)):
        missing = [n for n in names if n not in columns]
        if missing:
            raise UserError(f"{origin}: schema.{key} names unknown column(s) {', '.join(missing)}")
    if opts.time_column and opts.time_column not in columns:
        raise UserError(f"{origin}: time column {opts.time_column!r} not found; columns are {', '.join(columns.names())}")
    overrides: dict[str, FieldKind] = {n: "categorical" for n in opts.categorical}
    overrides |= {n: "numeric" for n in opts.numeric}
    overrides |= {n: "multi" for n in opts.multi}
    excluded = {label, opts.time_column, *opts.drop}
    sample = source.frame.head(SAMPLE_ROWS).collect()
    kinds: dict[str, FieldKind] = {}
    for name in columns.names():
        if name in excluded:
            continue
        kinds[name] = overrides.get(name) or source.known_kinds.get(name) or _infer_kind(name, sample[name], opts.multi_separator)
    if not kinds:
        raise UserError(f"{origin}: no feature columns left besides the label; check schema.drop")
    return Schema(label=label, kinds=kinds, label_threshold=opts.label_threshold, multi_separator=opts.multi_separator)
