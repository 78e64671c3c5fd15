"""The config's sections as the computations' parameter dataclasses (the lower layers take no pydantic models)."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from pydantic import BaseModel

from features.encode import EncoderParams
from features.ingest import IngestParams, JoinSpec
from features.schema import SchemaOptions
from features.sources import SourceOptions
from features.split import SplitParams
from pipeline.config import PipelineConfig

T = TypeVar("T")


def params_from(cls: type[T], section: BaseModel) -> T:
    """The computation's parameter dataclass `cls`, filled from the config section's fields of the same names."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in section.model_dump().items() if k in names})


def ingest_params(cfg: PipelineConfig) -> IngestParams:
    """Translate the config into the ingest computation's parameters."""
    data = cfg.data
    return IngestParams(
        source=SourceOptions(
            format=data.format or "",
            label=data.label,
            separator=data.separator,
            multi_separator=data.multi_separator,
            libsvm_field_ranges=tuple(tuple(r) for r in data.libsvm_field_ranges) if data.libsvm_field_ranges else None,
        ),
        schema=SchemaOptions(
            label=data.label,
            label_threshold=data.label_threshold,
            positive=tuple(data.positive) if data.positive else None,
            categorical=tuple(cfg.schema_.categorical),
            numeric=tuple(cfg.schema_.numeric),
            multi=tuple(cfg.schema_.multi),
            drop=tuple(cfg.schema_.drop),
            time_column=cfg.split.time_column,
            multi_separator=data.multi_separator,
        ),
        split=SplitParams(
            method=cfg.split.method, valid=cfg.split.valid, test=cfg.split.test, time_column=cfg.split.time_column, seed=cfg.split.seed
        ),
        encoder=EncoderParams(
            min_count=cfg.encode.min_count,
            numeric_bucketing=cfg.encode.numeric_bucketing or "auto",
            numeric_bins=cfg.encode.numeric_bins,
            quantile_sample_rows=cfg.encode.quantile_sample_rows,
        ),
        joins=tuple(JoinSpec(path=j.path, key=j.key, format=j.format) for j in data.joins),
    )
