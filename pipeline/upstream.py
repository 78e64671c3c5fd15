"""Readers of earlier stages' outputs that later stages share: encoded splits, the ranking, its pairs and budgets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from common.errors import UserError
from common.featuremap import FeatureMap
from methods import METHODS
from pipeline import catalog
from pipeline.config import PipelineConfig, method_settings


def load_split(ingest_dir: Path, split: str, feature_map: FeatureMap, numeric_as_value: bool):
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


def candidate_pairs(out: Path, feature_map: FeatureMap, budget: int) -> list[tuple[str, str]]:
    """Candidate pairs for a method that searches pairs: the rank stage's top pairs by gain, both fields single-valued."""
    path = catalog.stage_path(out, "rank") / "pairs.csv"
    if not path.is_file():
        raise UserError(f"{path}: the search takes its candidate pairs from the rank stage; run rank first (--stages ingest,rank,search)")
    kinds = {f.name: f.kind for f in feature_map.fields}
    ranked = pl.read_csv(path).sort("gain", descending=True)
    pairs = [
        (a, b)
        for a, b in zip(ranked["feature_a"], ranked["feature_b"], strict=True)
        if kinds.get(a) not in (None, "multi") and kinds.get(b) not in (None, "multi")
    ]
    if not pairs:
        raise UserError(f"{path}: no pair of single-valued fields to search; raise rank.pair_budget")
    return pairs[:budget]


def top_features(out: Path, feature_map: FeatureMap, cfg: PipelineConfig) -> FeatureMap:
    """`feature_map` restricted to the search's ranking budget: the rank stage's top `max_features` features, plus,
    when a method searches over pairs (its `pair_budget`), the fields of its candidate pairs (fields that matter only jointly
    rank low alone)."""
    budget = cfg.search.max_features
    if budget is None:
        return feature_map
    path = catalog.stage_path(out, "rank") / "ranking.csv"
    if not path.is_file():
        raise UserError(f"{path}: search.max_features keeps the rank stage's top features; run rank first (--stages ingest,rank,...)")
    keep = set(pl.read_csv(path).sort("rank")["feature"].head(budget).to_list())
    for name in cfg.search.methods:
        pairs = METHODS[name].pair_budget(method_settings(cfg, name)) if name in METHODS else None
        if pairs:
            keep |= {field for pair in candidate_pairs(out, feature_map, pairs) for field in pair}
    return dataclasses.replace(feature_map, fields=tuple(f for f in feature_map.fields if f.name in keep))


def with_ranked_chunks(cfg: PipelineConfig, out: Path, feature_map: FeatureMap) -> PipelineConfig:
    """`cfg` with Unified Embedding's `chunk_counts: rank` replaced by a {field: count} mapping from the rank stage's
    ranking (rank 1 gets `chunks`, the last field one; models.embedding.chunks_by_rank), so that the trained model's
    package holds the counts it was built with."""
    params = cfg.train.params
    if cfg.train.model != "unified" or params.get("chunk_counts") != "rank":
        return cfg
    counts = ranked_chunk_counts(out, feature_map, int(params.get("chunks", 1)))
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"params": {**params, "chunk_counts": counts}})})


def ranked_chunk_counts(out: Path, feature_map: FeatureMap, chunks: int) -> dict[str, int]:
    """Unified Embedding's chunk count per field of `feature_map` from the rank stage's order among those fields."""
    from models.embedding import chunks_by_rank

    path = catalog.stage_path(out, "rank") / "ranking.csv"
    if not path.is_file():
        raise UserError(f"{path}: chunk_counts 'rank' takes Unified Embedding's chunk counts from the rank stage; run rank first")
    ranking = pl.read_csv(path)
    ranks = dict(zip(ranking["feature"], ranking["rank"], strict=True))
    names = [f.name for f in feature_map.fields]
    missing = [name for name in names if name not in ranks]
    if missing:
        raise UserError(f"{path}: no rank for field(s) {', '.join(missing)}; rerun the rank stage")
    order = sorted(names, key=ranks.__getitem__)
    return chunks_by_rank({name: i + 1 for i, name in enumerate(order)}, chunks)
