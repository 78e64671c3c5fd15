"""FGCNN (Liu et al., 2019): convolutional feature generation, then an IPNN head.

Two embeddings of the same fields: one feeds the feature generator, one the
classifier. The generator stacks, per layer i, a Conv2d over the field axis
(kernel h_i × 1, "same" height, m_i channels, tanh), a max-pool p_i × 1 over
fields (ceil, so no field is dropped), and a recombination: flatten, dense to
r_i · F_i · d with tanh, reshaped into r_i · F_i new d-dimensional features.
The raw and generated features (N in all) go to an IPNN head: all
N(N − 1)/2 inner products beside the flat embeddings, into a ReLU MLP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from featuremap import FeatureMap
from models.base import CTRModel
from models.batching import EncodedBatch
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.layers import MLP


@dataclass(frozen=True)
class FGCNNConfig:
    """Defaults from the paper's and FuxiCTR's settings (channels 14-20, kernel 7, pool 2, 3 recombined maps)."""

    channels: list[int] = field(default_factory=lambda: [14, 16, 18, 20])
    kernel_heights: list[int] = field(default_factory=lambda: [7, 7, 7, 7])
    pooling_sizes: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    recombined_channels: list[int] = field(default_factory=lambda: [3, 3, 3, 3])
    # On (FuxiCTR's default): without it the tanh maps of the 1e-4-scale initial embeddings are nearly constant
    # and FGCNN learns slowly (Frappe valid AUC 0.931 vs 0.971 after 3 epochs). Known risk: some seeds stall at
    # AUC 0.5 with it; a lower lr or another seed helps.
    conv_batch_norm: bool = True
    dnn_hidden: list[int] = field(default_factory=lambda: [1000, 1000, 1000])
    dnn_dropout: float = 0.0
    dnn_batch_norm: bool = False
    share_embedding: bool = False


class FeatureGenerator(nn.Module):
    """The convolution / pooling / recombination stack: [rows, F, d] -> [rows, new fields, d]."""

    def __init__(self, fields: int, dim: int, config: FGCNNConfig) -> None:
        super().__init__()
        sizes = {len(config.channels), len(config.kernel_heights), len(config.pooling_sizes), len(config.recombined_channels)}
        if len(sizes) != 1:
            raise ValueError("channels, kernel_heights, pooling_sizes and recombined_channels need one entry per layer")
        self.dim = dim
        self.convs = nn.ModuleList()
        self.recombine = nn.ModuleList()
        height, in_channels = fields, 1
        self.new_fields = 0
        for channels, kernel, pool, recombined in zip(
            config.channels, config.kernel_heights, config.pooling_sizes, config.recombined_channels, strict=True
        ):
            layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, kernel_size=(kernel, 1), padding="same")]
            if config.conv_batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            layers += [nn.Tanh(), nn.MaxPool2d((pool, 1), ceil_mode=True)]
            self.convs.append(nn.Sequential(*layers))
            height = math.ceil(height / pool)
            self.recombine.append(nn.Sequential(nn.Linear(channels * height * dim, recombined * height * dim), nn.Tanh()))
            self.new_fields += recombined * height
            in_channels = channels

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        rows = embeddings.shape[0]
        maps = embeddings.unsqueeze(1)  # [rows, 1 channel, F, d]
        new = []
        for conv, recombine in zip(self.convs, self.recombine, strict=True):
            maps = conv(maps)
            new.append(recombine(maps.flatten(1)).view(rows, -1, self.dim))
        return torch.cat(new, dim=1)


def inner_products(embeddings: torch.Tensor) -> torch.Tensor:
    """<e_i, e_j> for every field pair i < j: [rows, N, d] -> [rows, N(N-1)/2]."""
    fields = embeddings.shape[1]
    upper = torch.triu_indices(fields, fields, offset=1, device=embeddings.device)
    gram = torch.bmm(embeddings, embeddings.transpose(1, 2))
    return gram[:, upper[0], upper[1]]


class FGCNN(CTRModel):
    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig, config: FGCNNConfig | None = None) -> None:
        super().__init__()
        config = config or FGCNNConfig()
        self.embedding = FeatureEmbedding(feature_map, embedding)
        self.generator_embedding = None if config.share_embedding else FeatureEmbedding(feature_map, embedding)
        fields = self.embedding.num_fields
        self.generator = FeatureGenerator(fields, embedding.dim, config)
        total = fields + self.generator.new_fields
        self.dnn = MLP(
            total * embedding.dim + total * (total - 1) // 2, config.dnn_hidden, config.dnn_dropout, config.dnn_batch_norm, out_dim=1
        )

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        raw = self.embedding(batch)
        source = self.generator_embedding(batch) if self.generator_embedding is not None else raw
        combined = torch.cat([raw, self.generator(source)], dim=1)
        return self.dnn(torch.cat([combined.flatten(1), inner_products(combined)], dim=1)).squeeze(1)
