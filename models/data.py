"""An encoded split held in memory as numpy arrays, served as shuffled EncodedBatches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from featuremap import FeatureMap
from models.batching import EncodedBatch, ListColumn, NumericInput, make_batch


def _take_list(column: ListColumn, rows: np.ndarray) -> ListColumn:
    """Rows `rows` of a (flat ids, offsets) column, vectorised."""
    flat, offsets = column
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    new_offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    within = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], lengths)
    return flat[np.repeat(starts, lengths) + within], new_offsets


class InMemoryData:
    """Columns of one encoded split (ids, values, multi-valued (ids, offsets)) and its labels."""

    def __init__(
        self, columns: Mapping[str, np.ndarray | ListColumn], label: np.ndarray, feature_map: FeatureMap, numeric_as_value: NumericInput
    ) -> None:
        self.columns = dict(columns)
        self.label = np.asarray(label)
        self.feature_map = feature_map
        self.numeric_as_value = numeric_as_value

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def batches_of(self, rows: np.ndarray) -> Iterator[EncodedBatch]:
        """One batch of exactly these rows (nothing when `rows` is empty)."""
        if len(rows):
            columns = {name: _take_list(col, rows) if isinstance(col, tuple) else col[rows] for name, col in self.columns.items()}
            yield make_batch(columns, self.label[rows], self.feature_map, self.numeric_as_value)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0, start: int = 0) -> Iterator[EncodedBatch]:
        """Consecutive batches (a permutation drawn from `seed` when `shuffle`), from batch number `start` on."""
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else None
        for first in range(start * batch_size, len(self), batch_size):
            rows = order[first : first + batch_size] if order is not None else np.arange(first, min(first + batch_size, len(self)))
            yield from self.batches_of(rows)
