"""What every CTR model shares: the feature embedding and the logit interface."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from featuremap import FeatureMap
from models.batching import EncodedBatch
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.layers import MultiHeadSelfAttention


class CTRModel(nn.Module):
    """A model maps an EncodedBatch to one logit per row (each subclass defines `forward`)."""

    def embedding_tables(self) -> list[torch.Tensor]:
        """Every embedding table (what the embedding parameter count counts)."""
        return [w for module in self.modules() if isinstance(module, FeatureEmbedding) for w in module.table_weights().values()]

    def regularized_tables(self) -> list[torch.Tensor]:
        """The tables the embedding regulariser pulls toward zero (by default every embedding table)."""
        return self.embedding_tables()

    def penalty(self) -> torch.Tensor | float:
        """A model's own extra loss term, added to every training step (none by default)."""
        return 0.0


def init_dense_layers(model: nn.Module) -> None:
    """Xavier-normal weights and zero biases for every Linear and Conv1d layer (FuxiCTR's initialisation).

    Attention's Q, K and V projections live in one Linear of three times the width; each third is initialised as
    the separate layer it is in FuxiCTR (Xavier over in + width, not in + 3 * width: sqrt(2) larger).
    """
    for module in model.modules():
        if type(module) in (nn.Linear, nn.Conv1d):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MultiHeadSelfAttention):
                for block in module.qkv.weight.chunk(3):
                    nn.init.xavier_normal_(block)


class LinearPart(nn.Module):
    """First-order term: a bias plus one learned weight per feature value (a dimension-1 embedding).

    Over shared tables (`EmbeddingConfig.shared`, e.g. Unified Embedding's) the weights are shared too, in the
    layout's `first_order` form (for Unified Embedding one 1-wide table of budget / dim rows, so the first-order
    weights take the same fraction of their per-field size as the embeddings do).
    """

    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig) -> None:
        super().__init__()
        shared = embedding.shared.first_order(embedding.dim) if embedding.shared is not None else None
        self.weights = FeatureEmbedding(feature_map, replace(embedding, dim=1, shared=shared))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        return self.weights(batch).sum(dim=(1, 2)) + self.bias
