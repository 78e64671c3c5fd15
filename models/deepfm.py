"""DeepFM: an FM and an MLP over the same embeddings, logits added."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from featuremap import FeatureMap
from models.base import CTRModel, LinearPart
from models.batching import EncodedBatch
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.layers import MLP, fm_interaction


@dataclass(frozen=True)
class DeepFMConfig:
    hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    dropout: float = 0.0
    batch_norm: bool = False


class DeepFM(CTRModel):
    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig, config: DeepFMConfig | None = None) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, embedding)
        config = config or DeepFMConfig()
        self.linear = LinearPart(feature_map, embedding)
        self.dnn = MLP(self.embedding.num_fields * embedding.dim, config.hidden, config.dropout, config.batch_norm, out_dim=1)

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        e = self.embedding(batch)
        return self.linear(batch) + fm_interaction(e) + self.dnn(e.flatten(1)).squeeze(1)
