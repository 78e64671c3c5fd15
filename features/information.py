"""Information measures computed from contingency counts (natural logs, nats).

Everything here takes counts, never rows, so it is cheap after one counting
pass and works on counts merged across chunks or machines.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

# Hypergeometric terms further than this many standard deviations from the mean are dropped
# (their total probability is far below float precision).
_TAIL_SD = 9.0
# Values seen more often than this use the second-order expansion of their expected contribution.
_EXACT_MAX_COUNT = 256


def _xlogx(x: np.ndarray) -> float:
    """Sum of x·ln(x) over non-negative counts. Counts of 0 and 1 add nothing (0·ln 0 = 1·ln 1 = 0), so only the
    larger ones are taken: a sparse cross's dense table is mostly zeros."""
    x = np.asarray(x).ravel()
    x = x[x > 1].astype(np.float64, copy=False)
    return float(np.dot(x, np.log(x)))


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy of the distribution given by `counts`."""
    n = float(counts.sum())
    return 0.0 if n == 0 else np.log(n) - _xlogx(counts) / n


def mutual_information_and_entropy(table: np.ndarray) -> tuple[float, float]:
    """Plug-in I(X;Y) and H(X) of a (values x 2) count table, sharing the work."""
    values = table[:, 0] + table[:, 1]
    n = float(values.sum())
    if n == 0:
        return 0.0, 0.0
    x_log_x = _xlogx(values)
    mi = (_xlogx(table) - x_log_x - _xlogx(table.sum(axis=0)) + n * np.log(n)) / n
    return max(mi, 0.0), np.log(n) - x_log_x / n


def mutual_information(table: np.ndarray) -> float:
    """Plug-in I(X;Y) of a (values x classes) count table."""
    return mutual_information_of_counts(table, table.sum(axis=1), table.sum(axis=0))


def mutual_information_of_counts(joint: np.ndarray, left: np.ndarray, right: np.ndarray) -> float:
    """Plug-in I(X;Y) from the counts of the (x, y) pairs, of x and of y, each given as any array holding at least
    its nonzero counts (zeros add nothing): a sparse cross needs no dense table."""
    n = float(np.sum(left))
    if n == 0:
        return 0.0
    mi = (_xlogx(joint) - _xlogx(left) - _xlogx(right) + n * np.log(n)) / n
    return max(mi, 0.0)


def _xlogy_over(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x * log(x / y) with 0 log 0 = 0, elementwise."""
    safe = np.where(x > 0, x, 1.0)
    return np.where(x > 0, x * np.log(safe / y), 0.0)


def null_moments(value_counts: np.ndarray, class_counts: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of I(X;Y) for a binary Y independent of X, given both marginals.

    Under the permutation (hypergeometric) null, a value seen `a` times holds
    k positives with k ~ Hypergeometric(N, n1, a), and contributes
    f(k) = [k log(Nk / (a n1)) + (a-k) log(N(a-k) / (a n0))] / N to I. The mean is exact: it
    is the correction of adjusted mutual information (Vinh, Epps and Bailey,
    2010). The values' terms are dependent, as their positives add up to n1; the
    variance takes that in two parts. Its part linear in the counts: the sum of
    the per-value variances less (Σ Cov(f, k))² / Σ Var(k), the variance of Σ f
    given Σ k (as for a normal pair), which is most of the dependence where counts
    are small and f is nearly linear in k (thousands of values seen a few times).
    Its quadratic part, where counts are large: rescaled by the factor that is
    exact in the chi-square limit (the per-value variances sum to 2·Σ(1 - a/N)²
    there, the total to 2(m - 1)).
    Values sharing a count contribute identically, so the sums run over distinct
    counts. A value whose expected count of the rarer class passes _EXACT_MAX_COUNT
    takes the chi-square expansion, (N-a) / (2N(N-1)) per value, whose relative
    error falls with that count (not with a alone: at a 1 % click rate a value seen
    a thousand times holds ten clicks, far from the limit).
    """
    b = np.asarray(class_counts, dtype=np.float64)
    b = b[b > 0]
    if b.size > 2:
        raise ValueError("null_moments supports a binary label only")
    present = np.asarray(value_counts, dtype=np.int64)
    present = present[present > 0]
    if present.size <= 1 or b.size <= 1:
        return 0.0, 0.0
    n0, n1 = b
    n = n0 + n1
    of_count = np.bincount(present)
    a_values = np.flatnonzero(of_count)
    multiplicity = of_count[a_values].astype(np.float64)
    # Var(k) of each value's positives, hypergeometric: a p q (N - a) / (N - 1)
    var_k = a_values * (n1 / n) * (n0 / n) * np.maximum(n - a_values, 0) / (n - 1)
    big = a_values * min(n0, n1) / n > _EXACT_MAX_COUNT
    approx = (n - a_values[big]) / (2.0 * n * (n - 1))
    mean = float(np.dot(multiplicity[big], approx))
    var = float(np.dot(multiplicity[big], 2.0 * approx**2))
    covariance = 0.0  # Σ Cov(f, k): nil to leading order in the chi-square limit
    a = a_values[~big].astype(np.float64)
    mult = multiplicity[~big]
    if a.size:
        # k (positives among a draws) ranges over the support, trimmed to mean +- _TAIL_SD sd.
        centre = a * n1 / n
        spread = np.sqrt(a * (n1 / n) * (n0 / n) * np.maximum(n - a, 0) / (n - 1))
        lo = np.maximum(np.maximum(0.0, a - n0), np.floor(centre - _TAIL_SD * spread - 1))
        hi = np.minimum(np.minimum(a, n1), np.ceil(centre + _TAIL_SD * spread + 1))
        width = (hi - lo + 1).astype(np.int64)
        owner = np.repeat(np.arange(a.size), width)
        k = lo[owner] + (np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width))
        ak = a[owner]
        log_pmf = (
            gammaln(n1 + 1)
            + gammaln(n0 + 1)
            - gammaln(n + 1)
            + gammaln(ak + 1)
            + gammaln(n - ak + 1)
            - gammaln(k + 1)
            - gammaln(n1 - k + 1)
            - gammaln(ak - k + 1)
            - gammaln(n0 - ak + k + 1)
        )
        pmf = np.exp(log_pmf)
        term = (_xlogy_over(k, ak * n1 / n) + _xlogy_over(ak - k, ak * n0 / n)) / n
        first = np.bincount(owner, weights=pmf * term, minlength=a.size)
        second = np.bincount(owner, weights=pmf * term**2, minlength=a.size)
        cross = np.bincount(owner, weights=pmf * term * (k - centre[owner]), minlength=a.size)  # Cov(f, k)
        mean += float(np.dot(mult, first))
        var += float(np.dot(mult, np.maximum(second - first**2, 0.0)))
        covariance = float(np.dot(mult, cross))
    total_var_k = float(np.dot(multiplicity, var_k))
    if total_var_k > 0:
        var = max(var - covariance**2 / total_var_k, 0.0)
    dependence = (present.size - 1) / float(np.dot(multiplicity, (1.0 - a_values / n) ** 2))
    return max(mean, 0.0), float(np.sqrt(var * dependence))


def expected_mutual_information(value_counts: np.ndarray, class_counts: np.ndarray) -> float:
    """E[I(X;Y)] for a binary Y independent of X given both marginals (see `null_moments`)."""
    return null_moments(value_counts, class_counts)[0]


def null_upper_tail(mi: float, mean: float, sd: float) -> float:
    """P(I >= mi) under the permutation null, from a gamma law matched to the null's exact mean and sd: I is a sum of
    non-negative terms (2N·I is chi-square with (values − 1) degrees of freedom in the large-count limit, which this
    gamma equals), so a normal tail would be far too liberal for few values. 1 when the null has no spread."""
    from scipy.special import gammaincc

    if sd <= 0 or mean <= 0:
        return 1.0
    shape, scale = (mean / sd) ** 2, sd * sd / mean
    return float(gammaincc(shape, max(mi, 0.0) / scale))


def chi2_pvalue(mi: float, rows: float, value_levels: int, class_levels: int) -> float:
    """P-value of the G-test: 2·N·I is chi-square with (values-1)(classes-1) df under independence."""
    from scipy.special import chdtrc  # chi2.sf itself: scipy.stats would add most of a second of imports to the rank CLI

    df = max((value_levels - 1) * (class_levels - 1), 1)
    return float(chdtrc(df, 2.0 * rows * mi))
