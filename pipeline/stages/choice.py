"""The run's chosen model: the deep model, each baseline and their blend are candidates; the best validation AUC wins.

The blend is the deep model with the baseline of the best validation AUC, p = w · p_deep + (1 − w) · p_gbdt, its
weight fitted on the validation split (models/blend.py); its validation figures, which rank it, are cross-fitted.
Test figures are computed for every candidate and never take part in the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.stages.baselines import Fitted

BLEND = "blend"
Scores = tuple[np.ndarray, np.ndarray]  # click probabilities, labels


@dataclass
class Choice:
    """The chosen candidate, how to score with it, and every candidate's figures."""

    name: str
    kind: str  # deep | gbdt | blend
    gbdt: str | None  # the baseline it scores with (a gbdt choice, or the blend's second part)
    weight: float | None  # the blend's weight on the deep model
    candidates: dict[str, dict[str, Any]]

    def entry(self) -> dict[str, Any]:
        """What the package records so that predict scores with this candidate."""
        return {"name": self.name, "kind": self.kind, "gbdt": self.gbdt, "weight": self.weight}


def _figures(valid: Scores, test: Scores | None) -> dict[str, float | None]:
    from models.gbdt import metrics_of

    valid_auc, valid_logloss = metrics_of(valid[1], valid[0])
    test_auc, test_logloss = metrics_of(test[1], test[0]) if test is not None and len(test[1]) else (None, None)
    return {"valid_auc": valid_auc, "valid_logloss": valid_logloss, "test_auc": test_auc, "test_logloss": test_logloss}


def choose(
    setting: str,
    deep: str,
    deep_valid: Scores,
    deep_test: Scores | None,
    deep_info: dict[str, Any],
    baselines: dict[str, dict[str, Any]],
    fitted: dict[str, Fitted],
) -> Choice:
    """Every candidate's figures and the one `setting` picks: "best" (the highest validation AUC; a tie keeps the
    simpler, in the order deep model, baselines, blend), "deep", "blend" or a baseline's name."""
    from models.blend import blend, cross_fitted, fit_weight

    candidates: dict[str, dict[str, Any]] = {deep: {"kind": "deep", **_figures(deep_valid, deep_test), **deep_info}}
    for name, found in baselines.items():
        keep = ("kind", "valid_auc", "valid_logloss", "test_auc", "test_logloss", "params", "seconds")
        candidates[name] = {key: found[key] for key in keep}
    best_gbdt = max(baselines, key=lambda n: baselines[n]["valid_auc"]) if baselines else None
    weight = None
    if best_gbdt is not None:
        part = fitted[best_gbdt]
        if not np.array_equal(part.valid[1], deep_valid[1]):
            raise RuntimeError("the baseline's validation rows are not the deep model's (labels differ)")
        y = deep_valid[1]
        weight = fit_weight(deep_valid[0], part.valid[0], y)
        valid = (cross_fitted(deep_valid[0], part.valid[0], y), y)
        test = (blend(deep_test[0], part.test[0], weight), deep_test[1]) if deep_test is not None and part.test is not None else None
        candidates[BLEND] = {
            "kind": "blend",
            **_figures(valid, test),
            "params": {"parts": [deep, best_gbdt], "weight": weight, "valid": "cross-fitted, 2 interleaved folds"},
            "seconds": candidates[deep]["seconds"] + candidates[best_gbdt]["seconds"],
        }
    if setting == "best":
        name = max(candidates, key=lambda n: candidates[n]["valid_auc"])  # max keeps the first of equals
    elif setting == "deep":
        name = deep
    elif setting in candidates:
        name = setting
    else:
        raise ValueError(f"train.choose {setting!r} is not a candidate of this run ({', '.join(['best', 'deep', *candidates])})")
    kind = candidates[name]["kind"]
    gbdt = name if kind == "gbdt" else best_gbdt if kind == "blend" else None
    return Choice(name, kind, gbdt, weight if kind == "blend" else None, candidates)
