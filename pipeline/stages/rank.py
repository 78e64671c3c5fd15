"""Rank: corrected MI per feature and pair, redundancy, 3MR order and data quality over the encoded splits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from featuremap import FeatureMap
from features.quality import quality_report
from features.ranking import Counted, count_batches, rank_counted
from features.selection import select_features
from features.settings import RankParams
from pipeline import catalog
from pipeline.config import PipelineConfig
from pipeline.errors import UserError
from pipeline.plots import ranking_bar_plot
from pipeline.stages.output import StageOutput


def _count(cfg: PipelineConfig, path: Path, feature_map: FeatureMap, params: RankParams, desc: str) -> Counted:
    """One split's counts, in this process or as Ray tasks (`engine`)."""
    if cfg.engine.kind == "ray":
        from pipeline.ray_engine import count_on_ray

        return count_on_ray(path, feature_map, params, cfg.rank.batch_rows, cfg.engine)
    return count_batches(catalog.rank_batches(path, feature_map, cfg.rank.batch_rows, desc), feature_map, params)


def run_rank(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Rank features, pairs and 3MR order; write ranking.csv, pairs.csv, quality.json and ranking.png."""
    ingest_dir = catalog.stage_path(out, "ingest")
    feature_map = catalog.load_feature_map(ingest_dir)
    train = catalog.split_file(ingest_dir, "train")
    if not train.is_file():
        raise UserError(f"{train}: encoded train split not found; run the ingest stage first")
    rc = cfg.rank
    params = rc
    started = time.perf_counter()
    result = rank_counted(_count(cfg, train, feature_map, params, "rank: count train"), feature_map, params)
    seconds = time.perf_counter() - started
    counts_only = params.model_copy(update={"score": "plain", "pair_budget": 0})  # valid and test: value counts only
    eval_counts = {}
    for split in ("valid", "test"):
        path = catalog.split_file(ingest_dir, split)
        if path.is_file() and catalog.parquet_rows(path):
            counter = _count(cfg, path, feature_map, counts_only, f"rank: count {split}").counter
            eval_counts[split] = {col: table.sum(axis=1) for col, table in counter.tables.items()}
    by_name = dict(zip(result.ranking["feature"], result.ranking["adjusted_mi"], strict=True))
    adjusted = {spec.rank_column: by_name[spec.name] for spec in feature_map.fields}
    quality = quality_report(feature_map, result.counter.tables, adjusted, result.label_entropy, eval_counts, rc.quality)
    quality = {
        "rows": {name: s["rows"] for name, s in feature_map.splits.items()},
        "label": {"name": feature_map.label, "positive_rate": result.positive_rate, "entropy": result.label_entropy},
        **quality,
    }
    selection = select_features(result.ranking, result.pairs, quality["flags"], rc.select)
    if not selection.significant:
        print(
            f"rank: selection kept nothing significant (Benjamini-Hochberg at {rc.select.fdr:g}); every unflagged feature goes on",
            file=sys.stderr,
        )
    selection.ranking.write_csv(workdir / catalog.RANKING.name)
    result.pairs.write_csv(workdir / catalog.PAIRS.name)
    catalog.write_json(workdir / catalog.QUALITY.name, quality)
    ranking_bar_plot(result.ranking, workdir / "ranking.png", rc.plot_top, rc.score)
    cells = result.counter.rows * len(feature_map.fields)
    flagged = sum(len(v) for v in quality["flags"].values())
    top = result.ranking["feature"].head(5).to_list()
    return StageOutput(
        params={**rc.model_dump(exclude={"quality", "select"}), "quality": rc.quality.model_dump(), "select": rc.select.model_dump()},
        metrics={
            "seconds": seconds,
            "cells": cells,
            "cells_per_s": cells / seconds if seconds > 0 else 0.0,
            "pairs": result.pairs.height,
            "flags": flagged,
            "top_score": float(result.ranking["score"][0]),
            "selected": len(selection.kept),
            "significant": selection.significant,
        },
        artifacts=[o.name for o in catalog.DECLARED["rank"].writes],
        summary=f"rank: top features {', '.join(top)}; {len(selection.kept)} of {selection.ranking.height} selected -> {out / 'rank'}",
    )
