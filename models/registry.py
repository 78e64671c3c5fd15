"""Model registry: name -> constructor, and one function that builds any model from plain settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from featuremap import FeatureMap
from featuremap.errors import InputError
from models.autoint import AutoInt, AutoIntConfig
from models.base import CTRModel, init_dense_layers
from models.dcnv2 import DCNv2, DCNv2Config
from models.deepfm import DeepFM, DeepFMConfig
from models.dnn import DNN, DNNConfig
from models.embedding import EmbeddingConfig
from models.fgcnn import FGCNN, FGCNNConfig
from models.fm import FM
from models.lr import LR


def _with_config(cls: type, config_cls: type, **fixed: Any) -> Callable[[FeatureMap, EmbeddingConfig, dict], CTRModel]:
    names = {f.name for f in fields(config_cls)}

    def build(feature_map: FeatureMap, embedding: EmbeddingConfig, params: dict) -> CTRModel:
        unknown = sorted(set(params) - names)
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)} for this model; known: {', '.join(sorted(names))}")
        try:
            config = config_cls(**{**fixed, **params})
        except ValueError as error:  # a setting out of its range (a config's own check): bad input, not a crash
            raise InputError(f"model settings: {error}") from None
        return cls(feature_map, embedding, config)

    return build


def _plain(cls: type) -> Callable[[FeatureMap, EmbeddingConfig, dict], CTRModel]:
    def build(feature_map: FeatureMap, embedding: EmbeddingConfig, params: dict) -> CTRModel:
        if params:
            raise InputError(f"model takes no settings, got {', '.join(sorted(params))}")
        return cls(feature_map, embedding)

    return build


MODELS: dict[str, Callable[[FeatureMap, EmbeddingConfig, dict], CTRModel]] = {
    "lr": _plain(LR),
    "fm": _plain(FM),
    "deepfm": _with_config(DeepFM, DeepFMConfig),
    "dnn": _with_config(DNN, DNNConfig),
    "dcnv2": _with_config(DCNv2, DCNv2Config),
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
}


def build_model(name: str, feature_map: FeatureMap, embedding: EmbeddingConfig, params: dict | None = None) -> CTRModel:
    """The model called `name`; an unknown name or setting is a InputError."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    model = MODELS[name](feature_map, embedding, dict(params or {}))
    init_dense_layers(model)
    return model
