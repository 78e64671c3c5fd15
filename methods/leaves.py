"""GBDT leaf indices as categorical fields: He et al., "Practical Lessons from Predicting Clicks on Ads at Facebook"
(ADKDD 2014): their logistic regression is `--model lr`, and any other model of the pipeline takes the fields too
(docs/methods/leaves.md).

The search stage fits a LightGBM on train rows (early-stopped on valid, never test); each of its
trees becomes a derived categorical field whose value is the leaf a row falls in. Train, the
package and predict see the fields like any categorical field; the GBDT baselines do not take
them (a GBDT over another GBDT's leaves is the same trees again).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from featuremap import FeatureMap, FieldSpec
from featuremap.spec import FIRST_VALUE_ID
from features.tabular import FLOAT32_EXACT
from methods.base import DerivingMethod, Found, SearchRun, Settings, rank_derived, ranking_line, spaced_rows

MODEL = "leaves_lightgbm.txt"
META = "leaves.meta.json"
PREFIX = "leaf__t"
CHUNK = 1_000_000  # rows scored per LightGBM call, so that the float matrix of a large split is never whole


class LeavesSettings(Settings):
    """GBDT leaf indices as categorical fields (docs/methods/leaves.md)."""

    trees: int = Field(30, ge=1)
    """Boosting rounds, one derived field per tree (fewer when valid AUC stops improving for `patience` rounds)."""
    num_leaves: int = Field(31, ge=2, le=65_000)
    """Leaves per tree: the vocabulary of each derived field (LightGBM's default)."""
    learning_rate: float = Field(0.1, gt=0)
    """The GBDT's learning rate (LightGBM's default)."""
    patience: int = Field(10, ge=1)
    """Rounds without a better valid AUC before the GBDT stops."""
    max_rows: int = Field(1_000_000, ge=1000)
    """Evenly spaced train rows the GBDT fits on (and valid rows it stops on)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Any other LightGBM parameter, over its defaults."""


def _inputs(feature_map: FeatureMap, columns: dict[str, Any]) -> tuple[list[str], list[str], bool]:
    """The GBDT's input columns, the categorical ones among them, and whether ids need float64 to stay exact: every
    single-valued field, a numeric field by its standardised value where the data holds it (else its quantile bucket
    id, ordered), a categorical one by its id."""
    names, categorical, wide = [], [], False
    for spec in feature_map.fields:
        if spec.kind == "multi":
            continue  # a list per row; the model's own embedding bag takes it
        if spec.kind == "numeric":
            names.append(spec.value_column if spec.value_column in columns else spec.column)
        else:
            names.append(spec.column)
            categorical.append(spec.column)
            wide |= spec.vocab_size > FLOAT32_EXACT
    return names, categorical, wide


def _matrix(columns: dict[str, Any], names: list[str], rows: np.ndarray | slice, wide: bool) -> np.ndarray:
    """Rows `rows` of `names` as one float matrix (float64 where float32 would merge ids)."""
    dtype = np.float64 if wide else np.float32
    return np.column_stack([np.asarray(columns[c])[rows].astype(dtype) for c in names])


class GBDTLeaves(DerivingMethod):
    name = "leaves"
    settings = LeavesSettings
    headline = ("trees", "gbdt_valid_auc")
    applied_flag = "leaves"
    files = (MODEL, META)
    gbdt_input = False

    def search(self, run: SearchRun, settings: LeavesSettings) -> Found:
        import lightgbm as lgb

        from models.gbdt import GBDTConfig, LightGBM

        names, categorical, wide = _inputs(run.feature_map, run.train.columns)
        if not names:
            raise ValueError("no single-valued field to grow trees on")
        fit_rows, stop_rows = spaced_rows(len(run.train), settings.max_rows), spaced_rows(len(run.valid), settings.max_rows)
        train = (_matrix(run.train.columns, names, fit_rows, wide), run.train.label[fit_rows])
        valid = (_matrix(run.valid.columns, names, stop_rows, wide), run.valid.label[stop_rows])
        params = {"num_leaves": settings.num_leaves, "learning_rate": settings.learning_rate, **settings.params}
        config = GBDTConfig(max_rounds=settings.trees, early_stopping_rounds=settings.patience, seed=run.spec.seed, params=params)
        result = LightGBM().fit(train, valid, names, categorical, config)
        text = result.booster.model_to_string(num_iteration=result.best_iteration)
        booster = lgb.Booster(model_str=text)  # only the kept trees, as the package reloads them
        leaves = [int(tree["num_leaves"]) for tree in booster.dump_model()["tree_info"]]
        state = {"model": text, "booster": booster, "columns": names, "categorical": categorical, "wide": wide, "leaves": leaves}
        fit_columns = {c: np.asarray(run.train.columns[c])[fit_rows] for c in names}
        ranking = rank_derived(list(self._specs(state)), self.derive(state, fit_columns, None), run.train.label[fit_rows])
        summary = {
            "trees": len(leaves),
            "leaves": leaves,
            "gbdt_valid_auc": result.valid_auc,
            "gbdt_valid_logloss": result.valid_logloss,
            "columns": names,
            "train_rows": int(fit_rows.size),
            "ranking": ranking,  # the leaf fields ranked like any feature, on the rows the trees grew on
            "settings": settings.model_dump(),
        }
        return Found(summary, state)

    def save(self, state: dict[str, Any], directory: Path) -> list[str]:
        (directory / MODEL).write_text(state["model"])
        meta = {k: state[k] for k in ("columns", "categorical", "wide", "leaves")}
        (directory / META).write_text(json.dumps(meta))
        return [MODEL, META]

    def load(self, directory: Path) -> dict[str, Any] | None:
        import lightgbm as lgb

        if not (directory / META).is_file():
            return None
        text = (directory / MODEL).read_text()
        return {"model": text, "booster": lgb.Booster(model_str=text), **json.loads((directory / META).read_text())}

    @staticmethod
    def _specs(state: dict[str, Any]) -> tuple[FieldSpec, ...]:
        """One categorical field per tree, an id per leaf."""
        return tuple(
            FieldSpec(name=f"{PREFIX}{t:03d}", kind="categorical", column=f"{PREFIX}{t:03d}", vocab_size=FIRST_VALUE_ID + count)
            for t, count in enumerate(state["leaves"])
        )

    def derived_map(self, state: dict[str, Any], feature_map: FeatureMap) -> FeatureMap:
        added = self._specs(state)
        clash = sorted({f.name for f in feature_map.fields} & {f.name for f in added})
        if clash:
            raise ValueError(f"the input already has field(s) {', '.join(clash)}, the names of derived leaf fields; rename them")
        return dataclasses.replace(feature_map, fields=(*feature_map.fields, *added))

    def derive(self, state: dict[str, Any], columns: dict[str, Any], labels: Any | None) -> dict[str, Any]:
        """Each row's leaf in every tree, as ids from FIRST_VALUE_ID. Train rows are scored by the trees fitted on them,
        as in the paper (docs/methods/leaves.md says why no fold scheme applies to leaves)."""
        missing = [c for c in state["columns"] if c not in columns]
        if missing:
            raise ValueError(f"the leaf GBDT's input column(s) {', '.join(missing)} are not in the data")
        rows = len(np.asarray(columns[state["columns"][0]]))
        dtype = np.uint16 if FIRST_VALUE_ID + max(state["leaves"]) < 2**16 else np.int32
        leaves = np.empty((rows, len(state["leaves"])), dtype=dtype)
        for first in range(0, rows, CHUNK):
            part = slice(first, min(first + CHUNK, rows))
            leaves[part] = FIRST_VALUE_ID + state["booster"].predict(
                _matrix(columns, state["columns"], part, state["wide"]), pred_leaf=True
            )
        return {f"{PREFIX}{t:03d}": np.ascontiguousarray(leaves[:, t]) for t in range(leaves.shape[1])}

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        lines = [
            f"GBDT leaves: {summary['trees']} trees of at most {max(summary['leaves'], default=0)} leaves as categorical fields "
            f"(the GBDT's valid AUC {summary['gbdt_valid_auc']:.4f})"
        ]
        return lines + ranking_line("Leaf fields (on the train rows the trees grew on)", summary.get("ranking", []))
