import numpy as np
import pytest
from sklearn.metrics import mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.metrics.cluster import expected_mutual_information as sklearn_emi

from features.information import chi2_pvalue, entropy, expected_mutual_information, mutual_information


def _table(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.bincount(x * 2 + y, minlength=2 * (x.max() + 1)).reshape(-1, 2)


@pytest.mark.parametrize(("k", "n", "p"), [(2, 500, 0.3), (40, 3000, 0.2), (700, 5000, 0.26), (3000, 20000, 0.05)])
def test_mi_and_expected_mi_match_sklearn(k, n, p):
    rng = np.random.default_rng(k)
    x = rng.integers(0, k, n)
    y = (rng.random(n) < p).astype(np.int64)
    table = _table(x, y)
    assert mutual_information(table) == pytest.approx(mutual_info_score(x, y), abs=1e-12)
    exact = sklearn_emi(contingency_matrix(x, y, sparse=True), n)
    assert expected_mutual_information(table.sum(axis=1), table.sum(axis=0)) == pytest.approx(exact, rel=1e-9)


def test_expected_mi_large_counts_use_accurate_expansion():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, 100_000)  # every value seen ~5000 times: the expansion path
    y = (rng.random(100_000) < 0.3).astype(np.int64)
    table = _table(x, y)
    exact = sklearn_emi(contingency_matrix(x, y, sparse=True), 100_000)
    assert expected_mutual_information(table.sum(axis=1), table.sum(axis=0)) == pytest.approx(exact, rel=1e-3)


def test_expected_mi_tracks_the_cardinality_bias_of_noise():
    # Pure noise: plain MI grows with cardinality, MI - E[I] stays near zero.
    rng = np.random.default_rng(1)
    n = 50_000
    y = (rng.random(n) < 0.25).astype(np.int64)
    plain, adjusted = [], []
    for k in (2, 100, 5_000, 40_000):
        table = _table(rng.integers(0, k, n), y)
        mi = mutual_information(table)
        plain.append(mi)
        adjusted.append(mi - expected_mutual_information(table.sum(axis=1), table.sum(axis=0)))
    assert plain == sorted(plain) and plain[-1] > 100 * plain[0]
    assert max(abs(a) for a in adjusted) < 0.1 * plain[-1]


def test_entropy_and_chi2():
    assert entropy(np.array([5, 5])) == pytest.approx(np.log(2))
    assert entropy(np.array([0, 7])) == 0.0
    assert chi2_pvalue(0.0, 1000, 10, 2) == pytest.approx(1.0)
    assert chi2_pvalue(0.05, 10_000, 10, 2) < 1e-100


@pytest.mark.parametrize(
    ("rows", "levels", "rate"),
    [
        (20_000, 60, 0.01),  # a low click rate: values seen hundreds of times hold a few clicks (the exact path, not the expansion)
        (20_000, 8_000, 0.05),  # thousands of values seen a few times: the positives' sum to n1 takes most of the spread
        (20_000, 5, 0.2),  # few dense values: the chi-square limit
    ],
)
def test_null_moments_and_tail_match_permutations_of_the_labels(rows, levels, rate):
    from features.information import null_moments, null_upper_tail

    rng = np.random.default_rng(levels)
    x = np.unique(rng.integers(0, levels, rows), return_inverse=True)[1]
    y = (np.arange(rows) < round(rate * rows)).astype(np.int64)
    counts = np.bincount(x)
    mean, sd = null_moments(counts, np.bincount(y))
    draws = []
    for _ in range(1000):
        positives = np.bincount(x, weights=rng.permutation(y), minlength=counts.size)
        draws.append(mutual_information(np.column_stack([counts - positives, positives])))
    draws = np.asarray(draws)
    error = 4 * draws.std(ddof=1) / np.sqrt(draws.size)  # four Monte Carlo standard errors
    assert mean == pytest.approx(draws.mean(), abs=error) and sd == pytest.approx(draws.std(ddof=1), rel=0.1)
    p_values = np.array([null_upper_tail(d, mean, sd) for d in draws])
    assert 0.025 < (p_values < 0.05).mean() < 0.08  # calibrated: 5 % of noise below 0.05 (binomial sd 0.7 %)
