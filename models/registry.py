"""Model registry: name -> constructor, and one function that builds any model from plain settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from common.errors import UserError
from common.featuremap import FeatureMap
from models.autoint import AutoInt, AutoIntConfig
from models.base import CTRModel, init_dense_layers
from models.batching import sparse_fields
from models.deepfm import DeepFM, DeepFMConfig
from models.embedding import EmbeddingConfig, MultiplexConfig, chunks_by_cardinality
from models.fgcnn import FGCNN, FGCNNConfig
from models.fm import FM
from models.lr import LR


def _with_config(cls: type, config_cls: type, **fixed: Any) -> Callable[[FeatureMap, EmbeddingConfig, dict], CTRModel]:
    names = {f.name for f in fields(config_cls)}

    def build(feature_map: FeatureMap, embedding: EmbeddingConfig, params: dict) -> CTRModel:
        unknown = sorted(set(params) - names)
        if unknown:
            raise UserError(f"unknown setting(s) {', '.join(unknown)} for this model; known: {', '.join(sorted(names))}")
        return cls(feature_map, embedding, config_cls(**{**fixed, **params}))

    return build


def _plain(cls: type) -> Callable[[FeatureMap, EmbeddingConfig, dict], CTRModel]:
    def build(feature_map: FeatureMap, embedding: EmbeddingConfig, params: dict) -> CTRModel:
        if params:
            raise UserError(f"model takes no settings, got {', '.join(sorted(params))}")
        return cls(feature_map, embedding)

    return build


# Models that take Unified Embedding's shared tables in place of their one embedding module (FGCNN has two, LR
# one-wide weights: a budget would not mean the same there).
UNIFIED_BASES = ("autoint", "autoint+", "deepfm", "fm")


def _feature_chunks(rule: Any, feature_map: FeatureMap, embedding: EmbeddingConfig, chunks: int) -> tuple[int, ...] | None:
    """Unified Embedding's chunk count per sparse field from `chunk_counts`: "uniform" (every field `chunks`),
    "cardinality" (more for larger vocabularies), or a {field: count} mapping (the train stage turns "rank" into one
    from the rank stage's ranking)."""
    names = {f.name: f.vocab_size for f in sparse_fields(feature_map, embedding.numeric_as_value)}
    if rule == "uniform":
        return None
    if rule == "cardinality":
        counts = chunks_by_cardinality(names, chunks)
    elif rule == "rank":
        raise UserError("unified embedding: chunk_counts 'rank' needs the rank stage's ranking; run rank before train")
    elif isinstance(rule, dict):
        missing = sorted(set(names) - set(rule))
        if missing:
            raise UserError(f"unified embedding: chunk_counts has no count for field(s) {', '.join(missing)}")
        counts = rule
    else:
        raise UserError(f"unified embedding: chunk_counts must be uniform, cardinality, rank or a {{field: count}} mapping, got {rule!r}")
    return tuple(int(counts[name]) for name in names)


def _unified(feature_map: FeatureMap, embedding: EmbeddingConfig, params: dict) -> CTRModel:
    """A model over Unified Embedding: `base` (default autoint), `budget` (default a quarter of per-field tables),
    `tables`, `chunks` (the most per feature), `chunk_counts`, `field_vectors`; the rest are the base model's settings."""
    params = dict(params)
    base = params.pop("base", "autoint")
    if base not in UNIFIED_BASES:
        raise UserError(f"unified embedding: base model {base!r} cannot take shared tables; use one of {', '.join(UNIFIED_BASES)}")
    per_field = sum(f.vocab_size for f in feature_map.fields) * embedding.dim
    chunks = int(params.pop("chunks", 1))
    multiplex = MultiplexConfig(
        budget=int(params.pop("budget", per_field // 4)),
        tables=int(params.pop("tables", 1)),
        chunks=chunks,
        seed=int(params.pop("hash_seed", 0)),
        field_vectors=bool(params.pop("field_vectors", False)),
        feature_chunks=_feature_chunks(params.pop("chunk_counts", "uniform"), feature_map, embedding, chunks),
    )
    try:
        shared = replace(embedding, multiplex=multiplex)
        return MODELS[base](feature_map, shared, params)
    except ValueError as exc:
        raise UserError(f"unified embedding: {exc}") from exc


MODELS: dict[str, Callable[[FeatureMap, EmbeddingConfig, dict], CTRModel]] = {
    "lr": _plain(LR),
    "fm": _plain(FM),
    "deepfm": _with_config(DeepFM, DeepFMConfig),
    "autoint": _with_config(AutoInt, AutoIntConfig),
    # BARS AutoInt+ on Frappe_x1: 5 attention layers (scaled, layer norm) beside a [400, 400, 400] DNN with batch
    # norm and dropout 0.1.
    "autoint+": _with_config(
        AutoInt,
        AutoIntConfig,
        layers=5,
        use_scale=True,
        layer_norm=True,
        dnn_hidden=[400, 400, 400],
        dnn_batch_norm=True,
        dnn_dropout=0.1,
    ),
    "fgcnn": _with_config(FGCNN, FGCNNConfig),
    "unified": _unified,
}


def build_model(name: str, feature_map: FeatureMap, embedding: EmbeddingConfig, params: dict | None = None) -> CTRModel:
    """The model called `name`; an unknown name or setting is a UserError."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    model = MODELS[name](feature_map, embedding, dict(params or {}))
    init_dense_layers(model)
    return model
