"""The encoded rows as one numeric matrix, the input of the GBDT baselines (the ingest splits, or predict's raw rows).

Categorical and multi-valued fields are their encoded ids (one id per row: the value, or the set
of values), to be declared categorical; numeric fields their standardised values. Ids are fed as
float32, or float64 when a field's id space passes 2^24 (float32 would merge ids).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from featuremap import FeatureMap

FLOAT32_EXACT = 2**24  # ids up to this stay exact as float32


def tabular_columns(feature_map: FeatureMap) -> tuple[list[str], list[str], type]:
    """(the encoded columns, those of them that are categorical, the float type that keeps ids exact), in field order."""
    columns, categorical = [], []
    for spec in feature_map.fields:
        if spec.kind == "numeric" and spec.value_column:
            columns.append(spec.value_column)
        else:
            columns.append(spec.rank_column)
            categorical.append(spec.rank_column)
    dtype = np.float64 if max((f.rank_cardinality for f in feature_map.fields), default=0) > FLOAT32_EXACT else np.float32
    return columns, categorical, dtype


def tabular(frame: pl.DataFrame, columns: list[str], dtype: type) -> np.ndarray:
    """`columns` of encoded rows as one [rows, columns] matrix of `dtype`."""
    return np.column_stack([frame[c].cast(pl.Float64).to_numpy().astype(dtype) for c in columns])
