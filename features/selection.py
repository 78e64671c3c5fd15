"""Feature selection from the ranking: a significance test with a multiple-comparison correction, quality flags, pairs.

A feature is selected when its label MI beyond chance is significant: the one-sided p-value of
(I − E[I]) / sd[I] under the permutation null (ranking.csv's `p_value`; the null's mean is exact,
its sd exact up to the chi-square-limit dependence factor), with Benjamini–Hochberg at `fdr` over
all features. The G-test's chi-square p-value is not used: on sparse high-cardinality columns it
rejects independence for pure noise. Both fields of a pair whose interaction gain is significant
(pairs.csv's `gain_p`, Benjamini–Hochberg over the evaluated pairs) are kept too: a field can be
useless alone and useful in a cross. A quality flag in `drop_flags` drops a feature whatever its
test. When nothing is significant the caller falls back to every feature and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from features.settings import SelectParams


def benjamini_hochberg(p_values: np.ndarray, fdr: float) -> np.ndarray:
    """Which hypotheses Benjamini–Hochberg rejects at false discovery rate `fdr` (a boolean mask)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    thresholds = fdr * np.arange(1, p.size + 1) / p.size
    passed = np.flatnonzero(p[order] <= thresholds)
    rejected = np.zeros(p.size, dtype=bool)
    if passed.size:
        rejected[order[: passed[-1] + 1]] = True
    return rejected


def significant_pairs(pairs: pl.DataFrame, fdr: float) -> list[tuple[str, str]]:
    """The (feature_a, feature_b) pairs of `pairs` (pairs.csv) whose interaction gain Benjamini–Hochberg rejects at `fdr`."""
    if not pairs.height:
        return []
    hit = benjamini_hochberg(pairs["gain_p"].fill_null(1.0).to_numpy(), fdr)
    return [(a, b) for (a, b), h in zip(pairs.select("feature_a", "feature_b").iter_rows(), hit, strict=True) if h]


@dataclass
class Selection:
    """The ranking with `selected` and `reason` columns, and whether anything was significant."""

    ranking: pl.DataFrame
    significant: bool

    @property
    def kept(self) -> list[str]:
        return self.ranking.filter(pl.col("selected"))["feature"].to_list()


def select_features(ranking: pl.DataFrame, pairs: pl.DataFrame, flags: dict[str, list], settings: SelectParams) -> Selection:
    """`ranking` with `selected` (bool) and `reason` (str) per feature; with nothing significant every unflagged feature
    is selected. A flagged feature (a leak, a constant, an id) is never selected: when every feature is, none is, and
    the stages after rank say so."""
    names = ranking["feature"].to_list()
    p_values = ranking["p_value"].fill_null(1.0).to_numpy()
    significant = dict(zip(names, benjamini_hochberg(p_values, settings.fdr), strict=True))
    flagged: dict[str, str] = {}
    for flag in settings.drop_flags:
        for entry in flags.get(flag, []):
            flagged.setdefault(entry if isinstance(entry, str) else entry.get("feature", str(entry)), flag)
    via_pair: dict[str, str] = {}
    if settings.keep_pair_fields:
        gain_p = {(a, b): p for a, b, p in pairs.select("feature_a", "feature_b", "gain_p").iter_rows()} if pairs.height else {}
        for a, b in significant_pairs(pairs, settings.fdr):
            via_pair.setdefault(a, f"field of the significant pair {a} × {b} (gain p={gain_p[a, b]:.2g})")
            via_pair.setdefault(b, f"field of the significant pair {a} × {b} (gain p={gain_p[a, b]:.2g})")
    selected, reasons = [], []
    for name, p in zip(names, p_values, strict=True):
        if name in flagged:
            selected.append(False)
            reasons.append(f"dropped: quality flag {flagged[name]}")
        elif significant[name]:
            selected.append(True)
            reasons.append(f"significant (p={p:.2g}, BH at {settings.fdr:g})")
        elif name in via_pair:
            selected.append(True)
            reasons.append(via_pair[name])
        else:
            selected.append(False)
            reasons.append(f"dropped: not significant (p={p:.2g}, BH at {settings.fdr:g})")
    found = any(selected)
    if not found:  # nothing significant: train on every feature rather than on nothing
        selected = [name not in flagged for name in names]
        reasons = [
            r if name in flagged else f"kept: nothing was significant, every unflagged feature goes on (p={p:.2g})"
            for name, r, p in zip(names, reasons, p_values, strict=True)
        ]
    return Selection(ranking.with_columns(pl.Series("selected", selected), pl.Series("reason", reasons)), found)
