"""The blend's weights are fitted on validation rows; its ranking figure is cross-fitted."""

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from models.blend import blend, cross_fitted, fit_weights


def _views(rows: int, seed: int, k: int = 2):
    """k models that each see 1/k of the signal: their blend beats each."""
    rng = np.random.default_rng(seed)
    signals = rng.normal(size=(k, rows))
    y = (rng.random(rows) < 1 / (1 + np.exp(-signals.sum(axis=0)))).astype(np.int8)
    return [1 / (1 + np.exp(-s)) for s in signals], y


def test_weights_minimise_log_loss_and_the_blend_beats_both_parts():
    (p_a, p_b), y = _views(20_000, 0)
    w = fit_weights([p_a, p_b], y)
    assert abs(w.sum() - 1) < 1e-12 and 0.4 < w[0] < 0.6  # symmetric views
    grid = [log_loss(y, blend([p_a, p_b], [g, 1 - g])) for g in np.linspace(0, 1, 101)]
    assert log_loss(y, blend([p_a, p_b], w)) <= min(grid) + 1e-6
    assert roc_auc_score(y, blend([p_a, p_b], w)) > max(roc_auc_score(y, p_a), roc_auc_score(y, p_b)) + 0.02


def test_three_parts_share_the_weight_and_a_useless_part_gets_none():
    parts, y = _views(30_000, 4, k=3)
    w = fit_weights(parts, y)
    assert np.all(w > 0.25) and abs(w.sum() - 1) < 1e-12
    noise = np.random.default_rng(5).random(len(y))
    w = fit_weights([*parts, noise], y)
    assert w[3] < 0.02 and np.all(w >= 0)
    two = parts[:2]
    assert log_loss(y, blend([*parts, noise], w)) < log_loss(y, blend(two, fit_weights(two, y)))


def test_a_useless_second_model_gets_no_weight():
    (p_a, _), y = _views(20_000, 1)
    noise = np.random.default_rng(2).random(len(y))
    assert fit_weights([p_a, noise], y)[0] > 0.9 and fit_weights([noise, p_a], y)[0] < 0.1


def test_cross_fitted_rows_never_use_weights_fitted_on_themselves():
    parts, y = _views(1_000, 3, k=3)
    crossed = cross_fitted(parts, y, folds=2)
    even, odd = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    np.testing.assert_allclose(crossed[even], blend([p[even] for p in parts], fit_weights([p[odd] for p in parts], y[odd])))
    np.testing.assert_allclose(crossed[odd], blend([p[odd] for p in parts], fit_weights([p[even] for p in parts], y[even])))
