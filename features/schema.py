"""Schema: which column is the label and whether each other column is categorical, numeric or multi-valued."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from featuremap import FieldKind
from featuremap.errors import InputError
from features.sources import RawSource

LABEL_NAMES = ("label", "click", "clicked", "is_click", "target", "y")
SAMPLE_ROWS = 50_000
# Integer columns with at most this many distinct values in the sample are categorical.
LOW_CARDINALITY = 32
# A string column is multi-valued when at least this share of its values contain the separator.
MULTI_SHARE = 0.01
# Label spellings read as binary without data.positive: (positive, negative), compared case-insensitively.
LABEL_PAIRS = (("1", "0"), ("true", "false"), ("yes", "no"), ("y", "n"), ("t", "f"), ("positive", "negative"), ("pos", "neg"))
# X / no_X (click / no_click, clicked / not_clicked): X is the positive.
_NEGATED = re.compile(r"(?i)^(not|non|no)(?P<sep>[_\- ]?)(?P<rest>.+)$")
# The pipeline's own derived columns: a raw column must not look like one.
RESERVED_PREFIX = "__"
RESERVED_SUFFIXES = ("__num", "__set")
# The index column pandas writes into parquet files: never a feature.
PANDAS_INDEX = "__index_level_0__"
# user_id, ID, item_key, but in camelCase only userId/itemKey (so `paid`, `valid`, `hockey` are not ids).
_ID_NAME = re.compile(r"(?i:(^|_)(id|key|hash)$)|[a-z](Id|ID|Key)$")


@dataclass(frozen=True)
class SchemaOptions:
    """User overrides for schema inference."""

    label: str | None = None
    label_threshold: float | None = None
    positive: tuple[str, ...] | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    multi: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    time_column: str | None = None
    multi_separator: str = "|"


@dataclass(frozen=True)
class Schema:
    """The label (and how to binarise it) plus an ordered kind per feature column.

    A numeric label is 1 where it equals 1 (or is at least `label_threshold`). A text or
    boolean label is 1 where its text, trimmed and lower-cased, is one of `positive` (stored
    so); `negative`, when set, lists the only other values allowed (an auto-detected pair),
    else every other value is 0.
    """

    label: str
    kinds: dict[str, FieldKind] = field(default_factory=dict)
    label_threshold: float | None = None
    multi_separator: str = "|"
    positive: tuple[str, ...] | None = None
    negative: tuple[str, ...] | None = None

    def _label_text(self) -> pl.Expr:
        return pl.col(self.label).cast(pl.String).str.strip_chars().str.to_lowercase()

    def _numbers(self, values: tuple[str, ...] | None) -> list[float] | None:
        """`values` as numbers when each is one (a numeric label's positive values): then compared as numbers, so that
        5 matches a label read as 5 in one file and 5.0 in another; None for text values."""
        try:
            return None if values is None else [float(v) for v in values]
        except ValueError:
            return None

    def label_expr(self) -> pl.Expr:
        """The label as Int8 0/1 (thresholded when a threshold is set, matched when positive values are set)."""
        if self.positive is not None and (numbers := self._numbers(self.positive)) is not None:
            return pl.col(self.label).cast(pl.Float64, strict=False).is_in(numbers).cast(pl.Int8).alias(self.label)
        if self.positive is not None:
            return self._label_text().is_in(list(self.positive)).cast(pl.Int8).alias(self.label)
        value = pl.col(self.label).cast(pl.Float64, strict=False)
        if self.label_threshold is not None:
            return (value >= self.label_threshold).cast(pl.Int8).alias(self.label)
        return (value == 1).cast(pl.Int8).alias(self.label)

    def label_bad_expr(self) -> pl.Expr:
        """True on rows whose label is missing or not one of the binary values."""
        if self.positive is not None and (numbers := self._numbers(self.positive)) is not None:
            value = pl.col(self.label).cast(pl.Float64, strict=False)
            others = self._numbers(self.negative)
            return value.is_null() if others is None else value.is_null() | ~value.is_in([*numbers, *others])
        if self.positive is not None:
            text = self._label_text()
            if self.negative is None:
                return text.is_null()
            return text.is_null() | ~text.is_in([*self.positive, *self.negative])
        raw = pl.col(self.label).cast(pl.Float64, strict=False)
        return raw.is_null() if self.label_threshold is not None else raw.is_null() | ~raw.is_in([-1.0, 0.0, 1.0])

    def label_mapping(self) -> str | None:
        """How a text label is read, in words (None for a numeric label)."""
        if self.positive is None:
            return None
        ones = ", ".join(repr(v) for v in self.positive)
        zeros = ", ".join(repr(v) for v in self.negative) if self.negative is not None else "any other value"
        return f"label {self.label!r} (any case): {ones} -> 1, {zeros} -> 0"


def _binary_pair(values: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(positive, negative) spellings when the distinct label texts are a known binary pair, else None."""
    keys = {v.strip().lower() for v in values}
    if len(keys) != 2:
        return None
    for yes, no in LABEL_PAIRS:
        if keys == {yes, no}:
            return (yes,), (no,)
    a, b = sorted(keys)
    for yes, no in ((a, b), (b, a)):
        negated = _NEGATED.match(no)
        if negated and negated["rest"] == yes and (negated["sep"] or len(yes) >= 4):  # no_ok, noclick; not "note" / "te"
            return (yes,), (no,)
    return None


def _text_label(
    source: RawSource, label: str, dtype: pl.DataType, opts: SchemaOptions, origin: str
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The (positive, negative) values for a text or boolean label; (None, None) for a numeric one."""
    if opts.positive is not None:
        if opts.label_threshold is not None:
            raise InputError(f"{origin}: set either data.positive or data.label_threshold, not both")
        if dtype.is_numeric():  # compared as numbers (`Schema.label_expr`): 5 in an integer file, 5.0 in a float one
            try:
                numbers = [float(v) for v in opts.positive]
            except ValueError:
                raise InputError(
                    f"{origin}: label column {label!r} is numeric; data.positive {list(opts.positive)} matches none of its values"
                ) from None
            return tuple(str(n) for n in numbers), None
        return tuple(str(v).strip().lower() for v in opts.positive), None
    if dtype == pl.Boolean:
        return ("true",), ("false",)
    if dtype not in (pl.String, pl.Categorical) or opts.label_threshold is not None:
        return None, None
    values = source.frame.select(pl.col(label).cast(pl.String).drop_nulls().unique().head(4)).collect(engine="streaming")
    found = sorted(values.to_series().to_list())
    pair = _binary_pair(found)
    if pair is None:
        shown = ", ".join(repr(v) for v in found[:3]) + (", ..." if len(found) > 3 else "")
        raise InputError(
            f"{origin}: label column {label!r} holds text ({shown}) that is not a known binary pair; "
            "set data.positive to the value(s) that mean a click"
        )
    return pair


def _infer_kind(name: str, series: pl.Series, separator: str) -> FieldKind:
    dtype = series.dtype
    if isinstance(dtype, pl.List):
        return "multi"
    if dtype == pl.String:
        values = series.drop_nulls()
        if values.len() and values.str.contains(separator, literal=True).mean() >= MULTI_SHARE:
            return "multi"
        return "categorical"
    if dtype.is_float() or (dtype.is_decimal() and dtype.scale):  # a price as Decimal(10, 2) is a quantity
        return "numeric"
    if dtype.is_integer() or dtype.is_decimal():  # Decimal(38, 0): a database's integer (Snowflake, Oracle)
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
        raise InputError(f"{origin}: no label column found (looked for {', '.join(LABEL_NAMES)}); set data.label to the label column")
    if label not in columns:
        raise InputError(f"{origin}: label column {label!r} not found; columns are {', '.join(columns.names())}")
    listed: dict[str, str] = {}
    for key, names in (("categorical", opts.categorical), ("numeric", opts.numeric), ("multi", opts.multi), ("drop", opts.drop)):
        missing = [n for n in names if n not in columns]
        if missing:
            raise InputError(f"{origin}: schema.{key} names unknown column(s) {', '.join(missing)}")
        if label in names:  # it was ignored there, silently
            raise InputError(f"{origin}: schema.{key} names the label column {label!r}; the label is never a feature")
        for name in names:  # one kind per column (a later list won, silently)
            if name in listed:
                raise InputError(f"{origin}: column {name!r} is in both schema.{listed[name]} and schema.{key}; give it one")
            listed[name] = key
    if any(not c.strip() for c in columns.names()):  # a text header says so where it is read; parquet can hold one too
        raise InputError(f"{origin}: a column has an empty name; name every column")
    kept = [c for c in columns.names() if c not in (*opts.drop, PANDAS_INDEX)]
    reserved = [c for c in kept if c.startswith(RESERVED_PREFIX) or c.endswith(RESERVED_SUFFIXES)]
    if reserved:
        raise InputError(
            f"{origin}: column name(s) {', '.join(map(repr, reserved))} clash with the pipeline's derived columns "
            f"(names starting {RESERVED_PREFIX!r} or ending {' or '.join(map(repr, RESERVED_SUFFIXES))}); rename them"
        )
    if opts.time_column and opts.time_column not in columns:
        raise InputError(f"{origin}: time column {opts.time_column!r} not found; columns are {', '.join(columns.names())}")
    overrides: dict[str, FieldKind] = {n: "categorical" for n in opts.categorical}
    overrides |= {n: "numeric" for n in opts.numeric}
    overrides |= {n: "multi" for n in opts.multi}
    excluded = {label, opts.time_column, PANDAS_INDEX, *opts.drop}
    sample = source.frame.head(SAMPLE_ROWS).collect()
    kinds: dict[str, FieldKind] = {}
    for name in columns.names():
        if name in excluded:
            continue
        kinds[name] = overrides.get(name) or source.known_kinds.get(name) or _infer_kind(name, sample[name], opts.multi_separator)
    if not kinds:
        raise InputError(f"{origin}: no feature columns left besides the label; check schema.drop")
    for name, kind in kinds.items():
        dtype = columns[name]
        if isinstance(dtype, pl.List | pl.Array) and dtype.inner.is_nested():
            raise InputError(f"{origin}: column {name!r} is a list of {dtype.inner}; flatten it to a list of values, or schema.drop it")
        if kind == "multi" and not (isinstance(dtype, pl.List | pl.Array) or dtype == pl.String):
            raise InputError(
                f"{origin}: schema.multi names column {name!r} of type {dtype}; a multi-valued column is a list, or text "
                "with data.multi_separator between its values"
            )
    positive, negative = _text_label(source, label, columns[label], opts, origin)
    return Schema(
        label=label,
        kinds=kinds,
        label_threshold=opts.label_threshold,
        multi_separator=opts.multi_separator,
        positive=positive,
        negative=negative,
    )


ID_TEST_BUCKETS = 64  # quantile buckets that stand for a column's order
ID_TEST_ALPHA = 1e-6  # how sure the test must be before an integer column is read as an id


def id_test_pvalue(values: np.ndarray, label: np.ndarray) -> float:
    """P-value of "the exact values of this integer column say nothing about the label beyond its order".

    The column's order is its ID_TEST_BUCKETS quantile buckets B; by the chain rule I(X;Y) = I(B;Y) + I(X;Y|B),
    and I(X;Y|B) = Σ_b P(b) I(X;Y | B=b) is what the exact values add. Under the null (labels exchangeable among
    the rows of each bucket) each bucket's term has the permutation null's exact mean and sd (`null_moments`), the
    buckets are independent, and the tail is the ranking's gamma law (`features.information.null_upper_tail`). A count or
    an amount (whose effect is smooth in its value) shows no excess; an id (codes in arbitrary order) a large one."""
    from features.buckets import quantile_edges
    from features.information import mutual_information, null_moments, null_upper_tail

    rows = values.size
    bucket = np.searchsorted(quantile_edges(values, ID_TEST_BUCKETS), values, side="right")
    # One sort by (bucket, value) gives every bucket's (value, label) counts, in runs of cells per bucket.
    order = np.lexsort((values, bucket))
    bucket, values, label = bucket[order], values[order], label[order].astype(np.float64)
    cell = np.flatnonzero(np.r_[True, (bucket[1:] != bucket[:-1]) | (values[1:] != values[:-1])])
    counts, positives = np.diff(np.r_[cell, rows]), np.add.reduceat(label, cell)
    table_of = np.r_[np.flatnonzero(np.r_[True, bucket[cell][1:] != bucket[cell][:-1]]), cell.size]
    observed = mean = variance = 0.0
    for first, end in itertools.pairwise(table_of):
        table = np.column_stack([counts[first:end] - positives[first:end], positives[first:end]])  # [values, (neg, pos)]
        if table.shape[0] < 2 or (table.sum(axis=0) == 0).any():
            continue  # one value, or one class: nothing to add
        share = counts[first:end].sum() / rows
        null_mean, null_sd = null_moments(table.sum(axis=1), table.sum(axis=0))
        observed += share * mutual_information(table)
        mean += share * null_mean
        variance += (share * null_sd) ** 2
    return null_upper_tail(observed, mean, float(np.sqrt(variance)))


def integer_ids(train: pl.LazyFrame, schema: Schema, candidates: list[str]) -> list[str]:
    """Which `candidates` (integer columns inference took as numeric) are ids: their exact values carry label
    information their order does not (`id_test_pvalue` below ID_TEST_ALPHA), on the first SAMPLE_ROWS train rows."""
    if not candidates:
        return []
    sample = train.select([*candidates, schema.label_expr()]).head(SAMPLE_ROWS).collect()
    label = sample[schema.label].fill_null(0).to_numpy().astype(np.int64)
    found = []
    for name in candidates:
        present = sample[name].is_not_null().to_numpy()
        values, y = sample[name].to_numpy()[present].astype(np.float64), label[present]
        if np.unique(values).size > LOW_CARDINALITY and 0 < y.sum() < y.size and id_test_pvalue(values, y) < ID_TEST_ALPHA:
            found.append(name)
    return found
