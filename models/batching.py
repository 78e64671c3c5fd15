"""Model inputs built from encoded arrays: sparse ids in KeyedJaggedTensor layout, dense values, labels.

Everything is vectorised: single-valued fields contribute one id per row,
multi-valued fields arrive as (flat ids, row offsets) pairs, as pyarrow list
columns store them, so no Python code runs per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from featuremap import FeatureMap, FieldSpec

# A multi-valued column: flat ids and offsets (len rows + 1), as in a pyarrow ListArray.
ListColumn = tuple[np.ndarray, np.ndarray]
# How numeric fields reach a model: False, bucket ids (looked up like ids); True, standardised values; "both", each
# numeric field twice, its bucket id among the sparse fields and its value among the dense ones.
NumericInput = bool | Literal["both"]


@dataclass
class EncodedBatch:
    """One batch: sparse ids field-major (the KJT layout), numeric values and labels."""

    keys: list[str]
    values: torch.Tensor  # int64, all ids of field 0 for every row, then field 1, ...
    lengths: torch.Tensor  # int32, len(keys) * rows: ids per (field, row)
    dense: torch.Tensor  # float32 [rows, numeric fields] (width 0 when there are none)
    label: torch.Tensor  # float32 [rows]

    @property
    def rows(self) -> int:
        return int(self.label.shape[0])

    def to(self, device: torch.device) -> EncodedBatch:
        """The batch on `device`."""
        return EncodedBatch(
            self.keys,
            self.values.to(device, non_blocking=True),
            self.lengths.to(device, non_blocking=True),
            self.dense.to(device, non_blocking=True),
            self.label.to(device, non_blocking=True),
        )

    def kjt(self):  # -> torchrec.KeyedJaggedTensor (imported lazily: torchrec is optional at import time)
        """The sparse part as a torchrec KeyedJaggedTensor."""
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        return KeyedJaggedTensor(keys=self.keys, values=self.values, lengths=self.lengths)


def sparse_fields(feature_map: FeatureMap, numeric_as_value: NumericInput) -> list[FieldSpec]:
    """Fields looked up in embedding tables (numeric ones by bucket id unless fed as values alone), in feature-map order."""
    return [f for f in feature_map.fields if not (numeric_as_value is True and f.kind == "numeric")]


def dense_fields(feature_map: FeatureMap, numeric_as_value: NumericInput) -> list[FieldSpec]:
    """Numeric fields fed as standardised values (value × field vector, or the piecewise-linear encoding)."""
    return [f for f in feature_map.fields if numeric_as_value and f.kind == "numeric"]


def make_batch(
    columns: Mapping[str, np.ndarray | ListColumn],
    label: np.ndarray,
    feature_map: FeatureMap,
    numeric_as_value: NumericInput = False,
) -> EncodedBatch:
    """Build an EncodedBatch from encoded columns (ids per field; (ids, offsets) for multi-valued)."""
    rows = int(label.shape[0])
    values, lengths = [], []
    for spec in sparse_fields(feature_map, numeric_as_value):
        column = columns[spec.column]
        if isinstance(column, tuple):
            flat, offsets = column
            values.append(np.asarray(flat, dtype=np.int64))
            lengths.append(np.diff(np.asarray(offsets, dtype=np.int64)).astype(np.int32))
        else:
            values.append(np.asarray(column, dtype=np.int64))
            lengths.append(np.ones(rows, dtype=np.int32))
    dense = [np.asarray(columns[spec.value_column], dtype=np.float32) for spec in dense_fields(feature_map, numeric_as_value)]
    return EncodedBatch(
        keys=[spec.name for spec in sparse_fields(feature_map, numeric_as_value)],
        values=torch.from_numpy(np.concatenate(values) if values else np.zeros(0, dtype=np.int64)),
        lengths=torch.from_numpy(np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int32)),
        dense=torch.from_numpy(np.stack(dense, axis=1) if dense else np.zeros((rows, 0), dtype=np.float32)),
        label=torch.from_numpy(np.asarray(label, dtype=np.float32)),
    )
