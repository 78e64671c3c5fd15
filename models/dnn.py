"""DNN: an MLP over the concatenated field embeddings (FuxiCTR's and BARS' DNN baseline)."""

from __future__ import annotations

import torch

from featuremap import FeatureMap
from models.base import CTRModel
from models.batching import EncodedBatch
from models.deepfm import DeepFMConfig as DNNConfig  # the same MLP settings: hidden, dropout, batch_norm
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.layers import MLP


class DNN(CTRModel):
    """No first-order term and no dot products between fields: every field meets the others only in the MLP's
    first layer, whose weights are the field's own (what lets Unified Embedding's cross-field collisions be told
    apart, docs/methods/unified.md)."""

    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig, config: DNNConfig | None = None) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, embedding)
        config = config or DNNConfig()
        self.dnn = MLP(self.embedding.num_fields * embedding.dim, config.hidden, config.dropout, config.batch_norm, out_dim=1)

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        return self.dnn(self.embedding(batch).flatten(1)).squeeze(1)
