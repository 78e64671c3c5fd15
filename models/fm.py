"""Factorisation machine: first-order weights plus the inner products of all field pairs."""

from __future__ import annotations

import torch

from featuremap import FeatureMap
from models.base import CTRModel, LinearPart
from models.batching import EncodedBatch
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.layers import fm_interaction


class FM(CTRModel):
    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, embedding)
        self.linear = LinearPart(feature_map, embedding)

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        return self.linear(batch) + fm_interaction(self.embedding(batch))
