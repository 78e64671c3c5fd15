"""AutoInt and AutoInt+ (Song et al., 2019): stacked multi-head self-attention over field embeddings.

AutoInt+ adds a parallel DNN on the flat embeddings whose logit is added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from featuremap import FeatureMap
from models.base import CTRModel
from models.batching import EncodedBatch
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.layers import MLP, MultiHeadSelfAttention


@dataclass(frozen=True)
class AutoIntConfig:
    """BARS Frappe_x1 AutoInt: 6 layers, 4 heads, attention dim 128, residual, no DNN."""

    layers: int = 6
    heads: int = 4
    attention_dim: int = 128
    residual: bool = True
    layer_norm: bool = False
    use_scale: bool = False  # scores / sqrt(d_h); BARS AutoInt off, AutoInt+ on
    dnn_hidden: list[int] = field(default_factory=list)  # non-empty: AutoInt+
    dnn_dropout: float = 0.0
    dnn_batch_norm: bool = False


class AutoInt(CTRModel):
    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig, config: AutoIntConfig | None = None) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, embedding)
        config = config or AutoIntConfig()
        dims = [embedding.dim] + [config.attention_dim] * config.layers
        self.attention = nn.Sequential(
            *[
                MultiHeadSelfAttention(dims[i], config.attention_dim, config.heads, config.residual, config.layer_norm, config.use_scale)
                for i in range(config.layers)
            ]
        )
        fields = self.embedding.num_fields
        self.output = nn.Linear(fields * dims[-1], 1)
        self.dnn = (
            MLP(fields * embedding.dim, config.dnn_hidden, config.dnn_dropout, config.dnn_batch_norm, out_dim=1)
            if config.dnn_hidden
            else None
        )

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        e = self.embedding(batch)
        logit = self.output(self.attention(e).flatten(1)).squeeze(1)
        if self.dnn is not None:
            logit = logit + self.dnn(e.flatten(1)).squeeze(1)
        return logit
