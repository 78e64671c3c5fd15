"""Cross-product vocabularies for memorised feature pairs (OptInter's "memorise" candidate).

A pair (a, b) of single-valued fields is keyed by id_a * vocab_b + id_b; the
memorised vocabulary holds the keys seen at least `min_count` times in the
train split, sorted so that models look keys up with a binary search. Keys
outside it go to the pair's own OOV row.
"""

from __future__ import annotations

import numpy as np


def cross_keys(a: np.ndarray, b: np.ndarray, vocab_b: int) -> np.ndarray:
    """The int64 key of every row's (a, b) value pair."""
    return a.astype(np.int64) * int(vocab_b) + b.astype(np.int64)


def cross_vocabulary(a: np.ndarray, b: np.ndarray, vocab_b: int, min_count: int) -> np.ndarray:
    """Sorted keys of the (a, b) value pairs seen at least `min_count` times."""
    keys, counts = np.unique(cross_keys(a, b, vocab_b), return_counts=True)
    return keys[counts >= min_count]
