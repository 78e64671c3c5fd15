"""The baselines the train stage fits beside the deep model, on the same encoded splits (LightGBM by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featuremap import FeatureMap
from pipeline import catalog
from pipeline.config import PipelineConfig
from pipeline.errors import UserError

FLOAT32_EXACT = 2**24  # ids up to this stay exact as float32; larger id spaces are read as float64


def _rows(path: Path, columns: list[str], label: str, max_rows: int | None) -> tuple[pl.LazyFrame | None, int]:
    """The split's feature and label columns, all rows or exactly `max_rows` evenly spaced ones (read as such), and
    the split's row count."""
    rows = catalog.parquet_rows(path) if path.is_file() else 0
    if not rows:
        return None, 0
    missing = [c for c in (*columns, label) if c not in pl.scan_parquet(path).collect_schema()]
    if missing:
        raise UserError(f"{path}: column(s) {', '.join(missing)} missing; the feature map does not match the data, rerun ingest")
    frame = pl.scan_parquet(path).select([*columns, label])
    if max_rows is not None and rows > max_rows:  # row i is kept when floor((i+1)·m/n) > floor(i·m/n): m rows, evenly spaced
        i = pl.col("__i").cast(pl.Int64)
        frame = frame.with_row_index("__i").filter((i + 1) * max_rows // rows > i * max_rows // rows).drop("__i")
    return frame, rows


def _arrays(data: pl.DataFrame, columns: list[str], label: str, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    return np.column_stack([data[c].cast(pl.Float64).to_numpy().astype(dtype) for c in columns]), data[label].cast(pl.Int8).to_numpy()


def fit_baselines(cfg: PipelineConfig, ingest_dir: Path, feature_map: FeatureMap) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Each configured baseline's figures (valid and test AUC / logloss, rounds, seconds) and one nested run each.

    Train and valid (early stopping) are evenly spaced samples of at most `train.baseline_max_rows` rows each;
    test is scored whole, in slices of that many rows, so memory stays bounded on large inputs."""
    from models.gbdt import GBDTConfig, feature_columns, fit_lightgbm, metrics_of, predict_lightgbm

    tc = cfg.train
    if not tc.baselines:
        return {}, []
    columns, categorical = feature_columns(feature_map)
    dtype = np.float64 if max((f.rank_cardinality for f in feature_map.fields), default=0) > FLOAT32_EXACT else np.float32
    cap, label = tc.baseline_max_rows, feature_map.label
    train, valid = (
        _arrays(_rows(catalog.split_file(ingest_dir, s), columns, label, cap)[0].collect(), columns, label, dtype)
        for s in ("train", "valid")
    )
    test, test_rows = _rows(catalog.split_file(ingest_dir, "test"), columns, label, None)
    found: dict[str, dict[str, Any]] = {}
    for name in tc.baselines:  # one kind so far: lightgbm
        result = fit_lightgbm(train, valid, columns, categorical, GBDTConfig(seed=tc.seed))
        test_auc = test_logloss = None
        if test is not None:
            parts = [_arrays(test.slice(offset, cap).collect(), columns, label, dtype) for offset in range(0, test_rows, cap)]
            probs = np.concatenate([predict_lightgbm(result.booster, x) for x, _ in parts])
            test_auc, test_logloss = metrics_of(np.concatenate([y for _, y in parts]), probs)
        found[name] = {
            "kind": "gbdt",
            "valid_auc": result.valid_auc,
            "valid_logloss": result.valid_logloss,
            "test_auc": test_auc,
            "test_logloss": test_logloss,
            "rounds": result.best_iteration,
            "train_rows": result.train_rows,
            "valid_rows": len(valid[1]),
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
