"""A convex blend of models' click probabilities, p = Σ_k w_k · p_k (w ≥ 0, Σ w = 1), its weights fitted on validation rows.

The weights minimise the validation log loss (a proper score, smooth in w; AUC is flat in
places), by SLSQP on the simplex. The blend's own validation figures come from cross-fitting: the
rows are cut in `folds` interleaved parts and each part is scored with the weights fitted on the
others, so that the figure that ranks the blend among the run's candidates was not fitted on the
rows it is measured on. The weights used afterwards are fitted on all validation rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

EPS = 1e-7


def blend(parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Σ_k w_k · p_k."""
    return np.column_stack(parts) @ np.asarray(weights, dtype=np.float64)


def fit_weights(parts: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """The weights on the simplex with the lowest log loss of the blend of `parts` against labels `y`."""
    probs = np.column_stack(parts).astype(np.float64)
    k = probs.shape[1]
    if k == 1:
        return np.ones(1)
    y = y.astype(np.float64)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        p = np.clip(probs @ w, EPS, 1 - EPS)
        value = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
        slope = -(y / p - (1 - y) / (1 - p)) / len(y)
        return float(value), probs.T @ slope

    found = minimize(
        loss,
        np.full(k, 1.0 / k),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-12, "maxiter": 200},
    )
    weights = np.clip(found.x, 0.0, 1.0)
    return weights / weights.sum()


def cross_fitted(parts: Sequence[np.ndarray], y: np.ndarray, folds: int = 2) -> np.ndarray:
    """Blend probabilities where row i's weights were fitted on the rows of the other folds (fold = i mod `folds`)."""
    fold = np.arange(len(y)) % folds
    out = np.empty(len(y), dtype=np.float64)
    for k in range(folds):
        held = fold == k
        out[held] = blend([p[held] for p in parts], fit_weights([p[~held] for p in parts], y[~held]))
    return out
