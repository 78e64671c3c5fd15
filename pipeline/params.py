"""The config's data sections as the ingest computation's parameters (the trainer, the ranking and the methods take
their settings classes directly: the config's sections are, or extend, those classes)."""

from __future__ import annotations

from features.encode import EncoderParams
from features.ingest import IngestParams, JoinSpec
from features.schema import SchemaOptions
from features.sources import SourceOptions
from features.split import SplitParams
from pipeline.config import PipelineConfig


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
            text_columns=tuple(data.text_columns),
            null_values=tuple(data.null_values),
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
