"""Exact moments of float64 values: count, sum, sum of squares, min and max, mergeable in any order.

The encoder standardises numeric fields by the train split's mean and sd. Summed in floating point, those depend
on the order and grouping of the additions, so a split counted in parts (Ray tasks over shards, `pipeline.ray_engine`)
would give other last bits than one pass. Here the sums are exact: each value is m·2^(e-53) with an integer mantissa
|m| < 2^53 (`numpy.frexp`); m is cut into 14-bit limbs, and per exponent the limbs (for the sum) and the limb
products (for the sum of squares) are added with `numpy.bincount`, whose float64 sums of integers stay exact while
below 2^53 (at most 2^22 values per call). The per-exponent totals become one Python integer each for Σv and
Σv² at a fixed binary scale. Integers add exactly, so any split into parts gives the same totals, and the mean and
the variance are the correctly rounded values of the exact rationals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LIMB = 14
_LIMBS = 4  # 4 x 14 = 56 bits >= a 53-bit mantissa
_CHUNK = 1 << 18  # cache-sized; exactness needs < 2^22 values per call (limb-product sums < 2^30 each)
_EXP_OFFSET = 1074  # frexp exponents of finite float64 lie in [-1073, 1024]
_BINS = _EXP_OFFSET + 1025
_SCALE = _EXP_OFFSET + 53  # Σv = sum_units / 2^_SCALE, Σv² = square_units / 2^(2 * _SCALE)


@dataclass
class Moments:
    """Count, exact Σv and Σv² (integers at a fixed binary scale), min and max of the values seen."""

    count: int = 0
    sum_units: int = 0
    square_units: int = 0
    low: float = math.inf
    high: float = -math.inf

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """The moments of finite float64 values (no NaN, no infinities)."""
        out = cls()
        for start in range(0, values.size, _CHUNK):
            out.merge(_chunk(np.ascontiguousarray(values[start : start + _CHUNK], dtype=np.float64)))
        return out

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


def _chunk(values: np.ndarray) -> Moments:
    if values.size == 0:
        return Moments()
    mantissa, exponent = np.frexp(values)
    units = (mantissa * 2.0**53).astype(np.int64)  # exact: |mantissa| < 1 has at most 53 significant bits
    index = exponent + _EXP_OFFSET
    # units = sum of limb_i 2^(14 i): the lower limbs masked (0 .. 2^14 - 1), the top one the signed rest (|.| <= 2^11)
    limbs = [((units >> (_LIMB * i)) & ((1 << _LIMB) - 1)).astype(np.int32) for i in range(_LIMBS - 1)]
    limbs.append((units >> (_LIMB * (_LIMBS - 1))).astype(np.int32))
    sums = [np.bincount(index, weights=limb, minlength=_BINS) for limb in limbs]
    products = []
    for k in range(2 * _LIMBS - 1):
        terms = sum(limbs[i] * limbs[k - i] for i in range(max(0, k - _LIMBS + 1), min(k, _LIMBS - 1) + 1))
        products.append(np.bincount(index, weights=terms, minlength=_BINS))
    sum_units = square_units = 0
    for b in np.flatnonzero(np.bincount(index, minlength=_BINS)):
        shift = int(b)  # value units are 2^(e - 53) = 2^(b - _SCALE): at scale 2^_SCALE, 2^b
        sum_units += sum(int(s[b]) << (_LIMB * i) for i, s in enumerate(sums)) << shift
        square_units += sum(int(p[b]) << (_LIMB * k) for k, p in enumerate(products)) << (2 * shift)
    return Moments(int(values.size), sum_units, square_units, float(values.min()), float(values.max()))
