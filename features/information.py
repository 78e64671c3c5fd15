"""Information measures computed from contingency counts (natural logs, nats).

Everything here takes counts, never rows, so it is cheap after one counting
pass and works on counts merged across chunks or machines.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln
from scipy.stats import chi2

# Hypergeometric terms further than this many standard deviations from the mean are dropped
# (their total probability is far below float precision).
_TAIL_SD = 9.0
# Values seen more often than this use the second-order expansion of their expected contribution.
_EXACT_MAX_COUNT = 512


def _xlogx(x: np.ndarray) -> float:
    x = x[x > 0].astype(np.float64)
    return float(np.sum(x * np.log(x)))


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy of the distribution given by `counts`."""
    n = float(counts.sum())
    return 0.0 if n == 0 else np.log(n) - _xlogx(counts) / n


def mutual_information(table: np.ndarray) -> float:
    """Plug-in I(X;Y) of a (values x classes) count table."""
    n = float(table.sum())
    if n == 0:
        return 0.0
    mi = (_xlogx(table) - _xlogx(table.sum(axis=1)) - _xlogx(table.sum(axis=0)) + n * np.log(n)) / n
    return max(mi, 0.0)


def expected_mutual_information(value_counts: np.ndarray, class_counts: np.ndarray) -> float:
    """E[I(X;Y)] when X and Y are independent given both marginals (hypergeometric model).

    This is the correction of adjusted mutual information (Vinh, Epps and
    Bailey, 2010). Values sharing the same count contribute identically, so the
    sum runs over distinct counts, which keeps a million-value Zipf feature cheap.
    """
    # Counts of counts: how many values were seen exactly a times, for each a.
    of_count = np.bincount(np.asarray(value_counts, dtype=np.int64)[value_counts > 0])
    a_values = np.flatnonzero(of_count)
    multiplicity = of_count[a_values]
    b = class_counts[class_counts > 0].astype(np.float64)
    n = float(b.sum())
    if np.count_nonzero(value_counts) <= 1 or b.size <= 1:
        return 0.0
    # Values seen often contribute (C-1)(N-a) / (2N(N-1)) each up to O(1/a) relative error (the
    # chi-square expansion); the exact hypergeometric sum is kept for the counts where it matters.
    big = a_values > _EXACT_MAX_COUNT
    a_big = a_values[big].astype(np.float64)
    total = float(np.sum(multiplicity[big] * (b.size - 1) * (n - a_big) / (2.0 * n * (n - 1))))
    a_values, multiplicity = a_values[~big], multiplicity[~big]
    a = a_values.astype(np.float64)
    log_a_terms = gammaln(a + 1) + gammaln(n - a + 1)
    for bj in b:
        # k ~ Hypergeometric(population n, bj successes, a draws); k = 0 contributes nothing.
        mean = a * bj / n
        sd = np.sqrt(a * (bj / n) * (1 - bj / n) * np.maximum(n - a, 0) / max(n - 1, 1))
        lo = np.maximum(np.maximum(1.0, a + bj - n), np.floor(mean - _TAIL_SD * sd - 1))
        hi = np.minimum(np.minimum(a, bj), np.ceil(mean + _TAIL_SD * sd + 1))
        width = np.maximum(hi - lo + 1, 0).astype(np.int64)
        if width.sum() == 0:
            continue
        owner = np.repeat(np.arange(a.size), width)
        k = lo[owner] + (np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width))
        ak = a[owner]
        log_pmf = (
            (gammaln(bj + 1) + gammaln(n - bj + 1) - gammaln(n + 1))
            + log_a_terms[owner]
            - gammaln(k + 1)
            - gammaln(bj - k + 1)
            - gammaln(ak - k + 1)
            - gammaln(n - bj - ak + k + 1)
        )
        term = np.exp(log_pmf) * (k / n) * np.log(n * k / (ak * bj))
        total += float(np.dot(term, multiplicity[owner]))
    return max(total, 0.0)


def chi2_pvalue(mi: float, rows: float, value_levels: int, class_levels: int) -> float:
    """P-value of the G-test: 2·N·I is chi-square with (values-1)(classes-1) df under independence."""
    df = max((value_levels - 1) * (class_levels - 1), 1)
    return float(chi2.sf(2.0 * rows * mi, df))
