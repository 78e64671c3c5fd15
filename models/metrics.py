"""The AUC and logloss every stage reports (train, the baselines, distributed training, predict): one function, so that
predict's figures on the test rows are the train stage's to the bit.

Both are scikit-learn's: ROC AUC, and logloss with probabilities clipped to [1e-7, 1 - 1e-7] and taken in float64
(`log_loss` computes a float32 array in float32: a deep model's logloss was off by ~1e-7 from the same probabilities as
float64, a blend's).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

CLIP = 1e-7


def metrics_of(label: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """ROC AUC and logloss of click probabilities `prob` against 0/1 `label`."""
    p = np.clip(np.asarray(prob, dtype=np.float64), CLIP, 1 - CLIP)
    return float(roc_auc_score(label, prob)), float(log_loss(label, p, labels=[0, 1]))
