"""The config's data-side sections (input, schema, split, encoding, ranking); `pipeline.config` assembles the whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from features.settings import QualityParams, RankParams, SelectParams
from methods.base import Settings as Section  # one base for every section: unknown keys are errors, docstrings document


class JoinConfig(Section):
    """A side table left-joined onto the rows by a key column (e.g. MovieLens movies.csv on movieId)."""

    path: Path
    """The side table's file."""
    key: str
    """The key column, present in both."""
    format: Literal["csv", "parquet", "criteo", "libsvm"] | None = None
    """Its format; null: from the file name."""


class DataConfig(Section):
    """What to read and how: the input, its format and its label."""

    path: Path | list[Path] | None = None
    """File or directory (split files train/valid/test, or data files such as Criteo's day_*.gz), or a list of them read as one input (e.g. the daily partitions of a window); null: the built-in synthetic data."""
    format: Literal["criteo", "csv", "libsvm", "parquet"] | None = None
    """Null: from the file name (under any .gz/.bz2/.zst), or a .txt's or bare compressed file's first line."""
    label: str | None = None
    """The label column; null: the first of label, click, clicked, is_click, target, y."""
    label_threshold: float | None = None
    """Label = column >= threshold (e.g. rating >= 4)."""
    positive: list[str] | None = Field(None, min_length=1)
    """Text label value(s) that mean a click (every other value is 0); yes/no, true/false, 1/0, X/no_X are read without it. Quote it in YAML."""
    separator: str | None = Field(None, min_length=1, max_length=1)
    """CSV separator (tab: `tab`); null: `,`, or tab for .tsv, or the one a one-column header holds (said on stderr)."""
    null_values: list[str] = Field(default_factory=list)
    """CSV/TSV cell texts read as missing besides the empty cell (e.g. NA, NULL, \\N)."""
    text_columns: list[str] = Field(default_factory=list)
    """CSV/TSV columns read as text whatever their first 10,000 rows look like (an id of digits that holds letters later on)."""
    multi_separator: str = Field("|", min_length=1)
    """Separator inside multi-valued string fields."""
    joins: list[JoinConfig] = Field(default_factory=list)
    """Side tables left-joined before the schema is inferred: [{path, key, format}]."""
    libsvm_field_ranges: list[tuple[int, int]] | None = None
    """[start, end) index ranges, one per field, for variable-length libsvm rows."""
    synthetic_rows: int = Field(200_000, ge=1)
    """Rows of the built-in synthetic data (above 4 M rows, ingest writes them as parquet shards to its scratch and reads them out of core)."""
    synthetic_seed: int = Field(7, ge=0, lt=2**32)
    """Seed of the built-in synthetic data."""
    synthetic_kind: Literal["planted", "longtail"] = "planted"
    """The built-in data: planted (few planted effects among noise fields) or longtail (web-like fields of 10^5-10^7 Zipf values; data/README.md)."""

    @field_validator("path")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one path")
            return value[0] if len(value) == 1 else value
        return value

    @property
    def paths(self) -> list[Path]:
        """The input paths (none for the synthetic data)."""
        if self.path is None:
            return []
        return list(self.path) if isinstance(self.path, list) else [self.path]

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_values(cls, value: Any) -> Any:
        if value is None:
            return None
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values):
            raise ValueError("quote the value ('yes', 'true'): YAML reads a bare yes/no/true/false as a boolean")
        return [str(v) for v in values]

    @field_validator("separator", mode="before")
    @classmethod
    def _named_separator(cls, value: Any) -> Any:
        return {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(value, value) if isinstance(value, str) else value


class SchemaConfig(Section):
    """Overrides of the inferred column kinds."""

    categorical: list[str] = Field(default_factory=list)
    """Columns to treat as categorical."""
    numeric: list[str] = Field(default_factory=list)
    """Columns to treat as numeric."""
    multi: list[str] = Field(default_factory=list)
    """Columns to treat as multi-valued."""
    drop: list[str] = Field(default_factory=list)
    """Columns left out."""


class SplitConfig(Section):
    """How rows are split when the input is not given as split files."""

    method: Literal["random", "time"] = "random"
    """Random (seeded) or by `time_column`."""
    valid: float = Field(0.1, ge=0, lt=1)
    """Share of rows for validation."""
    test: float = Field(0.1, ge=0, lt=1)
    """Share of rows for test."""
    time_column: str | None = None
    """Required for `method: time`; never a feature."""
    seed: int = Field(2021, ge=0, lt=2**64)
    """Seed of the random split."""
    keep_raw_holdout: bool = True
    """Also keep the valid and test rows as read (ingest/holdout/), so that the promote stage can score the champion's package on them."""


class EncodeConfig(Section):
    """Vocabularies and numeric buckets, fit on train only."""

    min_count: int = Field(1, ge=1)
    """Values seen fewer times in train go to the field's OOV id."""
    numeric_bucketing: Literal["quantile", "log"] | None = None
    """Null: log for Criteo, quantile otherwise."""
    numeric_bins: int = Field(16, ge=2, le=1 << 16)
    """Quantile bins per numeric field."""
    quantile_sample_rows: int = Field(1_000_000, ge=1000)
    """At most this many train rows (every k-th) are sampled to fit the quantile edges and the numeric fields' mean and sd."""


QualityConfig = QualityParams  # the section is the quality report's own settings class


class RankConfig(RankParams):
    """Feature and pair ranking (docs/methods/ranking.md); the ranking's own settings are features/settings.py's."""

    batch_rows: int = Field(1 << 18, ge=1)
    """Rows per counting batch."""
    plot_top: int = Field(30, ge=1)
    """Features in ranking.png."""
    quality: QualityConfig = Field(default_factory=QualityConfig)
    """Data-quality flags."""
    select: SelectParams = Field(default_factory=SelectParams)
    """Which features go on to search and train (ranking.csv's `selected` and `reason`)."""
