"""The baselines the train stage fits beside the deep model, on the same encoded splits (LightGBM by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from common.featuremap import FeatureMap
from pipeline import catalog
from pipeline.config import PipelineConfig


def _split(ingest_dir: Path, name: str, columns: list[str], label: str, max_rows: int | None = None):
    """(features [rows, fields] float32, labels) of one encoded split; an evenly spaced sample of at most `max_rows`
    rows is read (not the whole split and then a sample), so the baseline's memory stays bounded on large inputs."""
    path = catalog.split_file(ingest_dir, name)
    rows = catalog.parquet_rows(path) if path.is_file() else 0
    if not rows:
        return None
    frame = pl.scan_parquet(path).select([*columns, label])
    if max_rows is not None and rows > max_rows:
        frame = frame.gather_every(-(-rows // max_rows))
    data = frame.collect()
    features = np.column_stack([data[c].cast(pl.Float32).to_numpy() for c in columns])
    return features, data[label].cast(pl.Int8).to_numpy()


def fit_baselines(cfg: PipelineConfig, ingest_dir: Path, feature_map: FeatureMap) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Each configured baseline's figures (valid and test AUC / logloss, rounds, seconds) and one nested run each."""
    from models.gbdt import GBDTConfig, evaluate_lightgbm, feature_columns, fit_lightgbm

    tc = cfg.train
    if not tc.baselines:
        return {}, []
    columns, categorical = feature_columns(feature_map)
    train = _split(ingest_dir, "train", columns, feature_map.label, tc.baseline_max_rows)
    valid, test = (_split(ingest_dir, s, columns, feature_map.label) for s in ("valid", "test"))
    found: dict[str, dict[str, Any]] = {}
    for name in tc.baselines:  # one kind so far: lightgbm
        result = fit_lightgbm(train, valid, columns, categorical, GBDTConfig(seed=tc.seed, max_train_rows=tc.baseline_max_rows))
        test_auc, test_logloss = evaluate_lightgbm(result.booster, test) if test is not None else (None, None)
        found[name] = {
            "kind": "gbdt",
            "valid_auc": result.valid_auc,
            "valid_logloss": result.valid_logloss,
            "test_auc": test_auc,
            "test_logloss": test_logloss,
            "rounds": result.best_iteration,
            "train_rows": result.train_rows,
            "seconds": result.seconds,
            "params": {k: v for k, v in result.params.items() if not isinstance(v, list)},
        }
    children = [
        {
            "name": f"baseline {name}",
            "params": summary["params"],
            "metrics": {k: float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)},
        }
        for name, summary in found.items()
    ]
    return found, children
