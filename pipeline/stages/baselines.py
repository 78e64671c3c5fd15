"""The baselines the train stage fits beside the deep model, on the same encoded splits (LightGBM by default, CatBoost\nwhen asked), and the GBDT inputs predict builds from encoded raw rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featuremap import FeatureMap
from features.tabular import tabular, tabular_columns
from pipeline import catalog
from pipeline.config import PipelineConfig
from pipeline.errors import UserError

ROW = "__row"


def _rows(path: Path, columns: list[str], label: str, max_rows: int | None) -> tuple[pl.LazyFrame | None, int]:
    """The split's feature and label columns and each row's position in the split (`__row`), all rows or exactly
    `max_rows` evenly spaced ones (read as such), and the split's row count."""
    rows = catalog.parquet_rows(path) if path.is_file() else 0
    if not rows:
        return None, 0
    missing = [c for c in (*columns, label) if c not in pl.scan_parquet(path).collect_schema()]
    if missing:
        raise UserError(f"{path}: column(s) {', '.join(missing)} missing; the feature map does not match the data, rerun ingest")
    frame = pl.scan_parquet(path).select([*columns, label]).with_row_index(ROW)
    if max_rows is not None and rows > max_rows:  # row i is kept when floor((i+1)·m/n) > floor(i·m/n): m rows, evenly spaced
        i = pl.col(ROW).cast(pl.Int64)
        frame = frame.filter((i + 1) * max_rows // rows > i * max_rows // rows)
    return frame, rows


def _arrays(data: pl.DataFrame, columns: list[str], label: str, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    return tabular(data, columns, dtype), data[label].cast(pl.Int8).to_numpy()


@dataclass
class Fitted:
    """A fitted baseline, and its click probabilities and labels on the whole valid and test splits (for the blend)."""

    kind: Any  # models.gbdt.BaselineKind
    booster: Any
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None


def fit_baselines(
    cfg: PipelineConfig,
    ingest_dir: Path,
    feature_map: FeatureMap,
    derived: dict[str, dict[str, np.ndarray]] | None = None,
    pairs: list[tuple[str, str]] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], dict[str, Fitted]]:
    """Each configured baseline's figures (valid and test AUC / logloss, rounds, seconds), one nested run each, and the
    fitted boosters with their valid and test probabilities.

    Train and the early-stopping rows are evenly spaced samples of at most `train.baseline_max_rows` rows of train and
    valid; valid and test are then scored whole, in slices of that many rows, so memory stays bounded on large inputs.
    `derived` holds, per split, the columns a search method derived (not in the ingest files), aligned with its rows.
    The wide model takes the ingest's columns (not the derived ones: a smoothed rate is not additive in the logit)
    and crosses `pairs` (field names: the rank stage's significant pairs)."""
    from models.baselines import KINDS
    from models.gbdt import GBDTConfig, metrics_of

    tc = cfg.train
    if not tc.baselines:
        return {}, [], {}
    columns, categorical, dtype = tabular_columns(feature_map)
    derived = derived or {}
    extra = [c for c in columns if c in derived.get("train", {})]  # derived fields come last in the feature map
    stored = [c for c in columns if c not in extra]
    cap, label = tc.baseline_max_rows, feature_map.label

    def sample(split: str) -> tuple[np.ndarray, np.ndarray]:
        data = _rows(catalog.split_file(ingest_dir, split), stored, label, cap)[0].collect()
        x, y = _arrays(data, stored, label, dtype)
        if extra:  # the derived columns of the same rows
            kept = data[ROW].to_numpy()
            x = np.column_stack([x, *(derived[split][c][kept].astype(dtype) for c in extra)])
        return x, y

    train, stopping = sample("train"), sample("valid")

    def scored(split: str, kind, booster) -> tuple[np.ndarray, np.ndarray] | None:
        frame, rows = _rows(catalog.split_file(ingest_dir, split), stored, label, None)
        if frame is None:
            return None
        parts = []
        for offset in range(0, rows, cap):
            x, y = _arrays(frame.slice(offset, cap).collect(), stored, label, dtype)
            if extra:
                x = np.column_stack([x, *(derived[split][c][offset : offset + cap].astype(dtype) for c in extra)])
            parts.append((x, y))
        return np.concatenate([kind.predict(booster, x) for x, _ in parts]), np.concatenate([y for _, y in parts])

    found: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Fitted] = {}
    column_of = {spec.name: columns[i] for i, spec in enumerate(feature_map.fields)}
    wide = {"columns": stored, "pairs": [[column_of[a], column_of[b]] for a, b in pairs or [] if a in column_of and b in column_of]}
    for name in tc.baselines:
        kind = KINDS[name]
        params = (wide if name == "wide" else {}) | tc.baseline_params.get(name, {})
        result = kind.fit(train, stopping, columns, categorical, GBDTConfig(seed=tc.seed, params=params))
        valid, test = scored("valid", kind, result.booster), scored("test", kind, result.booster)
        fitted[name] = Fitted(kind, result.booster, valid, test)
        valid_auc, valid_logloss = metrics_of(valid[1], valid[0])
        test_auc, test_logloss = metrics_of(test[1], test[0]) if test is not None else (None, None)
        found[name] = {
            "kind": kind.family,
            "valid_auc": valid_auc,
            "valid_logloss": valid_logloss,
            "test_auc": test_auc,
            "test_logloss": test_logloss,
            "rounds": result.best_iteration,
            "train_rows": result.train_rows,
            "valid_rows": len(valid[1]),
            "early_stopping_rows": len(stopping[1]),
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
    return found, children, fitted
