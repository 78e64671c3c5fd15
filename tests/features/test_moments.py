"""Exact moments: the mean and sd are the correctly rounded values of the exact rationals, whatever the parts."""

from fractions import Fraction

import numpy as np
import polars as pl
import pytest

from features.moments import Moments, exponent_sums


def _exact(values: np.ndarray) -> tuple[float, float]:
    n, total = len(values), sum(map(Fraction, values.tolist()))
    squares = sum(Fraction(v) ** 2 for v in values.tolist())
    return float(total / n), float((n * squares - total * total) / (n * (n - 1))) ** 0.5


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).normal(3.0, 2.0, 20_001),
        np.random.default_rng(2).lognormal(0.0, 6.0, 5_000) * np.random.default_rng(3).choice([-1.0, 1.0], 5_000),
        np.array([1e-310, -3e-320, 5e-324, 5.0, 7.25, 2.0**52 + 1, 0.0, 8.0]),  # subnormals, a 53-bit integer, zero
        np.random.default_rng(4).integers(0, 10**9, 30_000).astype(np.float64),
    ],
)
def test_moments_are_exact_and_do_not_depend_on_the_parts(values):
    whole = Moments.of(values)
    mean, sd = _exact(values)
    assert whole.mean == mean
    assert whole.std == pytest.approx(sd, rel=1e-15)  # sqrt of the correctly rounded variance
    assert (whole.low, whole.high, whole.count) == (values.min(), values.max(), values.size)
    for cuts in (3, 7, 64):
        parts = Moments()
        for part in np.array_split(values[::-1], cuts):  # other parts, other order
            parts.merge(Moments.of(part))
        assert (parts.mean, parts.std, parts.low, parts.high) == (whole.mean, whole.std, whole.low, whole.high)


def test_floating_point_sums_depend_on_the_parts_and_exact_ones_do_not():
    # Why the sums are exact: the same values added in another order differ in their last bits.
    values = np.random.default_rng(5).lognormal(0.0, 4.0, 100_000)
    assert sum(values.tolist()) != sum(values[::-1].tolist())
    assert Moments.of(values).mean == Moments().merge(Moments.of(values[:12_345])).merge(Moments.of(values[12_345:])).mean


def test_values_near_the_largest_float_do_not_overflow():
    big = Moments.of(np.array([1.7e308, 1.7e308, 1.5e308]))
    assert big.mean == float((2 * Fraction(1.7e308) + Fraction(1.5e308)) / 3)  # a float sum would be inf
    assert big.std == pytest.approx(1.1547005383792516e307, rel=1e-12)


def test_no_values_and_one_value():
    assert (Moments().mean, Moments().std, Moments.of(np.array([2.5])).std) == (0.0, 0.0, 0.0)


def test_integer_columns_take_the_integer_route_with_the_same_result():
    values = np.random.default_rng(6).integers(-(2**40), 2**40, 10_000)
    as_int = Moments.from_sums(
        exponent_sums(pl.LazyFrame({"v": values}), "v").collect(), values.size, float(values.min()), float(values.max())
    )
    as_float = Moments.of(values.astype(np.float64))  # exact: |v| < 2^53
    assert (as_int.mean, as_int.std) == (as_float.mean, as_float.std)
    assert as_int.mean == float(Fraction(int(values.sum()), values.size))
