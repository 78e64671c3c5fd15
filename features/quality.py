"""Data-quality report per feature, from the ranking's count tables and per-split id counts."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from featuremap import FIRST_VALUE_ID, MISSING_ID, OOV_ID, FeatureMap
from features.settings import QualityParams


def population_stability_index(
    expected: np.ndarray, actual: np.ndarray, bins: int, unseen: int | None = None, new_bucket: bool = True
) -> float:
    """PSI of `actual` against `expected` id counts over the top `bins` expected ids plus the rest, and an influx of
    values `expected` never saw: ids with no expected count (new values; with `new_bucket`) and the id `unseen` (the
    out-of-vocabulary id, where new values land once encoded). Their share is expected at the Good-Turing estimate of
    the unseen mass (the share of values `expected` saw once, plus `unseen`'s own share); a larger actual share adds
    its PSI term, so that a field whose values are replaced drifts (in the "rest" bucket with the tail it hardly
    moved), while new values arriving at the rate the tail predicts, or fewer (two overlapping windows), add nothing.
    `new_bucket` false: no influx term for new ids (the expected side lacks its values seen once, and the estimate)."""
    if actual.sum() == 0 or expected.sum() == 0:
        return 0.0
    top = np.argsort(-expected, kind="stable")[:bins]
    rest = np.ones(expected.size, dtype=bool)
    rest[top] = False
    e = np.append(expected[top], expected[rest].sum()).astype(np.float64)
    a = np.append(actual[top], actual[rest].sum()).astype(np.float64)
    eps = 1e-6
    pe = np.maximum(e / e.sum(), eps)
    pa = np.maximum(a / a.sum(), eps)
    psi = float(np.sum((pa - pe) * np.log(pa / pe)))
    new = expected == 0 if new_bucket else np.zeros(expected.size, dtype=bool)
    if unseen is not None and unseen < expected.size:
        new[unseen] = True
    if new.any():
        total = float(expected.sum())
        expected_new = max((np.count_nonzero(expected == 1) + expected[new].sum()) / total, eps)
        actual_new = float(actual[new].sum() / actual.sum())
        if actual_new > expected_new:
            psi += (actual_new - expected_new) * float(np.log(actual_new / expected_new))
    return psi


def _frequency_histogram(value_counts: np.ndarray) -> dict[str, int]:
    counts = value_counts[value_counts > 0]
    if counts.size == 0:
        return {}
    buckets = np.floor(np.log2(counts)).astype(np.int64)
    found = np.bincount(buckets)
    return {f"{2**b}-{2 ** (b + 1) - 1}": int(c) for b, c in enumerate(found) if c}


def quality_report(
    feature_map: FeatureMap,
    train_tables: Mapping[str, np.ndarray],
    adjusted_mi: Mapping[str, float],
    label_entropy: float,
    eval_counts: Mapping[str, Mapping[str, np.ndarray]],
    params: QualityParams,
) -> dict:
    """Per-feature quality measures and flag lists, JSON-ready.

    `train_tables` are the ranking's (id, label) count tables; `eval_counts` the
    id counts per column of each other split (e.g. valid, test).
    """
    features: dict[str, dict] = {}
    flags: dict[str, list[str]] = {"constant": [], "near_unique": [], "label_leakage": [], "drift": [], "low_coverage": []}
    for spec in feature_map.fields:
        col = spec.rank_column
        table = train_tables[col]
        totals = table.sum(axis=1)
        rows = int(totals.sum())
        values = totals[FIRST_VALUE_ID:]
        distinct = int(np.count_nonzero(values))
        rare_rows = int(values[(values > 0) & (values < params.rare_count)].sum() + totals[OOV_ID])
        entry = {
            "kind": spec.kind,
            "cardinality": distinct,
            "vocab_size": spec.rank_cardinality,
            "coverage": 1.0 - totals[MISSING_ID] / rows,
            "top_value_share": float(values.max() / rows) if distinct else 0.0,
            "rare_value_share": rare_rows / rows,
            "oov_share_train": float(totals[OOV_ID] / rows),
            "unique_ratio": distinct / rows,
            "adjusted_mi_over_label_entropy": adjusted_mi[col] / label_entropy if label_entropy > 0 else 0.0,
            "value_frequency_histogram": _frequency_histogram(values),
        }
        if spec.kind == "numeric":
            entry["numeric"] = {k: spec.stats.get(k) for k in ("min", "max", "mean", "std")}
        for split, counts in eval_counts.items():
            found = counts[col]
            n = found.sum()
            entry[f"psi_{split}"] = population_stability_index(totals, found, params.psi_bins, unseen=OOV_ID)
            entry[f"oov_share_{split}"] = float(found[OOV_ID] / n) if n else 0.0
        features[spec.name] = entry
        if np.count_nonzero(totals) <= 1:  # one id in every row (missing and OOV count as ids)
            flags["constant"].append(spec.name)
        if entry["unique_ratio"] >= params.near_unique_ratio:
            flags["near_unique"].append(spec.name)
        if entry["adjusted_mi_over_label_entropy"] >= params.leakage_ratio:
            flags["label_leakage"].append(spec.name)
        if any(entry.get(f"psi_{s}", 0.0) > params.drift_psi for s in eval_counts):
            flags["drift"].append(spec.name)
        if entry["coverage"] < 0.05:
            flags["low_coverage"].append(spec.name)
    return {"features": features, "flags": flags}
