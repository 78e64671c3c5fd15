"""Quantile buckets: the edges of `bins` equal-frequency buckets of a sample, shared by the encoder's numeric fields,
the encodings' derived values and the ingest's id test."""

from __future__ import annotations

import numpy as np


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """The distinct inner edges of `bins` quantile buckets of `values` (fewer when values repeat); a value v falls in
    bucket searchsorted(edges, v, side="right")."""
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
