"""Readers of earlier stages' outputs that later stages share: encoded splits, the ranking, its pairs and budgets."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from featuremap import FeatureMap
from methods import METHODS
from pipeline import catalog
from pipeline.config import PipelineConfig, method_settings
from pipeline.errors import UserError

if TYPE_CHECKING:
    from models.batching import NumericInput


def load_split(ingest_dir: Path, split: str, feature_map: FeatureMap, numeric_as_value: NumericInput):
    """One encoded split in memory (an InMemoryData), or None when the ingest stage wrote no such split."""
    from models.batching import dense_fields, sparse_fields
    from models.data import InMemoryData

    path = catalog.split_file(ingest_dir, split)
    if not path.is_file():
        return None
    columns = [f.column for f in sparse_fields(feature_map, numeric_as_value)]
    columns += [f.value_column for f in dense_fields(feature_map, numeric_as_value) if f.value_column]
    data = catalog.read_columns(path, [*columns, feature_map.label])
    label = data.pop(feature_map.label)
    return InMemoryData(data, label, feature_map, numeric_as_value)


def candidate_pairs(out: Path, feature_map: FeatureMap, budget: int, by: str = "gain") -> list[tuple[str, str]]:
    """Candidate pairs for a method that searches pairs: the rank stage's top pairs by pairs.csv's column `by` (interaction
    gain, or the pair's adjusted MI), both fields single-valued."""
    path = catalog.PAIRS.at(out)
    if not path.is_file():
        raise UserError(f"{path}: the search takes its candidate pairs from the rank stage; run rank first (--stages ingest,rank,search)")
    kinds = {f.name: f.kind for f in feature_map.fields}
    if by not in ("gain", "adjusted_mi_pair"):
        raise ValueError(f"pairs are ordered by gain or adjusted_mi_pair, not {by!r}")
    ranked = pl.read_csv(path).sort(by, descending=True, maintain_order=True)
    pairs = [
        (a, b)
        for a, b in zip(ranked["feature_a"], ranked["feature_b"], strict=True)
        if kinds.get(a) not in (None, "multi") and kinds.get(b) not in (None, "multi")
    ]
    if not pairs:
        raise UserError(f"{path}: no pair of single-valued fields to search; raise rank.pair_budget")
    return pairs[:budget]


def significant_pairs(out: Path, feature_map: FeatureMap, cfg: PipelineConfig) -> list[tuple[str, str]]:
    """The rank stage's pairs whose interaction gain is significant (Benjamini–Hochberg at `rank.select.fdr` over
    pairs.csv's `gain_p`), both fields in `feature_map`; none when the rank stage wrote no pairs."""
    from features.selection import significant_pairs as significant

    path = catalog.PAIRS.at(out)
    if not path.is_file():
        return []
    present = {f.name for f in feature_map.fields}
    return [(a, b) for a, b in significant(pl.read_csv(path), cfg.rank.select.fdr) if a in present and b in present]


def selected_features(out: Path, feature_map: FeatureMap, cfg: PipelineConfig) -> FeatureMap:
    """`feature_map` restricted to the rank stage's selection (ranking.csv's `selected`) when `rank.select.enabled`; the
    whole map when selection is off or the rank stage has not run."""
    path = catalog.RANKING.at(out)
    if not cfg.rank.select.enabled or not path.is_file():
        return feature_map
    ranking = pl.read_csv(path)
    if "selected" not in ranking.columns:
        return feature_map
    keep = set(ranking.filter(pl.col("selected"))["feature"].to_list())
    if not keep:  # every feature carries a flag of rank.select.drop_flags (select_features never keeps one)
        flags = ", ".join(f"{n} ({r.removeprefix('dropped: quality flag ')})" for n, r in ranking.select("feature", "reason").iter_rows())
        raise UserError(
            f"{path}: every feature is dropped by a quality flag: {flags[:300]}; nothing to train on "
            "(rank.select.drop_flags chooses the flags that drop)"
        )
    return dataclasses.replace(feature_map, fields=tuple(f for f in feature_map.fields if f.name in keep))


def top_features(out: Path, feature_map: FeatureMap, cfg: PipelineConfig) -> FeatureMap:
    """`feature_map` restricted to the search's ranking budget: the rank stage's top `max_features` features, plus,
    when a method searches over pairs (its `pair_budget`), the fields of its candidate pairs (fields that matter only jointly
    rank low alone)."""
    budget = cfg.search.max_features
    if budget is None:
        return feature_map
    path = catalog.RANKING.at(out)
    if not path.is_file():
        raise UserError(f"{path}: search.max_features keeps the rank stage's top features; run rank first (--stages ingest,rank,...)")
    present = {f.name for f in feature_map.fields}  # the selected features: the budget applies among them
    keep = set(pl.read_csv(path).filter(pl.col("feature").is_in(present)).sort("rank")["feature"].head(budget).to_list())
    for name in cfg.search.methods:
        orders = METHODS[name].pair_budget(method_settings(cfg, name)) if name in METHODS else {}
        for by, pairs in orders.items():
            keep |= {field for pair in candidate_pairs(out, feature_map, pairs, by) for field in pair}
    return dataclasses.replace(feature_map, fields=tuple(f for f in feature_map.fields if f.name in keep))


def feature_ranks(out: Path) -> dict[str, int]:
    """The rank stage's rank of every feature (1: most informative)."""
    path = catalog.RANKING.at(out)
    if not path.is_file():
        raise UserError(f"{path}: a search setting takes the rank stage's order; run rank first (--stages ingest,rank,...)")
    ranking = pl.read_csv(path)
    return dict(zip(ranking["feature"], ranking["rank"], strict=True))
