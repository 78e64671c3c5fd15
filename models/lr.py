"""Logistic regression over one-hot feature values."""

from __future__ import annotations

import torch

from featuremap import FeatureMap
from models.base import CTRModel, LinearPart
from models.batching import EncodedBatch
from models.embedding import EmbeddingConfig


class LR(CTRModel):
    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig) -> None:
        super().__init__()
        self.linear = LinearPart(feature_map, embedding)

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        return self.linear(batch)
