"""Exact moments of a float64 column: count, sum, sum of squares, min and max, mergeable in any order.

The encoder standardises numeric fields by the train split's mean and sd. Summed in floating point, those depend on
the order and grouping of the additions, so a split counted in parts (Ray tasks over shards, `pipeline.ray_engine`)
would give other last bits than one pass. Here the sums are exact, and computed by polars in the same streaming pass
as the rest of the encoder's counts: each nonzero float is ±m·2^(e-52), with its binary exponent e (floor(log2|v|),
corrected by one where the log rounds across a power of two) and its integer mantissa m = |v|·2^(52-e) < 2^53 (a
product with a power of two, so exact); per exponent polars adds the signed mantissas and, for the squares, h², h·l
and l² of m = h·2^27 + l, each in Int128 (no overflow below 2^70 rows). Integer columns are their own mantissas
(one group, exponent 52; UInt64, which may pass Int64, goes the float way) and skip the logs. The per-exponent
totals become one Python integer each for Σv and Σv² at a fixed binary scale. Integers add exactly, so any split into parts gives the same totals, and the mean and the
variance are the correctly rounded values of the exact rationals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

_SCALE = 1126  # the smallest unit, 2^(e - 52) at e = -1074 (the least subnormal): Σv = sum_units / 2^_SCALE
_LOW = 27  # m = h * 2^_LOW + l


def exponent_sums(frame: pl.LazyFrame, name: str) -> pl.LazyFrame:
    """Per binary exponent of column `name`'s finite nonzero values: the sum of their signed mantissas (`s`) and of
    h², h·l, l² of their mantissas (`hh`, `hl`, `ll`); `Moments.from_sums` folds them. Nulls, NaN, zeros and
    infinities add nothing (the caller counts values and rejects infinities)."""
    dtype = frame.collect_schema()[name]
    # Integers are their own mantissas at exponent 52 (units of 2^0): v = h 2^27 + l, 0 <= l < 2^27.
    if dtype.is_integer() and dtype != pl.UInt64:
        v = pl.col(name).cast(pl.Int64)
        high, low = v // (1 << _LOW), v % (1 << _LOW)  # |h| < 2^36: h·l and l² stay in Int64, only h² and the sums need Int128
        return frame.select(
            pl.lit(52, pl.Int32).alias("__e"),
            v.cast(pl.Int128).sum().alias("s"),
            (high.cast(pl.Int128) * high.cast(pl.Int128)).sum().alias("hh"),
            (high * low).cast(pl.Int128).sum().alias("hl"),
            (low * low).cast(pl.Int128).sum().alias("ll"),
        )
    a, guess = pl.col("__a"), pl.col("__g")
    tiny = guess < -900  # 2^(52 - guess) in two exact factors, as it passes 2^1023 near the subnormals
    scaled = pl.when(tiny).then(a * 2.0**600).otherwise(a) * pl.lit(2.0).pow(52 - guess - pl.when(tiny).then(600).otherwise(0))
    over, under = pl.col("__m") >= 2.0**53, pl.col("__m") < 2.0**52  # the guess floor(log2 |v|) is off by one at worst
    exponent = guess + over.cast(pl.Int32) - under.cast(pl.Int32)
    mantissa = pl.when(over).then(pl.col("__m") * 0.5).when(under).then(pl.col("__m") * 2.0).otherwise(pl.col("__m")).cast(pl.Int64)
    m = pl.col("__m")
    high, low = m // (1 << _LOW), m % (1 << _LOW)
    return (
        frame.select(pl.col(name).cast(pl.Float64).abs().alias("__a"), (pl.col(name).cast(pl.Float64) < 0).alias("__neg"))
        .filter(a.is_finite() & (a > 0))
        .with_columns(a.log(2).floor().cast(pl.Int32).alias("__g"))
        .with_columns(scaled.alias("__m"))
        .with_columns(exponent.alias("__e"), mantissa.alias("__m"))
        .group_by("__e")
        .agg(
            pl.when(pl.col("__neg")).then(-m).otherwise(m).cast(pl.Int128).sum().alias("s"),
            (high * high).cast(pl.Int128).sum().alias("hh"),
            (high * low).cast(pl.Int128).sum().alias("hl"),
            (low * low).cast(pl.Int128).sum().alias("ll"),
        )
    )


@dataclass
class Moments:
    """Count, exact Σv and Σv² (integers at a fixed binary scale), min and max of the values seen."""

    count: int = 0
    sum_units: int = 0
    square_units: int = 0
    low: float = math.inf
    high: float = -math.inf

    @classmethod
    def from_sums(cls, sums: pl.DataFrame, count: int, low: float | None, high: float | None) -> Moments:
        """The moments from `exponent_sums`'s result, with the column's count of values, min and max."""
        sum_units = square_units = 0
        for exponent, s, hh, hl, ll in sums.select("__e", "s", "hh", "hl", "ll").iter_rows():
            unit = exponent - 52 + _SCALE  # a mantissa unit is 2^(e - 52): 2^unit at scale 2^_SCALE
            sum_units += int(s) << unit
            square_units += ((int(hh) << (2 * _LOW)) + (int(hl) << (_LOW + 1)) + int(ll)) << (2 * unit)
        return cls(count, sum_units, square_units, math.inf if low is None else low, -math.inf if high is None else high)

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """The moments of finite float64 values."""
        column = pl.Series("v", values, dtype=pl.Float64)
        if column.is_empty():
            return cls()
        return cls.from_sums(exponent_sums(column.to_frame().lazy(), "v").collect(), column.len(), column.min(), column.max())

    def merge(self, other: Moments) -> Moments:
        """Add `other`'s values to these (exact: the result does not depend on how the values were parted)."""
        self.count += other.count
        self.sum_units += other.sum_units
        self.square_units += other.square_units
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        return self

    @property
    def mean(self) -> float:
        """The correctly rounded mean; 0.0 with no values."""
        return self.sum_units / (self.count << _SCALE) if self.count else 0.0

    @property
    def std(self) -> float:
        """The sample standard deviation (ddof 1) from the correctly rounded variance; 0.0 below two values."""
        if self.count < 2:
            return 0.0
        spread = self.count * self.square_units - self.sum_units * self.sum_units  # n Σv² - (Σv)², at scale 2^(2 _SCALE)
        scale = (self.count * (self.count - 1)) << (2 * _SCALE)
        try:
            return math.sqrt(spread / scale)
        except OverflowError:  # a variance past float64 (values near 1e300): the root of each side, still exact enough
            return math.isqrt(spread) / math.isqrt(scale)
