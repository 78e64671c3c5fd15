"""Crossed feature pairs and OutRank's 3MR order, from an evenly spaced row sample of encoded ids.

Each side of a pair is capped to its most frequent values, and the cross is counted in one bincount
(or from its nonzero cells when its id space outgrows the sample): the label MI of the cross, its gain
over both sides, and the chance-corrected redundancy of the two sides feed pairs.csv and `mrmr_order`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from featuremap import FIRST_VALUE_ID
from features.information import (
    entropy,
    expected_mutual_information,
    mutual_information,
    mutual_information_of_counts,
    null_moments,
)


@dataclass
class PairStats:
    """One crossed pair; a row of pairs.csv."""

    feature_a: str
    feature_b: str
    cardinality: int
    mi_pair: float
    expected_mi_pair: float
    null_sd_pair: float
    gain: float
    redundancy: float
    redundancy_norm: float


def _capped(codes: np.ndarray, cap: int) -> np.ndarray:
    # Vocabulary ids are assigned most frequent first (after the reserved ids), so capping keeps the
    # top values; quantile bins (at most a few dozen) are never capped.
    return np.minimum(codes, cap).astype(np.int64)


def _value_counts(codes: np.ndarray, size: int) -> np.ndarray:
    """Counts of the ids in `codes` (all below `size`): the dense bincount when the id space is within a few times the
    rows, else only the nonzero counts (a sort), all the information sums need. A cross of two 1k-value fields has
    a million ids: on a small sample the dense tables, not the rows, would set the time."""
    if size <= 4 * codes.size:
        return np.bincount(codes, minlength=size)
    return np.unique(codes, return_counts=True)[1]


def pair_stats(sample: Mapping[str, np.ndarray], label: np.ndarray, pairs: list[tuple[str, str]], max_values: int) -> list[PairStats]:
    """Cross each pair on the sample: label MI of the cross, its gain over both sides, and redundancy.

    gain = adjusted I(A×B;Y) - adjusted I(A;Y) - adjusted I(B;Y) (interaction information, I(A;B|Y) - I(A;B)):
    positive for synergy (a pure interaction), and for two independent informative fields too (additive effects
    alone make it positive), negative for redundant pairs. redundancy_norm
    is I(A;B) beyond its chance level (A against a shuffled B), over
    min(H(A), H(B)) minus that level, like adjusted MI: ~0 for independent
    features whatever their cardinality, 1 for copies.
    """
    if not pairs:
        return []
    cap = max_values + FIRST_VALUE_ID
    y = label.astype(np.int64)
    classes = np.bincount(y, minlength=2)
    n = y.size
    used = sorted({name for pair in pairs for name in pair})
    capped = {name: _capped(sample[name], cap) for name in used}
    sizes = {name: int(codes.max()) + 1 for name, codes in capped.items()}
    adjusted: dict[str, float] = {}
    entropies: dict[str, float] = {}
    values: dict[str, np.ndarray] = {}
    for name, codes in capped.items():
        table = np.bincount(codes * 2 + y, minlength=2 * sizes[name]).reshape(-1, 2)
        values[name] = table.sum(axis=1)
        adjusted[name] = mutual_information(table) - expected_mutual_information(values[name], classes)
        entropies[name] = entropy(values[name])
    # One fixed shuffle gives each pair's chance level of feature-feature MI (same marginals, no link).
    shuffle = np.random.default_rng(0).permutation(n)
    shuffled = {name: capped[name][shuffle] for name in {b for _, b in pairs}}  # once per field, not per pair
    out = []
    for a, b in pairs:
        size = sizes[a] * sizes[b]
        cross = capped[a] * sizes[b] + capped[b]
        cells = _value_counts(cross, size)  # the cross's values (with zeros where dense)
        mi = mutual_information_of_counts(_value_counts(cross * 2 + y, 2 * size), cells, classes)
        expected, null_sd = null_moments(cells, classes)
        redundancy = mutual_information_of_counts(cells, values[a], values[b])
        chance = mutual_information_of_counts(_value_counts(capped[a] * sizes[b] + shuffled[b], size), values[a], values[b])
        ceiling = min(entropies[a], entropies[b]) - chance
        out.append(
            PairStats(
                feature_a=a,
                feature_b=b,
                cardinality=int(np.count_nonzero(cells)),
                mi_pair=mi,
                expected_mi_pair=expected,
                null_sd_pair=null_sd,
                gain=(mi - expected) - adjusted[a] - adjusted[b],
                redundancy=redundancy,
                redundancy_norm=min(max(redundancy - chance, 0.0) / ceiling, 1.0) if ceiling > 0 else 0.0,
            )
        )
    return out


def choose_pairs(ranked: list[str], budget: int) -> list[tuple[str, str]]:
    """All pairs if they fit the budget, else the pairs among the top-ranked features that do."""
    if budget <= 0:
        return []
    top = len(ranked)
    while top > 1 and top * (top - 1) // 2 > budget:
        top -= 1
    return list(combinations(ranked[:top], 2))


def mrmr_order(relevance: Mapping[str, float], pairs: list[PairStats], alpha: float, beta: float) -> list[str]:
    """OutRank's 3MR greedy order.

    Repeatedly pick the feature maximising relevance - alpha * median
    redundancy with those chosen + beta * median combined relevance with them.
    Relevance is the corrected label MI over H(Y)'s scale, redundancy the
    chance-corrected normalised feature-feature MI, combined relevance the
    pair's positive gain beyond its two singles. Pairs outside the budget count 0.
    """
    names = sorted(relevance)
    index = {name: i for i, name in enumerate(names)}
    size = len(names)
    redundancy = np.zeros((size, size))
    combined = np.zeros((size, size))
    for p in pairs:
        i, j = index[p.feature_a], index[p.feature_b]
        redundancy[i, j] = redundancy[j, i] = p.redundancy_norm
        combined[i, j] = combined[j, i] = max(p.gain, 0.0)
    scale = max(max(relevance.values(), default=0.0), 1e-12)
    rel = np.array([relevance[name] for name in names]) / scale
    remaining = list(range(size))
    chosen: list[int] = []
    while remaining:
        objective = rel[remaining].copy()
        if chosen:
            block = np.ix_(remaining, chosen)
            objective += -alpha * np.median(redundancy[block], axis=1) + beta * np.median(combined[block], axis=1) / scale
        # Ties go to the alphabetically first name (names are sorted, argmax takes the first).
        best = remaining[int(np.argmax(objective))]
        chosen.append(best)
        remaining.remove(best)
    return [names[i] for i in chosen]
