"""Encoder: vocabularies, numeric buckets and scaling fit on train, applied to every split.

scikit-learn style: `fit` learns state from the train split only, `transform`
applies it lazily (so splits stream to parquet), `save`/`load` keep the fitted
encoder beside the encoded data for inference. Ids 0/1/2 are reserved for
padding, out-of-vocabulary and missing in every field; real values start at 3,
most frequent first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote

import polars as pl

from featuremap import FIRST_VALUE_ID, MISSING_ID, OOV_ID, FeatureMap, FieldSpec
from featuremap.errors import InputError
from features.buckets import quantile_edges
from features.schema import Schema

NumericBucketing = Literal["auto", "quantile", "log"]
VALUE_SUFFIX = "__num"
SET_SUFFIX = "__set"


@dataclass(frozen=True)
class EncoderParams:
    """Settings of the encoder.

    min_count: values seen fewer times in train map to the field's OOV id.
    numeric_bucketing: 'quantile' bins from a train sample, 'log' (v <= 2
      kept as is, else 3 + floor(ln(v)^2); the common Criteo recipe without its
      collision of v=1 with v=3), or 'auto' (ingest picks log for Criteo;
      anything else, and an encoder used directly, gets quantile).
    numeric_bins: number of quantile bins.
    quantile_sample_rows: train rows sampled (every k-th row) for the bin edges.
    """

    min_count: int = 1
    numeric_bucketing: NumericBucketing = "auto"
    numeric_bins: int = 16
    quantile_sample_rows: int = 1_000_000


def _log_bucket(col: pl.Expr) -> pl.Expr:
    v = col.cast(pl.Float64)
    return pl.when(v > 2).then((v.log() ** 2).floor() + 3).otherwise(v.floor()).cast(pl.Int64)


class Encoder:
    """Maps raw columns to integer ids (and standardised values for numeric fields)."""

    def __init__(self, schema: Schema, params: EncoderParams | None = None) -> None:
        self.schema = schema
        self.params = params or EncoderParams()
        self.vocabs: dict[str, pl.DataFrame] = {}
        self.edges: dict[str, list[float]] = {}
        self.stats: dict[str, dict[str, float]] = {}
        self.train_rows = 0
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

    def _set_token(self, name: str) -> pl.Expr:
        elements = self._elements(name)
        return (
            pl.when(elements.list.len() > 0)
            .then(elements.list.unique().list.sort().cast(pl.List(pl.String)).list.join(self.schema.multi_separator))
            .otherwise(None)
        )

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, train: pl.LazyFrame, origin: str = "train split") -> Encoder:
        """Learn vocabularies, bucket edges and scaling from the train split."""
        train = self._nan_to_null(train)
        self._raw_dtypes = train.collect_schema()
        self._fit_stats(train, origin)
        self._fit_edges(train)
        queries, names = [], []
        for name, kind in self.schema.kinds.items():
            if kind == "multi":
                queries.append(self._vocab_query(train.select(self._token(name).alias("value")).explode("value")))
                names.append(name)
                queries.append(self._vocab_query(train.select(self._set_token(name).alias("value"))))
                names.append(name + SET_SUFFIX)
            elif self._uses_vocab(name):
                queries.append(self._vocab_query(train.select(self._token(name).alias("value"))))
                names.append(name)
        for name, vocab in zip(names, pl.collect_all(queries, engine="streaming"), strict=True):
            self.vocabs[name] = vocab
        return self

    def _vocab_query(self, tokens: pl.LazyFrame) -> pl.LazyFrame:
        return (
            tokens.drop_nulls()
            .group_by("value")
            .agg(pl.len().alias("count"))
            .filter(pl.col("count") >= self.params.min_count)
            .sort(["count", "value"], descending=[True, False])
            .with_row_index("id", offset=FIRST_VALUE_ID)
            .with_columns(pl.col("id").cast(pl.Int32))
        )

    def _label_checks(self) -> list[pl.Expr]:
        bad = self.schema.label_bad_expr()
        return [
            pl.len().alias("__rows"),
            self.schema.label_expr().cast(pl.Int64).sum().alias("__positives"),
            bad.sum().alias("__label_bad"),
        ]

    def _raise_on_bad_labels(self, row: dict, origin: str) -> None:
        if row["__label_bad"]:
            if self.schema.negative is not None:
                allowed = ", ".join(repr(v) for v in (*self.schema.positive, *self.schema.negative))
                raise InputError(
                    f"{origin}: label column {self.schema.label!r} has {row['__label_bad']} missing values or values other than "
                    f"{allowed}; drop those rows or set data.positive"
                )
            if self.schema.positive is not None:
                raise InputError(
                    f"{origin}: label column {self.schema.label!r} has {row['__label_bad']} missing values; drop or fill those rows"
                )
            if self.schema.label_threshold is not None:
                raise InputError(
                    f"{origin}: label column {self.schema.label!r} has {row['__label_bad']} missing or non-numeric values; drop or fill those rows"
                )
            raise InputError(
                f"{origin}: label column {self.schema.label!r} is not binary (0/1 or -1/1); "
                "pick another label column (data.label), or set data.label_threshold or data.positive to binarise it"
            )

    def check_labels(self, frame: pl.LazyFrame, origin: str) -> None:
        """Raise InputError if a (valid or test) split's labels are missing or not binary."""
        self._raise_on_bad_labels(frame.select(self._label_checks()).collect(engine="streaming").row(0, named=True), origin)

    @staticmethod
    def _nan_to_null(frame: pl.LazyFrame) -> pl.LazyFrame:
        # polars keeps NaN as a value; for encoding it means missing, like an empty cell.
        floats = [name for name, dtype in frame.collect_schema().items() if dtype.is_float()]
        return frame.with_columns(pl.col(floats).fill_nan(None)) if floats else frame

    def _fit_stats(self, train: pl.LazyFrame, origin: str) -> None:
        exprs = self._label_checks()
        for name, kind in self.schema.kinds.items():
            exprs.append(pl.col(name).is_not_null().sum().alias(f"{name}.present"))
            if kind == "numeric":
                v = pl.col(name).cast(pl.Float64)
                exprs += [
                    v.mean().alias(f"{name}.mean"),
                    v.std().alias(f"{name}.std"),
                    v.min().alias(f"{name}.min"),
                    v.max().alias(f"{name}.max"),
                ]
        row = train.select(exprs).collect(engine="streaming").row(0, named=True)
        self.train_rows = int(row["__rows"])
        if self.train_rows == 0:
            raise InputError(f"{origin}: no rows; check the input and the split fractions")
        self._raise_on_bad_labels(row, origin)
        if row["__positives"] in (0, self.train_rows):
            raise InputError(f"{origin}: label column {self.schema.label!r} has a single class; a CTR label needs both")
        for name, kind in self.schema.kinds.items():
            present = row[f"{name}.present"]
            if present == 0:
                raise InputError(f"{origin}: column {name!r} has no values (all missing); drop it with schema.drop")
            stats = {"coverage": present / self.train_rows}
            if kind == "numeric":
                stats |= {k: float(row[f"{name}.{k}"] or 0.0) for k in ("mean", "std", "min", "max")}
            self.stats[name] = stats

    def _fit_edges(self, train: pl.LazyFrame) -> None:
        numeric = [n for n, k in self.schema.kinds.items() if k == "numeric" and not self._uses_vocab(n)]
        if not numeric:
            return
        every = max(1, self.train_rows // self.params.quantile_sample_rows)
        sample = train.select(numeric).with_row_index("__i").filter(pl.col("__i") % every == 0).collect(engine="streaming")
        for name in numeric:
            values = sample[name].drop_nulls().cast(pl.Float64).to_numpy()
            self.edges[name] = quantile_edges(values, self.params.numeric_bins).tolist() if values.size else []

    # -- transform --------------------------------------------------------------------------------
    # Lookups are left joins against the vocabularies: polars streams a join's probe side, while
    # replace_strict with a large mapping holds its whole output in memory.
    def _join_ids(self, frame: pl.LazyFrame, token: pl.Expr, vocab_name: str) -> pl.LazyFrame:
        vocab = self.vocabs[vocab_name]
        tok, ids = f"__tok_{vocab_name}", f"__id_{vocab_name}"
        table = vocab.lazy().select(pl.col("value"), pl.col("id").alias(ids))
        frame = frame.with_columns(token.cast(vocab["value"].dtype, strict=False).alias(tok))
        return frame.join(table, left_on=tok, right_on="value", how="left", maintain_order="left").drop(tok)

    def _ids(self, vocab_name: str) -> pl.Expr:
        return pl.col(f"__id_{vocab_name}").fill_null(OOV_ID)

    def _code(self, name: str) -> pl.Expr:
        kind = self.schema.kinds[name]
        raw = pl.col(name)
        if kind == "multi":
            elements = self._elements(name)
            vocab = self.vocabs[name]
            ids = elements.list.eval(pl.element().replace_strict(vocab["value"], vocab["id"], default=OOV_ID, return_dtype=pl.Int32))
            return pl.when(elements.list.len() > 0).then(ids).otherwise(pl.lit([MISSING_ID], dtype=pl.List(pl.Int32)))
        if kind == "numeric" and not self._uses_vocab(name):
            v = raw.cast(pl.Float64)
            bucket = pl.sum_horizontal([(v > e).cast(pl.Int32) for e in self.edges[name]] or [pl.lit(0, pl.Int32)])
            code = bucket + FIRST_VALUE_ID
        else:
            code = self._ids(name)
        return pl.when(raw.is_null()).then(pl.lit(MISSING_ID, pl.Int32)).otherwise(code).cast(pl.Int32)

    def transform(self, frame: pl.LazyFrame, require_label: bool = True) -> pl.LazyFrame:
        """Encode a raw frame: label as Int8, ids as Int32, numeric values as standardised Float32.

        With `require_label=False` (scoring new data) a frame without the label column is encoded without it.
        """
        if not self.stats:
            raise RuntimeError("Encoder.transform called before fit")
        frame = self._nan_to_null(frame)
        self._raw_dtypes = frame.collect_schema()
        for name, kind in self.schema.kinds.items():
            if kind == "multi":
                frame = self._join_ids(frame, self._set_token(name), name + SET_SUFFIX)
            elif self._uses_vocab(name):
                frame = self._join_ids(frame, self._token(name), name)
        has_label = require_label or self.schema.label in frame.collect_schema()
        exprs = [self.schema.label_expr()] if has_label else []
        for name, kind in self.schema.kinds.items():
            exprs.append(self._code(name).alias(name))
            if kind == "numeric":
                s = self.stats[name]
                scale = s["std"] if s["std"] > 0 else 1.0
                value = ((pl.col(name).cast(pl.Float64) - s["mean"]) / scale).fill_null(0.0).cast(pl.Float32)
                exprs.append(value.alias(name + VALUE_SUFFIX))
            elif kind == "multi":
                missing = self._elements(name).list.len().fill_null(0) == 0
                code = pl.when(missing).then(pl.lit(MISSING_ID, pl.Int32)).otherwise(self._ids(name + SET_SUFFIX))
                exprs.append(code.alias(name + SET_SUFFIX))
        return frame.select(exprs)

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
            vocab.write_parquet(directory / "vocab" / f"{quote(name, safe='')}.parquet")
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
        encoder.vocabs = {unquote(p.stem): pl.read_parquet(p) for p in sorted((directory / "vocab").glob("*.parquet"))}
        return encoder
