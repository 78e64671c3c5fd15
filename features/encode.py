"""Encoder: vocabularies, numeric buckets and scaling fit on train, applied to every split.

scikit-learn style: `fit` learns state from the train split only, `transform`
applies it lazily (so splits stream to parquet), `save`/`load` keep the fitted
encoder beside the encoded data for inference. Ids 0/1/2 are reserved for
padding, out-of-vocabulary and missing in every field; real values start at 3,
most frequent first.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import numpy as np
import polars as pl

from featuremap import FIRST_VALUE_ID, MISSING_ID, OOV_ID, FeatureMap, FieldSpec
from featuremap.errors import InputError
from features.buckets import quantile_edges
from features.schema import Schema

NumericBucketing = Literal["auto", "quantile", "log"]
VALUE_SUFFIX = "__num"
ENUM_MAX_VALUES = 1 << 19  # string vocabularies up to this size are looked up as an Enum cast (see `_lookup`)
DENSE_MIN_SPAN = 1 << 16  # integer vocabularies whose values span up to the larger of these are looked up in a table
DENSE_SPAN_PER_VALUE = 4
DENSE_BUCKET_SPAN = 1 << 22  # integer fields whose train values span up to this take their quantile bucket from a table
SET_SUFFIX = "__set"
SCAN_BATCH_ROWS = 1 << 17  # rows per batch of `Encoder.scan`
OWN_SAMPLE_SHARE = 0.1  # numeric fields with values in fewer train rows than this share are sampled by their own values


@dataclass(frozen=True)
class EncoderParams:
    """Settings of the encoder.

    min_count: values seen fewer times in train map to the field's OOV id.
    numeric_bucketing: 'quantile' bins from a train sample, 'log' (v <= 2
      kept as is, else 3 + floor(ln(v)^2); the common Criteo recipe without its
      collision of v=1 with v=3), or 'auto' (ingest picks log for Criteo;
      anything else, and an encoder used directly, gets quantile).
    numeric_bins: number of quantile bins.
    quantile_sample_rows: at most this many train rows are sampled (every k-th row) for the bin edges and the
      numeric fields' mean and sd.
    """

    min_count: int = 1
    numeric_bucketing: NumericBucketing = "auto"
    numeric_bins: int = 16
    quantile_sample_rows: int = 1_000_000


@dataclass
class FitCounts:
    """What `Encoder.fit_counts` decides from: train rows, positives, bad labels, non-missing values per field other
    than numeric (those: `NumericScan`), and (value, count) tables per vocabulary. Parts' counts `merge` into the
    whole's."""

    rows: int
    positives: int
    label_bad: int
    present: dict[str, int]
    tokens: dict[str, list[pl.DataFrame]]  # one table per part, added up in `fit_counts`
    label_minus_ones: int = 0  # labels -1 and 0 (a numeric label): both in one split is three classes
    label_zeros: int = 0

    def merge(self, other: FitCounts) -> FitCounts:
        """These counts plus `other`'s (the next part)."""
        self.rows += other.rows
        self.positives += other.positives
        self.label_bad += other.label_bad
        self.label_minus_ones += other.label_minus_ones
        self.label_zeros += other.label_zeros
        for name, count in other.present.items():
            self.present[name] += count
        for name, tables in other.tokens.items():
            self.tokens[name].extend(tables)
        return self


@dataclass(frozen=True)
class NumericScan:
    """What one read of the numeric columns of (a part of) the train split gives (`Encoder.scan`): per field its
    non-missing values, its least and greatest value ((inf, -inf) without values) and the values (nulls included) of
    the train rows whose number in the whole split is a multiple of `Encoder.sample_every`."""

    present: dict[str, int]
    ranges: dict[str, tuple[float, float]]
    sample: dict[str, pl.Series]

    @staticmethod
    def join(parts: list[NumericScan]) -> NumericScan:
        """The scans of parts of the train split, in row order, as the whole split's."""
        names = list(parts[0].present)
        return NumericScan(
            present={n: sum(p.present[n] for p in parts) for n in names},
            ranges={n: (min(p.ranges[n][0] for p in parts), max(p.ranges[n][1] for p in parts)) for n in names},
            sample={n: pl.concat([p.sample[n] for p in parts]) for n in names},
        )


def vocab_path(directory: Path, name: str) -> Path:
    """Where `Encoder.save` writes vocabulary `name` under an ingest output `directory`: vocab/NAME.parquet, the name
    percent-quoted; where that passes a file name's 255 bytes (30 CJK characters quote to 270), the quoted name's first
    80 characters and a hash of the whole (so every name that fitted keeps its file)."""
    stem = quote(name, safe="")
    if len(stem) + len(".parquet") > 255:
        stem = f"{stem[:80]}~{hashlib.blake2b(name.encode(), digest_size=8).hexdigest()}"
    return directory / "vocab" / f"{stem}.parquet"


def _token_counts(tokens: pl.LazyFrame) -> pl.LazyFrame:
    return tokens.drop_nulls().group_by("value").agg(pl.len().alias("count"))


def _numbered_by_row(ids: pl.Series) -> bool:
    """Whether a vocabulary's ids are FIRST_VALUE_ID + its row number (as `Encoder.fit_counts` numbers them)."""
    return bool((ids.to_numpy() == np.arange(FIRST_VALUE_ID, FIRST_VALUE_ID + ids.len())).all())


def _mean_sd(values: np.ndarray) -> tuple[float, float]:
    """The mean and sd (ddof 1) of finite values; 0 for no values (sd: below two). Values whose sum passes the largest
    float (near 1e308) are scaled down by their largest magnitude first."""
    if not values.size:
        return 0.0, 0.0

    def moments(v: np.ndarray) -> tuple[float, float]:
        return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0

    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = moments(values)
    if not (math.isfinite(mean) and math.isfinite(std)):
        scale = float(np.abs(values).max())
        mean, std = (m * scale for m in moments(values / scale))
    return mean, std


def _log_bucket(col: pl.Expr) -> pl.Expr:
    # Never a cast error: a value below Int64's least (-inf too) takes the least, +inf and NaN no bucket (null); fitting
    # says which column has an infinity (`Encoder.scan`).
    v = col.cast(pl.Float64)
    bucket = pl.when(v > 2).then((v.log() ** 2).floor() + 3).otherwise(v.floor())
    return bucket.clip(lower_bound=float(-(2**63))).cast(pl.Int64, strict=False)


class Encoder:
    """Maps raw columns to integer ids (and standardised values for numeric fields)."""

    def __init__(self, schema: Schema, params: EncoderParams | None = None) -> None:
        self.schema = schema
        self.params = params or EncoderParams()
        self.vocabs: dict[str, pl.DataFrame] = {}
        self.edges: dict[str, list[float]] = {}
        self.stats: dict[str, dict[str, float]] = {}
        self.train_rows = 0
        self.present: dict[str, int] = {}  # non-missing train values per field (`fit_counts`; not saved)
        self._raw_dtypes: pl.Schema = pl.Schema()

    # -- token expressions: the raw value each vocabulary is built over ----------------------------
    def _uses_vocab(self, name: str) -> bool:
        # Log buckets are tokens with a vocabulary; quantile bins ('auto' outside ingest) are not.
        return self.schema.kinds[name] != "numeric" or self.params.numeric_bucketing == "log"

    def _token(self, name: str) -> pl.Expr:
        kind = self.schema.kinds[name]
        col = pl.col(name)
        if kind == "numeric":
            return _log_bucket(col)
        if kind == "multi":
            return self._elements(name)
        return col

    def _elements(self, name: str) -> pl.Expr:
        col = pl.col(name)
        if self._raw_dtypes[name] == pl.String:
            col = col.str.split(self.schema.multi_separator).list.eval(pl.element().filter(pl.element() != ""))
        return col

    def _vocab_names(self) -> list[str]:
        """The vocabularies, in schema order: each field's that has one, and a multi-valued field's set vocabulary."""
        kinds = self.schema.kinds
        return [n for f, k in kinds.items() if self._uses_vocab(f) for n in ((f, f + SET_SUFFIX) if k == "multi" else (f,))]

    def _vocab_token(self, vocab: str) -> pl.Expr:
        """What vocabulary `vocab` counts, a row each (a multi-valued field's elements exploded)."""
        field = vocab.removesuffix(SET_SUFFIX)
        if field != vocab:
            return self._set_token(field)
        return self._token(field).explode() if self.schema.kinds[field] == "multi" else self._token(field)

    def _set_token(self, name: str) -> pl.Expr:
        elements = self._elements(name)
        return (
            pl.when(elements.list.len() > 0)
            .then(elements.list.unique().list.sort().cast(pl.List(pl.String)).list.join(self.schema.multi_separator))
            .otherwise(None)
        )

    # -- fit ------------------------------------------------------------------------------------
    # Fitting counts (`count`) and then decides (`fit_counts`); the counts of parts of the train split add up to the
    # counts of the whole exactly (integers), so a split counted in parts by several workers (`pipeline.ray_engine`)
    # fits the same encoder as one pass. Then one read of the numeric columns (`scan`) gives their coverage and range
    # (which add up likewise) and a sample of every k-th train row, which parts take by their rows' number in the
    # whole split: the same rows, in the same order, however the split was parted. The sample gives the quantile edges
    # and the numeric fields' mean and sd; a sparse field's, every k-th of its values (`sample_own`, numbered likewise).
    def fit(self, train: pl.LazyFrame, origin: str = "train split") -> Encoder:
        """Learn vocabularies, bucket edges and scaling from the train split."""
        self.fit_counts(self.count(train, origin), origin)
        if self.numeric_fields():
            sample = self.fit_scan(self.scan(train, 0, origin), origin)
            self.fit_sample(sample | self.sample_own(train))
        return self

    def count(self, train: pl.LazyFrame, origin: str = "train split") -> FitCounts:
        """What fitting needs from (a part of) the train split but the numeric columns (`scan`): label checks, the
        presence of the other fields, token counts."""
        train = self._nan_to_null(train)
        self._raw_dtypes = train.collect_schema()
        # A categorical field's non-missing values are its token counts' total (tokens are its values, nulls dropped):
        # the checks read the label and multi-valued columns only. A multi-valued field has a value where its list has
        # an element (an empty list encodes as missing).
        multi = [n for n, k in self.schema.kinds.items() if k == "multi"]
        checks = self._label_checks() + [(self._elements(n).list.len().fill_null(0) > 0).sum().alias(n) for n in multi]
        names = self._vocab_names()
        queries = [_token_counts(train.select(self._vocab_token(name).alias("value"))) for name in names]
        tokens = dict(zip(names, pl.collect_all(queries, engine="streaming"), strict=True))
        # Its own read: sharing one with the queries above, polars would cache the train rows in memory.
        checks_row = train.select(checks).collect(engine="streaming").row(0, named=True)
        return FitCounts(
            rows=int(checks_row["__rows"]),
            positives=int(checks_row["__positives"] or 0),
            label_bad=int(checks_row["__label_bad"] or 0),
            label_minus_ones=int(checks_row.get("__minus_ones") or 0),
            label_zeros=int(checks_row.get("__zeros") or 0),
            present={
                n: int(checks_row[n]) if k == "multi" else int(tokens[n]["count"].sum())
                for n, k in self.schema.kinds.items()
                if k != "numeric"
            },
            tokens={name: [table] for name, table in tokens.items()},
        )

    def fit_counts(self, counts: FitCounts, origin: str = "train split") -> Encoder:
        """Decide the train row count, the coverage of each field but the numeric ones (`fit_scan`) and the
        vocabularies from the train split's counts."""
        self.train_rows = counts.rows
        self.present = dict(counts.present)
        if self.train_rows == 0:
            raise InputError(f"{origin}: no rows; check the input and the split fractions")
        self.raise_on_bad_labels(counts.label_bad, origin)
        if counts.label_minus_ones and counts.label_zeros:
            raise InputError(
                f"{origin}: label column {self.schema.label!r} holds both -1 and 0; a binary label is 0/1 or -1/1 "
                "(set data.positive to the click values to read every other value as 0)"
            )
        if counts.positives in (0, self.train_rows):
            raise InputError(f"{origin}: label column {self.schema.label!r} has a single class; a CTR label needs both")
        for name, kind in self.schema.kinds.items():
            # A numeric field's stats: `fit_scan` (its entry made here keeps the fields' order in encoder.json).
            self.stats[name] = {} if kind == "numeric" else {"coverage": self._coverage(name, counts.present[name], origin)}
        for name, tables in counts.tokens.items():
            self.vocabs[name] = (
                pl.concat(tables)
                .group_by("value")
                .agg(pl.col("count").sum())
                .filter(pl.col("count") >= self.params.min_count)
                .sort(["count", "value"], descending=[True, False])
                .with_row_index("id", offset=FIRST_VALUE_ID)
                .with_columns(pl.col("id").cast(pl.Int32))
            )
        return self

    def numeric_fields(self) -> list[str]:
        """The numeric fields: the sample's columns (every one is standardised; the quantile ones are also bucketed)."""
        return [n for n, k in self.schema.kinds.items() if k == "numeric"]

    def quantile_fields(self) -> list[str]:
        """The numeric fields bucketed by quantile edges (the others have vocabularies)."""
        return [n for n, k in self.schema.kinds.items() if k == "numeric" and not self._uses_vocab(n)]

    @property
    def sample_every(self) -> int:
        """The quantile sample takes every k-th train row: k from the train row count (after `fit_counts`)."""
        return max(1, -(-self.train_rows // self.params.quantile_sample_rows))  # the sample holds at most that many rows

    @property
    def own_samples(self) -> dict[str, int]:
        """The numeric fields sampled by their own values, each with its k (after `fit_scan`): when the sample skips
        rows, a field with values in under OWN_SAMPLE_SHARE of the train rows would get under a tenth of
        `quantile_sample_rows` values in it (a field with 150 values in 200 k rows: 0 or 1 at k = 200); such a field
        takes every k-th of its own values instead, k from its count of values."""
        if self.sample_every == 1:
            return {}
        rows = self.params.quantile_sample_rows
        return {
            n: max(1, -(-self.present[n] // rows)) for n in self.numeric_fields() if self.present[n] < OWN_SAMPLE_SHARE * self.train_rows
        }

    def _coverage(self, name: str, present: int, origin: str) -> float:
        """The field's share of train rows with a value; an error when it has none."""
        if present == 0:
            raise InputError(f"{origin}: column {name!r} has no values (all missing); drop it with schema.drop")
        self.present[name] = present
        return present / self.train_rows

    def scan(self, train: pl.LazyFrame, first_row: int = 0, origin: str = "train split") -> NumericScan:
        """The numeric fields' presence, range and sample of every k-th row (`NumericScan`) from one read of (a part
        of) the train split whose first row is the split's `first_row` (k: `sample_every`, after `fit_counts`). The
        read is streamed in batches (polars' `collect_batches`, marked unstable in 2.1: requirements.lock pins it),
        each giving its aggregates and its sampled rows: a query for each took a read apiece (a 50 M-row ingest: 1.2 s
        less; bench/RESULTS.md, "Out of core"). polars reads ahead of the loop without a limit; the loop's two small
        queries a batch keep up (50 M rows: 0.3 GB more than the two queries, flat from the first half second), but a
        stalled loop would let batches pile up."""
        train = self._nan_to_null(train)
        self._raw_dtypes = train.collect_schema()
        names, every = self.numeric_fields(), self.sample_every
        if not names:
            return NumericScan({}, {}, {})
        aggregates = []
        for name in names:
            v = pl.col(name) if self._raw_dtypes[name].is_numeric() else pl.col(name).cast(pl.Float64)
            # Least and greatest in the column's own type, then as floats: the same as casting first (rounding is monotone).
            aggregates += [
                v.count().alias(f"{name}.n"),
                v.min().cast(pl.Float64).alias(f"{name}.min"),
                v.max().cast(pl.Float64).alias(f"{name}.max"),
            ]
        rows = train.select(names).with_row_index("__i", offset=first_row)
        totals, samples = [], []
        # Batches of at least 128 k rows: polars' own follow the row groups (0.46 -> 0.21 s for 2 M rows in groups of 2 k).
        for batch in rows.collect_batches(chunk_size=SCAN_BATCH_ROWS, engine="streaming"):
            totals.append(batch.select(aggregates))
            samples.append(batch.filter(pl.col("__i") % every == 0))
        if not totals:  # no rows: an empty frame's aggregates and sample
            empty = rows.clear().collect()
            totals, samples = [empty.select(aggregates)], [empty]
        total = pl.concat(totals).select(
            [pl.col(f"{n}.n").sum() for n in names] + [pl.col(f"{n}.min").min() for n in names] + [pl.col(f"{n}.max").max() for n in names]
        )
        total_row = total.row(0, named=True)
        ranges = {}
        for name in names:
            low, high = total_row[f"{name}.min"], total_row[f"{name}.max"]
            low, high = (math.inf if low is None else low), (-math.inf if high is None else high)
            if low == -math.inf or high == math.inf:  # NaN is missing (`_nan_to_null`): an infinity is the least or greatest value
                raise InputError(f"{origin}: column {name!r} has infinite values; replace them or drop the column with schema.drop")
            ranges[name] = (low, high)
        sample = pl.concat(samples)
        return NumericScan({n: int(total_row[f"{n}.n"]) for n in names}, ranges, {n: sample[n] for n in names})

    def fit_scan(self, scan: NumericScan, origin: str = "train split") -> dict[str, pl.Series]:
        """The numeric fields' coverage and range from the train split's scan (`scan`; parts' joined by
        `NumericScan.join`); returns its sample, which `fit_sample` takes (with `sample_own`'s for sparse fields)."""
        for name in self.numeric_fields():
            coverage = self._coverage(name, scan.present[name], origin)
            low, high = scan.ranges[name]
            self.stats[name] = {"coverage": coverage, "mean": 0.0, "std": 0.0, "min": low, "max": high}  # mean, sd: `fit_sample`
        return dict(scan.sample)

    def sample_own(self, train: pl.LazyFrame, first_values: dict[str, int] | None = None) -> dict[str, pl.Series]:
        """Each field in `own_samples` (after `fit_scan`): every k-th of its values in the split, numbered from this
        part's first value (`first_values[field]`, 0 when not given); a read per field."""
        if not self.own_samples:
            return {}
        train = self._nan_to_null(train)
        queries = [
            train.select(name).drop_nulls().with_row_index("__i", offset=(first_values or {}).get(name, 0)).filter(pl.col("__i") % k == 0)
            for name, k in self.own_samples.items()
        ]
        frames = pl.collect_all(queries, engine="streaming", optimizations=pl.QueryOptFlags(comm_subplan_elim=False))
        return {name: frame[name] for name, frame in zip(self.own_samples, frames, strict=True)}

    @staticmethod
    def join_samples(parts: list[dict[str, pl.Series]]) -> dict[str, pl.Series]:
        """The samples of parts of the train split (`sample_own`), in row order, as the whole split's."""
        return {name: pl.concat([part[name] for part in parts]) for name in parts[0]} if parts else {}

    def fit_sample(self, sample: dict[str, pl.Series]) -> None:
        """From the train sample (`fit_scan`'s, with `sample_own`'s for sparse fields): each numeric field's mean
        and sd (ddof 1), which standardise its values, and the quantile fields' bucket edges. Fields run on threads:
        numpy's partition releases the GIL (six fields of 1.6 M rows: 0.29 -> 0.17 s on two cores). The sample holds
        every train row up to `quantile_sample_rows` of them; past that, exact moments over every row (summed exactly
        so that parts gave the same bits) took a read per field, a sixth of a 50 M-row ingest (bench/RESULTS.md, "Out
        of core"), for a mean within about sd / 1000 of the whole split's (sd / 300 at worst, for a field with values
        in a tenth of the rows; a sparser one is sampled by its own values: up to `quantile_sample_rows` of them, all
        of them when it has fewer)."""

        def fit(name: str) -> tuple[float, float, list[float] | None]:
            values = sample[name].drop_nulls().cast(pl.Float64).to_numpy()
            mean, std = _mean_sd(values)
            if name not in quantile:
                return mean, std, None
            return mean, std, quantile_edges(values, self.params.numeric_bins).tolist() if values.size else []

        names, quantile = self.numeric_fields(), set(self.quantile_fields())
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for name, (mean, std, edges) in zip(names, pool.map(fit, names), strict=True):
                self.stats[name] |= {"mean": mean, "std": std}
                if edges is not None:
                    self.edges[name] = edges

    def _label_checks(self) -> list[pl.Expr]:
        bad = self.schema.label_bad_expr()
        checks = [
            pl.len().alias("__rows"),
            self.schema.label_expr().cast(pl.Int64).sum().alias("__positives"),
            bad.sum().alias("__label_bad"),
        ]
        if self.schema.positive is None and self.schema.label_threshold is None:  # a numeric label read as -1/1 or 0/1
            raw = pl.col(self.schema.label).cast(pl.Float64, strict=False)
            checks += [(raw == -1).sum().alias("__minus_ones"), (raw == 0).sum().alias("__zeros")]
        return checks

    def raise_on_bad_labels(self, bad: int, origin: str) -> None:
        """Raise InputError when `bad` (> 0) labels are missing or not binary, saying what the label must be."""
        if bad:
            if self.schema.negative is not None:
                allowed = ", ".join(repr(v) for v in (*self.schema.positive, *self.schema.negative))
                raise InputError(
                    f"{origin}: label column {self.schema.label!r} has {bad} missing values or values other than "
                    f"{allowed}; drop those rows or set data.positive"
                )
            if self.schema.positive is not None:
                raise InputError(f"{origin}: label column {self.schema.label!r} has {bad} missing values; drop or fill those rows")
            if self.schema.label_threshold is not None:
                raise InputError(
                    f"{origin}: label column {self.schema.label!r} has {bad} missing or non-numeric values; drop or fill those rows"
                )
            raise InputError(
                f"{origin}: label column {self.schema.label!r} is not binary (0/1 or -1/1): {bad} missing or other values; drop "
                "those rows, pick another label column (data.label), or set data.label_threshold or data.positive to binarise it"
            )

    def bad_labels(self, frame: pl.LazyFrame) -> int:
        """How many of a (valid or test) split's labels are missing or not binary."""
        # NaN is a missing label here as in training (`count` reads train through `_nan_to_null`)
        return int(self._nan_to_null(frame).select(self.schema.label_bad_expr().sum()).collect(engine="streaming").item() or 0)

    def check_labels(self, frame: pl.LazyFrame, origin: str) -> None:
        """Raise InputError if a (valid or test) split's labels are missing or not binary."""
        self.raise_on_bad_labels(self.bad_labels(frame), origin)

    @staticmethod
    def _nan_to_null(frame: pl.LazyFrame) -> pl.LazyFrame:
        # polars keeps NaN as a value; for encoding it means missing, like an empty cell.
        floats = [name for name, dtype in frame.collect_schema().items() if dtype.is_float()]
        return frame.with_columns(pl.col(floats).fill_nan(None)) if floats else frame

    # -- transform --------------------------------------------------------------------------------
    # A vocabulary lookup must stream: polars' replace_strict holds its whole output in memory (an ingest of 50 M rows
    # peaked at 8.4 GB with it). Three lookups do stream, and each is used where it is the fastest (bench/RESULTS.md,
    # "Vocabulary lookups"): a string token cast to an Enum of the vocabulary (1.1-1.3x a join's speed per process,
    # 2x in process; slower than a join past ~1 M values), an integer token gathered from a dense table over its
    # values' span (1.4x per process, 3x in process),
    # and otherwise a left join against the vocabulary. The Enum's index is the vocabulary's row: its ids must be
    # FIRST_VALUE_ID + row (as `fit_counts` numbers them), which is checked.
    def _lookup(self, frame: pl.LazyFrame, token: pl.Expr, vocab_name: str) -> tuple[pl.LazyFrame, pl.Expr]:
        """The frame (with a joined id column, when the lookup is a join) and the expression of the token's id, OOV_ID
        for a value unseen in train (and for a missing one, which `_code` maps to MISSING_ID)."""
        vocab = self.vocabs[vocab_name]
        values, ids = vocab["value"], vocab["id"]
        token = token.cast(values.dtype, strict=False)
        if values.dtype == pl.String and ids.len() <= ENUM_MAX_VALUES and _numbered_by_row(ids):
            index = token.cast(pl.Enum(values), strict=False).to_physical().cast(pl.Int32)
            return frame, (index + FIRST_VALUE_ID).fill_null(OOV_ID)
        if values.dtype.is_integer() and ids.len():
            low, high = int(values.min()), int(values.max())
            span = high - low + 1
            if span <= max(DENSE_MIN_SPAN, DENSE_SPAN_PER_VALUE * ids.len()):
                # One gather: the table's two ends are OOV_ID, for the values below and above the span (clipped
                # there) and for a missing token (index 0). A `when(inside)` around the gather ran 1.3x slower.
                table = np.full(span + 2, OOV_ID, dtype=np.int32)
                table[values.to_numpy() - low + 1] = ids.to_numpy()
                offset = (token.cast(pl.Int64) - low + 1).clip(0, span + 1).fill_null(0)  # low - 1 may not fit in Int64
                return frame, pl.lit(pl.Series(table)).gather(offset)
        tok, joined = f"__tok_{vocab_name}", f"__id_{vocab_name}"
        table = vocab.lazy().select(pl.col("value"), pl.col("id").alias(joined))
        frame = frame.with_columns(token.alias(tok))
        frame = frame.join(table, left_on=tok, right_on="value", how="left", maintain_order="left").drop(tok)
        return frame, pl.col(joined).fill_null(OOV_ID)

    def _code(self, name: str, ids: pl.Expr | None) -> pl.Expr:
        kind = self.schema.kinds[name]
        raw = pl.col(name)
        if kind == "multi":
            elements = self._elements(name)
            vocab = self.vocabs[name]
            ids = elements.list.eval(pl.element().replace_strict(vocab["value"], vocab["id"], default=OOV_ID, return_dtype=pl.Int32))
            return pl.when(elements.list.len() > 0).then(ids).otherwise(pl.lit([MISSING_ID], dtype=pl.List(pl.Int32)))
        if kind == "numeric" and not self._uses_vocab(name):
            code = self._bucket(name) + FIRST_VALUE_ID
        else:
            assert ids is not None
            code = ids
        # MISSING_ID where the value is missing, by arithmetic on `code` (never null here): polars ran
        # `when(missing).then(..).otherwise(code)` 3.5x slower than `code` alone when `code` is a sum of comparisons
        # (bench/RESULTS.md, "Out of core").
        present = raw.is_not_null().cast(pl.Int32)
        return (code.cast(pl.Int32) - MISSING_ID) * present + MISSING_ID

    def _bucket(self, name: str) -> pl.Expr:
        """A quantile field's bucket: how many of its edges lie below the value. An integer field whose train values
        span at most DENSE_BUCKET_SPAN gathers it from a table over that span (values beyond it clipped to its ends,
        where the count is the same: the edges lie between the train min and max); otherwise one comparison per edge.
        Either way a missing value gets some bucket, which `_code` replaces by MISSING_ID."""
        edges = self.edges[name]
        low, high = self.stats[name]["min"], self.stats[name]["max"]
        dtype = self._raw_dtypes[name]
        if dtype.is_integer() and dtype != pl.UInt64 and edges and high - low < DENSE_BUCKET_SPAN:
            low, high = math.floor(low), math.ceil(high)  # the train values may have been floats
            table = np.searchsorted(np.asarray(edges), np.arange(low, high + 2, dtype=np.float64), side="left").astype(np.int32)
            offset = (pl.col(name).cast(pl.Int64) - low).clip(0, high + 1 - low)  # high + 1 stands for every value above high
            return pl.lit(pl.Series(table)).gather(offset.fill_null(0))  # a missing value's bucket: any (`_code` sets it)
        # Nulls filled first (`_code` maps them to MISSING_ID): comparisons over a column with nulls ran 3-5x slower.
        v = pl.col(name).cast(pl.Float64).fill_null(0.0)
        small = pl.Int8 if len(edges) < 128 else pl.Int32  # 1-byte counts add faster (the sum fits below 128 edges)
        return pl.sum_horizontal([(v > e).cast(small) for e in edges] or [pl.lit(0, pl.Int32)]).cast(pl.Int32)

    def transform(
        self, frame: pl.LazyFrame, require_label: bool = True, fields: Collection[str] | None = None, passthrough: Collection[str] = ()
    ) -> pl.LazyFrame:
        """Encode a raw frame: label as Int8, ids as Int32, numeric values as standardised Float32.

        With `require_label=False` (scoring new data) a frame without the label column is encoded without it; with
        `fields`, only those features are encoded (and only their columns need be there); `passthrough` columns follow
        the encoded ones as they are. A missing feature column is polars' ColumnNotFoundError naming every one missing.
        """
        if not self.stats:
            raise RuntimeError("Encoder.transform called before fit")
        kinds = {name: kind for name, kind in self.schema.kinds.items() if fields is None or name in fields}
        frame = self._nan_to_null(frame)
        self._raw_dtypes = frame.collect_schema()
        missing = [name for name in kinds if name not in self._raw_dtypes]
        if missing:
            raise pl.exceptions.ColumnNotFoundError(", ".join(missing))
        ids: dict[str, pl.Expr] = {}
        for name, kind in kinds.items():
            if kind == "multi":
                frame, ids[name + SET_SUFFIX] = self._lookup(frame, self._set_token(name), name + SET_SUFFIX)
            elif self._uses_vocab(name):
                frame, ids[name] = self._lookup(frame, self._token(name), name)
        has_label = require_label or self.schema.label in frame.collect_schema()
        exprs = [self.schema.label_expr()] if has_label else []
        for name, kind in kinds.items():
            exprs.append(self._code(name, ids.get(name)).alias(name))
            if kind == "numeric":
                s = self.stats[name]
                scale = s["std"] if s["std"] > 0 else 1.0
                value = ((pl.col(name).cast(pl.Float64) - s["mean"]) / scale).fill_null(0.0).cast(pl.Float32)
                exprs.append(value.alias(name + VALUE_SUFFIX))
            elif kind == "multi":
                missing = self._elements(name).list.len().fill_null(0) == 0
                code = pl.when(missing).then(pl.lit(MISSING_ID, pl.Int32)).otherwise(ids[name + SET_SUFFIX])
                exprs.append(code.alias(name + SET_SUFFIX))
        return frame.select(*exprs, *passthrough)

    # -- feature map, persistence ----------------------------------------------------------------
    def field_specs(self) -> tuple[FieldSpec, ...]:
        """One FieldSpec per feature column, in schema order."""
        specs = []
        for name, kind in self.schema.kinds.items():
            if kind == "numeric" and not self._uses_vocab(name):
                size, bucketing = FIRST_VALUE_ID + len(self.edges[name]) + 1, "quantile"
            else:
                size, bucketing = FIRST_VALUE_ID + self.vocabs[name].height, ("log" if kind == "numeric" else None)
            specs.append(
                FieldSpec(
                    name=name,
                    kind=kind,
                    column=name,
                    vocab_size=size,
                    value_column=name + VALUE_SUFFIX if kind == "numeric" else None,
                    set_column=name + SET_SUFFIX if kind == "multi" else None,
                    set_vocab_size=FIRST_VALUE_ID + self.vocabs[name + SET_SUFFIX].height if kind == "multi" else None,
                    bucketing=bucketing,
                    stats=self.stats[name],
                )
            )
        return tuple(specs)

    def feature_map(self, splits: dict[str, dict[str, float]], source: dict[str, str]) -> FeatureMap:
        """The feature map of data encoded by this encoder."""
        return FeatureMap(label=self.schema.label, fields=self.field_specs(), splits=splits, source=source)

    def save(self, directory: Path) -> None:
        """Write encoder.json and one vocabulary parquet per vocabulary into `directory`."""
        (directory / "vocab").mkdir(parents=True, exist_ok=True)
        for name, vocab in self.vocabs.items():
            vocab.write_parquet(vocab_path(directory, name))
        state = {
            "schema": asdict(self.schema),
            "params": asdict(self.params),
            "edges": self.edges,
            "stats": self.stats,
            "train_rows": self.train_rows,
        }
        (directory / "encoder.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Encoder:
        """Read an encoder written by `save`."""
        path = directory / "encoder.json"
        if not path.is_file():
            raise InputError(f"{path}: fitted encoder not found; run the ingest stage first")
        state = json.loads(path.read_text())
        encoder = cls(Schema(**state["schema"]), EncoderParams(**state["params"]))
        encoder.edges = state["edges"]
        encoder.stats = state["stats"]
        encoder.train_rows = state["train_rows"]
        names = encoder._vocab_names()
        missing = [str(vocab_path(directory, n)) for n in names if not vocab_path(directory, n).is_file()]
        if missing:
            raise InputError(
                f"{missing[0]}: vocabulary file not found beside {path.name}; rerun the stage that wrote it (ingest; train for a model package)"
            )
        encoder.vocabs = {name: pl.read_parquet(vocab_path(directory, name)) for name in names}
        return encoder
