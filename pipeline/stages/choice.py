"""The run's chosen model: the deep model, each baseline and their blend are candidates; the best validation AUC wins.

The blend is the deep model with every baseline, p = Σ_k w_k · p_k on the simplex, its weights fitted on the
validation split (models/blend.py); its validation figures, which rank it, are cross-fitted. Test figures are
computed for every candidate and never take part in the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.package import DEEP
from pipeline.stages.baselines import Fitted

BLEND = "blend"
Scores = tuple[np.ndarray, np.ndarray]  # click probabilities, labels


@dataclass
class Choice:
    """The chosen candidate, how to score with it, and every candidate's figures."""

    name: str
    kind: str  # deep | gbdt | linear | blend
    baseline: str | None  # the baseline it scores with (a baseline's choice)
    weights: dict[str, float] | None  # the blend's weight per part: DEEP for the deep model, else a baseline's name
    candidates: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)  # what makes the choice weak: said, not hidden

    def entry(self) -> dict[str, Any]:
        """What the package records so that predict scores with this candidate."""
        return {"name": self.name, "kind": self.kind, "gbdt": self.baseline, "weights": self.weights}


def _figures(valid: Scores, test: Scores | None) -> dict[str, float | None]:
    from models.metrics import metrics_of

    valid_auc, valid_logloss = metrics_of(valid[1], valid[0])
    test_auc, test_logloss = metrics_of(test[1], test[0]) if test is not None and len(test[1]) else (None, None)
    return {"valid_auc": valid_auc, "valid_logloss": valid_logloss, "test_auc": test_auc, "test_logloss": test_logloss}


# Fewer valid clicks (or non-clicks) than this, and the candidates' valid AUCs cannot tell them apart (an AUC's standard
# error on 100 positives is about 0.03).
FEW_VALID = 100


def choose(
    setting: str,
    deep: str,
    deep_valid: Scores,
    deep_test: Scores | None,
    deep_info: dict[str, Any],
    baselines: dict[str, dict[str, Any]],
    fitted: dict[str, Fitted],
    train_rate: float | None = None,
) -> Choice:
    """Every candidate's figures and the one `setting` picks: "best" (the highest validation AUC; a tie keeps the
    simpler, in the order deep model, baselines, blend), "deep", "blend" or a baseline's name. Warnings when the valid
    split holds too few of a class to rank on, or the chosen candidate's valid logloss is worse than a constant
    predicting `train_rate` (it ranks, yet its probabilities are worse than knowing nothing)."""
    from models.blend import blend, cross_fitted, fit_weights

    candidates: dict[str, dict[str, Any]] = {deep: {"kind": "deep", **_figures(deep_valid, deep_test), **deep_info}}
    for name, found in baselines.items():
        keep = ("kind", "valid_auc", "valid_logloss", "test_auc", "test_logloss", "params", "seconds")
        candidates[name] = {key: found[key] for key in keep}
    weights = None
    if baselines:
        names = list(baselines)
        for name in names:
            if not np.array_equal(fitted[name].valid[1], deep_valid[1]):
                raise RuntimeError(f"the {name} baseline's validation rows are not the deep model's (labels differ)")
        y = deep_valid[1]
        valid_parts = [deep_valid[0], *(fitted[n].valid[0] for n in names)]
        fitted_weights = fit_weights(valid_parts, y)
        weights = dict(zip([DEEP, *names], map(float, fitted_weights), strict=True))
        valid = (cross_fitted(valid_parts, y), y)
        test = None
        if deep_test is not None and all(fitted[n].test is not None for n in names):
            test = (blend([deep_test[0], *(fitted[n].test[0] for n in names)], fitted_weights), deep_test[1])
        candidates[BLEND] = {
            "kind": "blend",
            **_figures(valid, test),
            "params": {
                "parts": [deep, *names],
                "weights": [float(w) for w in fitted_weights],
                "valid": "cross-fitted, 2 interleaved folds",
            },
            "seconds": candidates[deep]["seconds"] + sum(candidates[n]["seconds"] for n in names),
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
    y = np.asarray(deep_valid[1])
    warnings = []
    fewer = min(int(y.sum()), int(y.size - y.sum()))
    if fewer < FEW_VALID:
        what = "clicks" if y.sum() <= y.size - y.sum() else "non-clicks"
        warnings.append(f"the valid split holds {fewer} {what}: too few for its AUCs to tell the candidates apart")
    if train_rate is not None and 0 < train_rate < 1 and candidates[name]["valid_logloss"] is not None:
        from models.metrics import metrics_of

        constant = metrics_of(y, np.full(y.size, train_rate))[1]  # a constant's logloss, as the candidates' is taken
        if candidates[name]["valid_logloss"] > constant:
            warnings.append(
                f"the chosen {name}'s valid logloss {candidates[name]['valid_logloss']:.4f} is worse than a constant at "
                f"the train click rate ({constant:.4f}): its probabilities are not to be used as click rates as they are"
            )
    return Choice(name, kind, name if name in baselines else None, weights if kind == "blend" else None, candidates, warnings)
