"""Gradient-boosted trees (LightGBM) on the encoded splits: the model a CTR team tries first, fitted in every run.

The same train / valid / test rows as the deep model. Categorical and multi-valued fields
enter as their encoded ids (one id per row: the value, or the set of values), declared
categorical; numeric fields as their standardised values. LightGBM's default parameters,
early-stopped on validation AUC, as a user would run it; `deterministic` so that the same
data and seed give the same trees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from featuremap import FeatureMap


@dataclass(frozen=True)
class GBDTConfig:
    """What the baseline changes from LightGBM's defaults: early stopping, the round cap, the seed."""

    max_rounds: int = 10_000
    early_stopping_rounds: int = 50
    seed: int = 2021
    params: dict[str, Any] = field(default_factory=dict)  # any LightGBM parameter, over its defaults


@dataclass
class GBDTResult:
    """The fitted booster and its figures on each split."""

    booster: Any
    valid_auc: float
    valid_logloss: float
    best_iteration: int
    train_rows: int
    seconds: float
    params: dict[str, Any]


def feature_columns(feature_map: FeatureMap) -> tuple[list[str], list[str]]:
    """(columns to read from the encoded splits, those of them that are categorical), in field order."""
    columns, categorical = [], []
    for spec in feature_map.fields:
        if spec.kind == "numeric" and spec.value_column:
            columns.append(spec.value_column)
        else:
            columns.append(spec.rank_column)
            categorical.append(spec.rank_column)
    return columns, categorical


def metrics_of(label: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """AUC and logloss of click probabilities `prob` against `label`."""
    return float(roc_auc_score(label, prob)), float(log_loss(label, np.clip(prob, 1e-7, 1 - 1e-7), labels=[0, 1]))


def fit_lightgbm(
    train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray], names: list[str], categorical: list[str], config: GBDTConfig
) -> GBDTResult:
    """LightGBM with default parameters on (features, label) arrays, early-stopped on validation AUC."""
    import lightgbm as lgb

    started = time.perf_counter()
    x, y = train
    params = {"objective": "binary", "metric": ["auc", "binary_logloss"], "first_metric_only": True, "verbosity": -1}
    params |= {"seed": config.seed, "deterministic": True, "force_row_wise": True, **config.params}
    data = lgb.Dataset(x, label=y, feature_name=names, categorical_feature=categorical, free_raw_data=True)
    checked = lgb.Dataset(valid[0], label=valid[1], reference=data)
    booster = lgb.train(
        params,
        data,
        num_boost_round=config.max_rounds,
        valid_sets=[checked],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    auc, logloss = metrics_of(valid[1], predict_lightgbm(booster, valid[0]))
    return GBDTResult(booster, auc, logloss, int(booster.best_iteration), len(y), time.perf_counter() - started, params)


def predict_lightgbm(booster: Any, x: np.ndarray) -> np.ndarray:
    """Click probabilities at the best iteration."""
    return booster.predict(x, num_iteration=booster.best_iteration)
