"""DCN-V2 (Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale Learning to Rank
Systems", WWW 2021): a cross network of full-rank (or low-rank mixture) cross layers beside or before an MLP, over the
concatenated field embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import nn

from featuremap import FeatureMap
from models.base import CTRModel
from models.batching import EncodedBatch
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.layers import MLP

Structure = Literal["parallel", "stacked", "crossnet_only"]


@dataclass(frozen=True)
class DCNv2Config:
    """FuxiCTR's DCNv2 settings: `structure` parallel (cross network and MLP side by side on the embeddings, outputs
    concatenated), stacked (the MLP over the cross network's output) or crossnet_only; `low_rank` > 0 takes the
    paper's mixture of `experts` low-rank cross layers (DCN-Mix) instead of the full-rank ones."""

    structure: Structure = "parallel"
    cross_layers: int = 3
    low_rank: int = 0
    experts: int = 4
    hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    dropout: float = 0.0
    batch_norm: bool = False

    def __post_init__(self) -> None:
        if self.structure not in get_args(Structure):
            raise ValueError(f"structure {self.structure!r}: use {', '.join(get_args(Structure))}")
        if self.cross_layers < 1 or self.low_rank < 0 or self.experts < 1:
            raise ValueError("cross_layers and experts must be at least 1, low_rank at least 0")
        if self.structure != "crossnet_only" and not self.hidden:
            raise ValueError(f"structure {self.structure!r} needs hidden layers")


class CrossNetV2(nn.Module):
    """x_{l+1} = x_0 * (W_l x_l + b_l) + x_l with a full d x d matrix W_l per layer (the paper's eq. 1): after L
    layers each output is a polynomial of degree at most L + 1 in x_0."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = torch.addcmul(x, x0, layer(x))
        return x


class CrossNetMix(nn.Module):
    """The paper's mixture of low-rank cross layers (eq. 3-4): expert i computes x_0 * (U_i g(C_i g(V_i^T x_l)) + b)
    with rank r matrices and g = tanh; a softmax gate over x_l weighs the experts; the residual x_l is added."""

    def __init__(self, dim: int, layers: int, rank: int, experts: int) -> None:
        super().__init__()

        def weights(*shape: int) -> nn.ParameterList:
            # each expert's matrix Xavier-initialised as the 2-d matrix it is (fans from its own two sides)
            return nn.ParameterList(
                nn.Parameter(torch.stack([nn.init.xavier_normal_(torch.empty(*shape[1:])) for _ in range(shape[0])])) for _ in range(layers)
            )

        self.v = weights(experts, dim, rank)
        self.c = weights(experts, rank, rank)
        self.u = weights(experts, rank, dim)
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(layers))
        self.gates = nn.ModuleList(nn.Linear(dim, 1, bias=False) for _ in range(experts))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for v, c, u, b in zip(self.v, self.c, self.u, self.bias, strict=True):
            low = torch.tanh(torch.einsum("bd,edr->ber", x, v))  # [rows, experts, rank]
            low = torch.tanh(torch.einsum("ber,ers->bes", low, c))
            experts = x0.unsqueeze(1) * (torch.einsum("ber,erd->bed", low, u) + b)  # [rows, experts, dim]
            gate = torch.softmax(torch.cat([g(x) for g in self.gates], dim=1), dim=1)  # [rows, experts]
            x = torch.einsum("bed,be->bd", experts, gate) + x
        return x


class DCNv2(CTRModel):
    """The cross network and the MLP read the flattened embeddings; one linear layer makes the logit of their
    (concatenated, parallel) or the MLP's (stacked) or the cross network's (crossnet_only) output. The cross layers'
    weights are per input coordinate, so each field's slice of x_0 has its own weights, as in the MLP's first layer."""

    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig, config: DCNv2Config | None = None) -> None:
        super().__init__()
        self.config = config = config or DCNv2Config()
        self.embedding = FeatureEmbedding(feature_map, embedding)
        dim = self.embedding.num_fields * embedding.dim
        if config.low_rank:
            self.crossnet: nn.Module = CrossNetMix(dim, config.cross_layers, config.low_rank, config.experts)
        else:
            self.crossnet = CrossNetV2(dim, config.cross_layers)
        self.dnn = MLP(dim, config.hidden, config.dropout, config.batch_norm) if config.structure != "crossnet_only" else None
        width = config.hidden[-1] if self.dnn is not None else 0  # the MLP's output width
        self.fc = nn.Linear({"parallel": dim + width, "stacked": width, "crossnet_only": dim}[config.structure], 1)

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        x0 = self.embedding(batch).flatten(1)
        cross = self.crossnet(x0)
        if self.config.structure == "stacked":
            out = self.dnn(cross)
        elif self.config.structure == "parallel":
            out = torch.cat([cross, self.dnn(x0)], dim=1)
        else:
            out = cross
        return self.fc(out).squeeze(1)
