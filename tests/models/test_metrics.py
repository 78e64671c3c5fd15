"""The one AUC and logloss every stage reports."""

import numpy as np
import pytest
from sklearn.metrics import log_loss

from models.metrics import metrics_of


def test_a_float32_models_logloss_is_taken_in_float64():
    # A deep model's probabilities are float32, a blend's float64: the same probabilities give the same logloss.
    rng = np.random.default_rng(7)
    y = (rng.random(50_000) < 0.2).astype(np.int8)
    p = (1 / (1 + np.exp(-(rng.normal(size=y.size) + y)))).astype(np.float32)
    p[:2] = [0.0, 1.0]  # clipped
    assert metrics_of(y, p) == metrics_of(y, p.astype(np.float64))
    assert metrics_of(y, p)[1] != pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-9)  # float32's own
    assert p[0] == 0.0  # the caller's array is left as it was
