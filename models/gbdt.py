"""Gradient-boosted trees on the encoded splits: the models a CTR team tries first (LightGBM in every run, CatBoost
when asked), fitted beside the deep model and candidates for the run's chosen model.

The same train / valid / test rows as the deep model. Categorical and multi-valued fields
enter as their encoded ids (one id per row: the value, or the set of values), declared
categorical; numeric fields as their standardised values. Each library's default parameters,
early-stopped on validation AUC, as a user would run it, with any parameter the caller sets over
them (the train stage's `train.baseline_params`), seeded so that the same data and seed give the
same trees.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featuremap.errors import InputError
from models.metrics import metrics_of


@dataclass(frozen=True)
class GBDTConfig:
    """What a baseline changes from its library's defaults: early stopping, the round cap, the seed, any parameter."""

    max_rounds: int = 10_000  # LightGBM's round cap (its default, 100, is too few to early-stop); CatBoost keeps its 1,000
    early_stopping_rounds: int = 50
    seed: int = 2021
    params: dict[str, Any] = field(default_factory=dict)  # any of the library's parameters, over its defaults


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


class BaselineKind(ABC):
    """One baseline (a GBDT library, or models/wide.py's linear model): fit on (features, label) arrays, tuned or
    early-stopped on valid, predict, save and load. `models.baselines.KINDS` maps each name to its kind."""

    name: str
    suffix: str  # the saved model's file name suffix
    family: str = "gbdt"  # the candidate kind the run reports: gbdt or linear

    @abstractmethod
    def fit(
        self,
        train: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        names: list[str],
        categorical: list[str],
        config: GBDTConfig,
    ) -> GBDTResult:
        """Fit on (features, label) arrays with the library's defaults and `config.params` over them, early-stopped on
        valid AUC."""

    @abstractmethod
    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray:
        """Click probabilities at the best iteration."""

    @abstractmethod
    def save(self, booster: Any, path: Path) -> None:
        """Write the booster (its kept trees) to `path`."""

    @abstractmethod
    def load(self, path: Path, names: list[str], categorical: list[str]) -> Any:
        """The booster saved at `path`, ready to `predict` on columns `names`."""


class LightGBM(BaselineKind):
    """LightGBM's defaults (`deterministic`, row-wise), at most `max_rounds` rounds, early-stopped on valid AUC."""

    name, suffix = "lightgbm", "txt"

    def fit(self, train, valid, names, categorical, config) -> GBDTResult:
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
        auc, logloss = metrics_of(valid[1], self.predict(booster, valid[0]))
        return GBDTResult(booster, auc, logloss, int(booster.best_iteration), len(y), time.perf_counter() - started, params)

    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray:
        return booster.predict(x, num_iteration=booster.best_iteration)  # a loaded booster holds only the kept trees (0: all)

    def save(self, booster: Any, path: Path) -> None:
        booster.save_model(str(path), num_iteration=booster.best_iteration)

    def load(self, path: Path, names: list[str], categorical: list[str]) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))


class CatBoost(BaselineKind):
    """CatBoost's defaults (1,000 iterations, its own learning rate, ordered target statistics on the categorical
    fields), early-stopped on valid AUC with the best iteration kept. Slow on 2 cores: opt-in."""

    name, suffix = "catboost", "cbm"

    @staticmethod
    def _frame(x: np.ndarray, names: list[str], categorical: list[str]):
        import pandas as pd

        kinds = set(categorical)  # CatBoost takes categorical values as integers or strings, never floats
        return pd.DataFrame({n: x[:, i].astype(np.int64) if n in kinds else x[:, i] for i, n in enumerate(names)})

    def fit(self, train, valid, names, categorical, config) -> GBDTResult:
        try:
            from catboost import CatBoostClassifier, Pool
        except ImportError as exc:
            raise InputError("the catboost baseline needs the catboost package (pip install catboost)") from exc

        started = time.perf_counter()
        params = {"eval_metric": "AUC", "random_seed": config.seed, "early_stopping_rounds": config.early_stopping_rounds, **config.params}
        booster = CatBoostClassifier(**params, use_best_model=True, verbose=False, allow_writing_files=False)
        booster.fit(
            Pool(self._frame(train[0], names, categorical), train[1], cat_features=categorical),
            eval_set=Pool(self._frame(valid[0], names, categorical), valid[1], cat_features=categorical),
        )
        booster.names, booster.categorical = names, categorical
        auc, logloss = metrics_of(valid[1], self.predict(booster, valid[0]))
        rounds = int(booster.get_best_iteration() or 0) + 1
        return GBDTResult(booster, auc, logloss, rounds, len(train[1]), time.perf_counter() - started, params)

    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray:
        from catboost import Pool

        return booster.predict_proba(Pool(self._frame(x, booster.names, booster.categorical), cat_features=booster.categorical))[:, 1]

    def save(self, booster: Any, path: Path) -> None:
        booster.save_model(str(path))

    def load(self, path: Path, names: list[str], categorical: list[str]) -> Any:
        from catboost import CatBoostClassifier

        booster = CatBoostClassifier()
        booster.load_model(str(path))
        booster.names, booster.categorical = names, categorical
        return booster


def fit_lightgbm(train, valid, names: list[str], categorical: list[str], config: GBDTConfig) -> GBDTResult:
    """LightGBM with default parameters on (features, label) arrays, early-stopped on validation AUC."""
    return LightGBM().fit(train, valid, names, categorical, config)


def predict_lightgbm(booster: Any, x: np.ndarray) -> np.ndarray:
    """Click probabilities at the best iteration."""
    return LightGBM().predict(booster, x)
