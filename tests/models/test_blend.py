"""The blend's weight is fitted on validation rows; its ranking figure is cross-fitted."""

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from models.blend import blend, cross_fitted, fit_weight


def _two_views(rows: int, seed: int):
    """Two models that each see half of the signal: their blend beats both."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(a + b)))).astype(np.int8)
    return 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b)), y


def test_weight_minimises_log_loss_and_the_blend_beats_both_parts():
    p_a, p_b, y = _two_views(20_000, 0)
    w = fit_weight(p_a, p_b, y)
    assert 0.4 < w < 0.6  # symmetric views
    grid = [log_loss(y, blend(p_a, p_b, g)) for g in np.linspace(0, 1, 101)]
    assert log_loss(y, blend(p_a, p_b, w)) <= min(grid) + 1e-6
    assert roc_auc_score(y, blend(p_a, p_b, w)) > max(roc_auc_score(y, p_a), roc_auc_score(y, p_b)) + 0.02


def test_a_useless_second_model_gets_no_weight():
    p_a, _, y = _two_views(20_000, 1)
    noise = np.random.default_rng(2).random(len(y))
    assert fit_weight(p_a, noise, y) > 0.9 and fit_weight(noise, p_a, y) < 0.1


def test_cross_fitted_rows_never_use_a_weight_fitted_on_themselves():
    p_a, p_b, y = _two_views(1_000, 3)
    crossed = cross_fitted(p_a, p_b, y, folds=2)
    even, odd = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    np.testing.assert_allclose(crossed[even], blend(p_a[even], p_b[even], fit_weight(p_a[odd], p_b[odd], y[odd])))
    np.testing.assert_allclose(crossed[odd], blend(p_a[odd], p_b[odd], fit_weight(p_a[even], p_b[even], y[even])))
