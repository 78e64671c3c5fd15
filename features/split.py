"""Train/valid/test splits: given as files, or random by a seeded row hash, or by time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from featuremap.errors import InputError

SplitMethod = Literal["random", "time"]
_BUCKETS = 1_000_000


@dataclass(frozen=True)
class SplitParams:
    """Fractions of rows for valid and test (train gets the rest), how to draw them, and the seed."""

    method: SplitMethod = "random"
    valid: float = 0.1
    test: float = 0.1
    time_column: str | None = None
    seed: int = 2021


def random_split(frame: pl.LazyFrame, params: SplitParams) -> dict[str, pl.LazyFrame]:
    """Assign each row by a seeded hash of its position: deterministic and streamable."""
    u = (pl.col("__u").hash(params.seed) % _BUCKETS).cast(pl.Float64) / _BUCKETS
    train_end = 1.0 - params.valid - params.test
    tagged = frame.with_row_index("__u").with_columns(u.alias("__u"))
    parts = {
        "train": tagged.filter(pl.col("__u") < train_end),
        "valid": tagged.filter((pl.col("__u") >= train_end) & (pl.col("__u") < 1.0 - params.test)),
        "test": tagged.filter(pl.col("__u") >= 1.0 - params.test),
    }
    return {name: part.drop("__u") for name, part in parts.items() if name == "train" or getattr(params, name) > 0}


def time_split(frame: pl.LazyFrame, params: SplitParams) -> dict[str, pl.LazyFrame]:
    """Oldest rows to train, then valid, newest to test, cut at quantiles of the time column.

    Rows sharing a timestamp stay together; rows with no timestamp go to train.
    """
    col = params.time_column
    if col is None:
        raise InputError("split.method is 'time' but split.time_column is not set; name the timestamp column")
    cuts = frame.select(
        pl.col(col).quantile(1.0 - params.valid - params.test, "lower").alias("a"),
        pl.col(col).quantile(1.0 - params.test, "lower").alias("b"),
    ).collect(engine="streaming")
    a, b = cuts.row(0)
    t = pl.col(col)
    if params.test > 0 and params.valid > 0:
        bounds = {"train": t.is_null() | (t < a), "valid": (t >= a) & (t < b), "test": t >= b}
    elif params.test > 0:
        bounds = {"train": t.is_null() | (t < b), "test": t >= b}
    elif params.valid > 0:
        bounds = {"train": t.is_null() | (t < a), "valid": t >= a}
    else:
        bounds = {"train": pl.lit(True)}
    return {name: frame.filter(condition) for name, condition in bounds.items()}


SPLITTERS = {"random": random_split, "time": time_split}


def split_frame(frame: pl.LazyFrame, params: SplitParams) -> dict[str, pl.LazyFrame]:
    """Split one frame into train/valid/test with the configured method."""
    if not 0 <= params.valid < 1 or not 0 <= params.test < 1 or params.valid + params.test >= 1:
        raise InputError(f"split fractions valid={params.valid}, test={params.test} must be >= 0 and sum below 1")
    return SPLITTERS[params.method](frame, params)


def complete_splits(given: dict[str, pl.LazyFrame], params: SplitParams) -> dict[str, pl.LazyFrame]:
    """Use the given split files; carve a missing valid or test split out of train at random."""
    missing = [name for name in ("valid", "test") if name not in given and getattr(params, name) > 0]
    if not missing:
        return given
    carve = SplitParams(
        method="random",
        valid=params.valid if "valid" in missing else 0.0,
        test=params.test if "test" in missing else 0.0,
        seed=params.seed,
    )
    carved = random_split(given["train"], carve)
    return {**carved, **{k: v for k, v in given.items() if k != "train"}}
