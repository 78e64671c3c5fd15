"""Model registry: name -> constructor, and one function that builds any model from plain settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pydantic import TypeAdapter, ValidationError

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


@dataclass(frozen=True)
class ModelEntry:
    """A model class and its settings: the config dataclass (None for a model that takes none) and settings fixed by
    this entry's name (AutoInt+'s)."""

    cls: type
    config_cls: type | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def settings(self, params: Mapping[str, Any]) -> Any:
        """The model's config from plain settings (None for a model without one); an unknown setting or one out of
        its range (the config's own check) is an InputError, so bad input reads as such, not as a crash."""
        if self.config_cls is None:
            if params:
                raise InputError(f"model takes no settings, got {', '.join(sorted(params))}")
            return None
        names = {f.name for f in fields(self.config_cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)} for this model; known: {', '.join(sorted(names))}")
        try:  # each setting's type too (`hidden: abc` is no list of ints), then the config's own range checks
            return TypeAdapter(self.config_cls).validate_python({**self.fixed, **params}, strict=False)
        except ValidationError as error:
            first = error.errors()[0]
            if not first["loc"]:  # the config's own check (__post_init__): its message as it is
                raise InputError(f"model settings: {first['msg'].removeprefix('Value error, ')}") from None
            where = ".".join(str(part) for part in first["loc"])
            raise InputError(f"model settings: {where}: {first['msg']} (got {first.get('input')!r})") from None

    def __call__(self, feature_map: FeatureMap, embedding: EmbeddingConfig, params: Mapping[str, Any]) -> CTRModel:
        config = self.settings(params)
        return self.cls(feature_map, embedding) if config is None else self.cls(feature_map, embedding, config)


MODELS: dict[str, ModelEntry] = {
    "lr": ModelEntry(LR),
    "fm": ModelEntry(FM),
    "deepfm": ModelEntry(DeepFM, DeepFMConfig),
    "dnn": ModelEntry(DNN, DNNConfig),
    "dcnv2": ModelEntry(DCNv2, DCNv2Config),
    "autoint": ModelEntry(AutoInt, AutoIntConfig),
    # BARS AutoInt+ on Frappe_x1: 5 attention layers (scaled, layer norm) beside a [400, 400, 400] DNN with batch
    # norm and dropout 0.1.
    "autoint+": ModelEntry(
        AutoInt,
        AutoIntConfig,
        {
            "layers": 5,
            "use_scale": True,
            "layer_norm": True,
            "dnn_hidden": [400, 400, 400],
            "dnn_batch_norm": True,
            "dnn_dropout": 0.1,
        },
    ),
    "fgcnn": ModelEntry(FGCNN, FGCNNConfig),
}


def _entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    return MODELS[name]


def check_settings(name: str, params: Mapping[str, Any] | None = None) -> None:
    """Check a model's name and settings without building it (no feature map needed): an InputError where
    `build_model` would raise one, so that a run can refuse them before its ingest and rank stages."""
    _entry(name).settings(dict(params or {}))


def build_model(name: str, feature_map: FeatureMap, embedding: EmbeddingConfig, params: dict | None = None) -> CTRModel:
    """The model called `name`; an unknown name or setting is a InputError."""
    model = _entry(name)(feature_map, embedding, dict(params or {}))
    init_dense_layers(model)
    return model
