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


def _random_conditions(frame: pl.LazyFrame, params: SplitParams, first_row: int) -> tuple[pl.LazyFrame, dict[str, pl.Expr]]:
    """`frame` with its rows' seeded position hash in `__u`, and each split's condition on it."""
    u = (pl.col("__u").hash(params.seed) % _BUCKETS).cast(pl.Float64) / _BUCKETS
    train_end = 1.0 - params.valid - params.test
    tagged = frame.with_row_index("__u", offset=first_row).with_columns(u.alias("__u"))
    conditions = {
        "train": pl.col("__u") < train_end,
        "valid": (pl.col("__u") >= train_end) & (pl.col("__u") < 1.0 - params.test),
        "test": pl.col("__u") >= 1.0 - params.test,
    }
    return tagged, {name: c for name, c in conditions.items() if name == "train" or getattr(params, name) > 0}


def random_split(frame: pl.LazyFrame, params: SplitParams, first_row: int = 0) -> dict[str, pl.LazyFrame]:
    """Assign each row by a seeded hash of its position (`frame` being a part whose first row is the input's
    `first_row`): deterministic, streamable, and the same whether the input is split whole or in parts."""
    tagged, conditions = _random_conditions(frame, params, first_row)
    return {name: tagged.filter(condition).drop("__u") for name, condition in conditions.items()}


def time_cuts(frame: pl.LazyFrame, params: SplitParams) -> tuple:
    """The time column's values where valid and test begin: its (1 - valid - test) and (1 - test) quantiles over
    the whole input."""
    col = params.time_column
    if col is None:
        raise InputError("split.method is 'time' but split.time_column is not set; name the timestamp column")
    a, b = (
        frame.select(
            _time(frame, col).quantile(1.0 - params.valid - params.test, "lower").alias("a"),
            _time(frame, col).quantile(1.0 - params.test, "lower").alias("b"),
        )
        .collect(engine="streaming")
        .row(0)
    )
    if a is None:
        raise InputError(f"split.time_column {col!r} has no values; name a filled timestamp column or use split.method: random")
    if params.valid > 0 and params.test > 0 and a == b:  # valid holds a <= t < b
        raise InputError(
            f"split.time_column {col!r}: the valid split would be empty (the cuts at {1.0 - params.valid - params.test:g} and "
            f"{1.0 - params.test:g} of its rows both fall on {a}, which holds that share of the rows or more, or the times "
            "are too few); widen split.valid, use a finer time column, or split.method: random"
        )
    return a, b


def _time(frame: pl.LazyFrame, column: str) -> pl.Expr:
    """The time column, a float one's NaN read as missing (NaN sorts above every time: those rows went to test)."""
    return pl.col(column).fill_nan(None) if frame.collect_schema()[column].is_float() else pl.col(column)


def _time_conditions(frame: pl.LazyFrame, params: SplitParams, cuts: tuple | None) -> dict[str, pl.Expr]:
    a, b = cuts if cuts is not None else time_cuts(frame, params)
    t = _time(frame, params.time_column)
    if params.test > 0 and params.valid > 0:
        return {"train": t.is_null() | (t < a), "valid": (t >= a) & (t < b), "test": t >= b}
    if params.test > 0:
        return {"train": t.is_null() | (t < b), "test": t >= b}
    if params.valid > 0:
        return {"train": t.is_null() | (t < a), "valid": t >= a}
    return {"train": pl.lit(True)}


def time_split(frame: pl.LazyFrame, params: SplitParams, cuts: tuple | None = None) -> dict[str, pl.LazyFrame]:
    """Oldest rows to train, then valid, newest to test, cut at quantiles of the time column (`time_cuts`, of the
    whole input when `frame` is a part of it).

    Rows sharing a timestamp stay together; rows with no timestamp go to train.
    """
    return {name: frame.filter(condition) for name, condition in _time_conditions(frame, params, cuts).items()}


def check_fractions(params: SplitParams) -> None:
    """Raise InputError unless the valid and test fractions leave rows for train."""
    if not 0 <= params.valid < 1 or not 0 <= params.test < 1 or params.valid + params.test >= 1:
        raise InputError(f"split fractions valid={params.valid}, test={params.test} must be >= 0 and sum below 1")


def split_frame(frame: pl.LazyFrame, params: SplitParams, first_row: int = 0, cuts: tuple | None = None) -> dict[str, pl.LazyFrame]:
    """Split one frame (or a part of it that starts at its row `first_row`) into train/valid/test with the configured
    method; `cuts` are the whole frame's `time_cuts` (computed here when None)."""
    check_fractions(params)
    if params.method == "time":
        return time_split(frame, params, cuts)
    return random_split(frame, params, first_row)


def carved(given: set[str], params: SplitParams) -> SplitParams | None:
    """How a missing valid or test split is carved out of the given train split at random (None: nothing missing)."""
    missing = [name for name in ("valid", "test") if name not in given and getattr(params, name) > 0]
    if not missing:
        return None
    return SplitParams(
        method="random",
        valid=params.valid if "valid" in missing else 0.0,
        test=params.test if "test" in missing else 0.0,
        seed=params.seed,
    )


def source_splits(
    source: str, frame: pl.LazyFrame, given: set[str], params: SplitParams, first_row: int = 0, cuts: tuple | None = None
) -> dict[str, pl.LazyFrame]:
    """The splits that rows of one input (`source`: 'all', or a given split file 'train', 'valid', 'test') go to,
    `frame` being that input or a part of it starting at its row `first_row`; `given` names the split files."""
    if source == "all":
        return split_frame(frame, params, first_row, cuts)
    carve = carved(given, params) if source == "train" else None
    return random_split(frame, carve, first_row) if carve is not None else {source: frame}


def complete_splits(given: dict[str, pl.LazyFrame], params: SplitParams) -> dict[str, pl.LazyFrame]:
    """Use the given split files; carve a missing valid or test split out of train at random."""
    out: dict[str, pl.LazyFrame] = {}
    for source, frame in given.items():
        out |= source_splits(source, frame, set(given), params)
    return out


SPLIT_TAG = "__split"


def carved_rows(
    source: str, frame: pl.LazyFrame, given: set[str], params: SplitParams, cuts: tuple | None = None
) -> tuple[pl.LazyFrame, list[str]] | None:
    """The rows of one whole input (`source_splits`' arguments) that go to a split other than train, with that split's
    name in column SPLIT_TAG, in input order, and those splits' names: what one read can stage for every later pass
    over valid and test (None when nothing but train comes out of this input)."""
    carve = carved(given, params) if source == "train" else None
    if source == "all" and params.method == "time":
        conditions, tagged = _time_conditions(frame, params, cuts), frame
    elif source == "all" or carve is not None:
        tagged, conditions = _random_conditions(frame, carve or params, 0)
    else:
        return None
    others = {name: c for name, c in conditions.items() if name != "train"}
    if not others:
        return None
    tag = pl.lit(None, pl.String)
    for name, condition in reversed(others.items()):
        tag = pl.when(condition).then(pl.lit(name)).otherwise(tag)
    rows = tagged.with_columns(tag.alias(SPLIT_TAG)).filter(pl.col(SPLIT_TAG).is_not_null()).drop("__u", strict=False)
    return rows, list(others)
