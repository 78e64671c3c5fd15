"""A blend of two models' click probabilities, p = w · p_a + (1 − w) · p_b, its weight fitted on validation rows.

The weight minimises the validation log loss (a proper score, smooth in w; AUC is flat in
places). The blend's own validation figures come from cross-fitting: the rows are cut in
`folds` interleaved parts and each part is scored with the weight fitted on the others, so
that the figure that ranks the blend among the run's candidates was not fitted on the rows it
is measured on. The weight used afterwards is fitted on all validation rows.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

EPS = 1e-7


def _logloss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def blend(p_a: np.ndarray, p_b: np.ndarray, weight: float) -> np.ndarray:
    """w · p_a + (1 − w) · p_b."""
    return weight * p_a + (1.0 - weight) * p_b


def fit_weight(p_a: np.ndarray, p_b: np.ndarray, y: np.ndarray) -> float:
    """The w in [0, 1] with the lowest log loss of the blend on (p_a, p_b, y)."""
    y = y.astype(np.float64)
    found = minimize_scalar(lambda w: _logloss(blend(p_a, p_b, w), y), bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-4})
    return float(found.x)


def cross_fitted(p_a: np.ndarray, p_b: np.ndarray, y: np.ndarray, folds: int = 2) -> np.ndarray:
    """Blend probabilities where row i's weight was fitted on the rows of the other folds (fold = i mod `folds`)."""
    fold = np.arange(len(y)) % folds
    out = np.empty(len(y), dtype=np.float64)
    for k in range(folds):
        held = fold == k
        out[held] = blend(p_a[held], p_b[held], fit_weight(p_a[~held], p_b[~held], y[~held]))
    return out
