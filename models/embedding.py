"""The one module that turns an EncodedBatch into field embeddings [rows, fields, dim].

One table per sparse field (id 0 is padding and stays zero), pooled over the
ids of multi-valued fields; numeric fields fed as values become value × a
learned field vector, or with `piecewise_bins` the piecewise-linear encoding of
the value (Gorishniy et al., 2022) times a learned matrix. A FeatureEmbedding is composed of:
- its tables, pooled by a `Lookup`: "torchrec" (an EmbeddingBagCollection fed a
  KeyedJaggedTensor, shardable with DistributedModelParallel), "torch" (plain
  nn.EmbeddingBag per field, for machines without fbgemm), or shared tables a
  method builds (`EmbeddingConfig.shared`, e.g. Unified Embedding's);
- value scalers a method attaches (`attach`): modules that give each looked-up
  value a multiplier before pooling (OptFS's gates, DNIS's dimension mask).
The embedding names no method; `copy_weights_from` moves tables between backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from featuremap import PADDING_ID, FeatureMap
from models.batching import EncodedBatch, NumericInput, dense_fields, sparse_fields

Backend = Literal["torch", "torchrec"]
Pooling = Literal["mean", "sum"]


def bag_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """EmbeddingBag offsets (each row's first position) from the number of ids per row."""
    offsets = torch.zeros_like(lengths)
    offsets[1:] = torch.cumsum(lengths, 0)[:-1]
    return offsets


def field_offsets(vocab_sizes: list[int]) -> torch.Tensor:
    """Where each field's rows start when all fields' values are numbered in one flat range."""
    return bag_offsets(torch.tensor(vocab_sizes, dtype=torch.int64))


def split_fields(batch: EncodedBatch) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The batch's ids per sparse field, and the ids per row [fields, rows]."""
    lengths = batch.lengths.view(len(batch.keys), batch.rows).to(torch.int64)
    return list(torch.split(batch.values, lengths.sum(dim=1).tolist())), lengths


class SharedTables(Protocol):
    """Tables shared across fields that a method builds in place of one table per field (models/unified.py)."""

    def tables_for(self, names: list[str], dim: int, pooling: Pooling, backend: Backend) -> nn.Module:
        """A module whose `forward(batch)` gives each sparse field's [rows, dim] embedding and whose `weights()` its tables."""

    def first_order(self, dim: int) -> SharedTables:
        """The layout of a model's 1-wide first-order weights."""


@dataclass(frozen=True)
class EmbeddingConfig:
    """How to embed a feature map's fields."""

    dim: int = 10
    backend: Backend = "torch"
    numeric_as_value: NumericInput = False  # models.batching: bucket ids, values, or both
    pooling: Pooling = "mean"
    init_std: float = 1e-4
    shared: SharedTables | None = None  # shared tables instead of one per field (a method's layout)
    piecewise_bins: int = 0  # with numeric_as_value: the piecewise-linear encoding over this many quantile bins

    def __post_init__(self) -> None:
        if self.numeric_as_value not in (True, False, "both"):  # the config's auto is decided before (pipeline.assemble.resolved)
            raise ValueError(f"numeric_as_value must be True, False or 'both', not {self.numeric_as_value!r}")


class Lookup(ABC):
    """How a FeatureEmbedding's tables are built and pooled. Stateless, so that it still works once torchrec has
    sharded the tables (DistributedModelParallel swaps the collection module, not this)."""

    shared = False  # rows shared across fields: no padding row, no per-value scalers

    @abstractmethod
    def build(self, embedding: FeatureEmbedding) -> nn.Module:
        """The tables of `embedding`'s sparse fields."""

    @abstractmethod
    def pool(self, tables: Any, batch: EncodedBatch) -> list[torch.Tensor]:
        """Each sparse field's pooled [rows, dim] embedding, in field order."""

    @abstractmethod
    def weights(self, tables: Any, keys: list[str]) -> dict[str, torch.Tensor]:
        """The tables' weights: per field name, or per shared table."""


class TorchLookup(Lookup):
    """One nn.EmbeddingBag per field (no fbgemm needed)."""

    def build(self, embedding: FeatureEmbedding) -> nn.Module:
        config = embedding.config
        return nn.ModuleDict(
            {f.name: nn.EmbeddingBag(f.vocab_size, config.dim, mode=config.pooling, padding_idx=PADDING_ID) for f in embedding.sparse}
        )

    def pool(self, tables: nn.ModuleDict, batch: EncodedBatch) -> list[torch.Tensor]:
        per_field, lengths = split_fields(batch)
        return [tables[name](ids, bag_offsets(n)) for name, ids, n in zip(batch.keys, per_field, lengths, strict=True)]

    def weights(self, tables: nn.ModuleDict, keys: list[str]) -> dict[str, torch.Tensor]:
        return {name: bag.weight for name, bag in tables.items()}


class TorchrecLookup(Lookup):
    """One torchrec EmbeddingBagCollection table per field, fed the batch's KeyedJaggedTensor."""

    def build(self, embedding: FeatureEmbedding) -> nn.Module:
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

        config = embedding.config
        tables = [
            EmbeddingBagConfig(
                name=f"t_{f.name}",
                embedding_dim=config.dim,
                num_embeddings=f.vocab_size,
                feature_names=[f.name],
                pooling=PoolingType.MEAN if config.pooling == "mean" else PoolingType.SUM,
            )
            for f in embedding.sparse
        ]
        return EmbeddingBagCollection(tables=tables, device=torch.device("cpu"))

    def pool(self, tables: nn.Module, batch: EncodedBatch) -> list[torch.Tensor]:
        pooled = tables(batch.kjt()).to_dict()
        return [pooled[name] for name in batch.keys]

    def weights(self, tables: nn.Module, keys: list[str]) -> dict[str, torch.Tensor]:
        return {name: tables.embedding_bags[f"t_{name}"].weight for name in keys}


class SharedLookup(Lookup):
    """Tables a method's `EmbeddingConfig.shared` layout builds; they pool themselves."""

    shared = True

    def build(self, embedding: FeatureEmbedding) -> nn.Module:
        config = embedding.config
        return config.shared.tables_for(embedding.keys, config.dim, config.pooling, config.backend)

    def pool(self, tables: nn.Module, batch: EncodedBatch) -> list[torch.Tensor]:
        return tables(batch)

    def weights(self, tables: nn.Module, keys: list[str]) -> dict[str, torch.Tensor]:
        return tables.weights()


LOOKUPS: dict[str, Lookup] = {"torch": TorchLookup(), "torchrec": TorchrecLookup()}


class FeatureEmbedding(nn.Module):
    """Field embeddings for every model: tables pooled by a Lookup, then the attached value scalers (see module doc)."""

    def __init__(self, feature_map: FeatureMap, config: EmbeddingConfig) -> None:
        super().__init__()
        self.config = config
        self.sparse = sparse_fields(feature_map, config.numeric_as_value)
        self.dense = dense_fields(feature_map, config.numeric_as_value)
        self.num_fields = len(self.sparse) + len(self.dense)
        self.keys = [f.name for f in self.sparse]
        self.lookup = SharedLookup() if config.shared is not None else LOOKUPS[config.backend]
        self.bags = self.lookup.build(self)
        self.piecewise = bool(self.dense) and config.piecewise_bins > 0
        self.field_vectors = nn.Parameter(torch.empty(0 if self.piecewise else len(self.dense), config.dim))
        if self.piecewise:  # registered only here, so that the weights of every other embedding keep their keys
            # Bin edges (train quantiles of each field's values, set once by fit_piecewise before training and saved
            # with the weights), and a [bins, dim] matrix and a bias per field.
            fields, bins = len(self.dense), config.piecewise_bins
            self.register_buffer("piecewise_edges", torch.linspace(-1.0, 1.0, bins + 1).repeat(fields, 1))
            # 1 once fitted; uint8, which every collective backend takes
            self.register_buffer("piecewise_fitted", torch.tensor(0, dtype=torch.uint8))
            self.piecewise_weight = nn.Parameter(torch.empty(fields, bins, config.dim))
            self.piecewise_bias = nn.Parameter(torch.zeros(fields, config.dim))
        self.scalers: tuple[str, ...] = ()  # attribute names of the attached value scalers, applied in name order
        self.reset_parameters()

    def attach(self, name: str, scaler: nn.Module | None) -> None:
        """Multiply every sparse value's embedding by `scaler(values, lengths)` ([ids, 1] or [ids, dim]) before pooling.

        `scaler` is registered as attribute `name` (so it is saved with the weights, and one scaler can be shared by
        several embeddings of a model); its `width` is 1 or the embedding's dim. None removes it."""
        if scaler is None:
            if name in self.scalers:
                delattr(self, name)
            self.scalers = tuple(s for s in self.scalers if s != name)
            return
        if self.lookup.shared:
            raise ValueError(f"{name} needs one table per field, not shared hashed tables")
        if scaler.width not in (1, self.config.dim):
            raise ValueError(f"{name} scales width {scaler.width}, not this embedding's {self.config.dim}")
        setattr(self, name, scaler)
        self.scalers = tuple(sorted({*self.scalers, name}))

    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights with the padding rows at zero."""
        with torch.no_grad():
            for weight in self.table_weights().values():
                weight.normal_(0.0, self.config.init_std)
                if not self.lookup.shared:  # shared hashed rows have no padding row
                    weight[PADDING_ID].zero_()
            self.field_vectors.normal_(0.0, self.config.init_std)
            if self.piecewise:
                self.piecewise_weight.normal_(0.0, self.config.init_std)
                self.piecewise_bias.zero_()

    def fit_piecewise(self, columns: Mapping[str, Any], max_rows: int = 1_000_000) -> None:
        """Set the piecewise-linear encoding's bin edges to the quantiles of each dense field's values in `columns`
        (the train split's; at most `max_rows` evenly spaced rows). Only once: a fitted embedding (trained, or loaded
        with its weights) keeps its edges."""
        if not self.piecewise or bool(self.piecewise_fitted):
            return
        levels = np.linspace(0.0, 1.0, self.config.piecewise_bins + 1)
        edges = []
        for spec, default in zip(self.dense, self.piecewise_edges.cpu().numpy(), strict=True):
            values = np.asarray(columns[spec.value_column], dtype=np.float64)
            sample = values[:: max(1, -(-values.size // max_rows))]  # a stride that keeps at most max_rows
            sample = sample[np.isfinite(sample)]
            edges.append(np.quantile(sample, levels) if sample.size else default)
        with torch.no_grad():
            self.piecewise_edges.copy_(torch.as_tensor(np.stack(edges), dtype=self.piecewise_edges.dtype))
            self.piecewise_fitted.fill_(1)

    def _piecewise(self, values: torch.Tensor) -> torch.Tensor:
        """[rows, fields] values -> [rows, fields, dim]: bias + Σ_t v_t W_t, where v_t is 1 past bin t, 0 before it and
        the position within it (Gorishniy et al.'s PLE). Values outside the train range are clamped to it; a bin
        whose edges coincide (tied quantiles) is a step."""
        lower = self.piecewise_edges[:, :-1]
        width = (self.piecewise_edges[:, 1:] - lower).clamp(min=1e-6)
        encoded = ((values.unsqueeze(-1) - lower) / width).clamp(0.0, 1.0)
        weight = self.piecewise_weight
        return torch.einsum("rft,ftd->rfd", encoded.to(weight.dtype), weight) + self.piecewise_bias

    def table_weights(self) -> dict[str, torch.Tensor]:
        """Each sparse field's table weight, by field name (the shared tables, when shared)."""
        return self.lookup.weights(self.bags, self.keys)

    def copy_weights_from(self, other: FeatureEmbedding) -> None:
        """Take another FeatureEmbedding's tables and field vectors (any backend)."""
        with torch.no_grad():
            mine = self.table_weights()
            for name, weight in other.table_weights().items():
                mine[name].copy_(weight)
            self.field_vectors.copy_(other.field_vectors)
            if self.piecewise:
                for name in ("piecewise_weight", "piecewise_bias", "piecewise_edges", "piecewise_fitted"):
                    getattr(self, name).copy_(getattr(other, name))

    def _scaled(self, batch: EncodedBatch) -> list[torch.Tensor]:
        """Pooled embeddings with every value multiplied by the scalers (the same pooling as the tables'); any backend."""
        per_field, lengths = split_fields(batch)
        counts = lengths.sum(dim=1).tolist()
        values = torch.cat(per_field)
        factors = [torch.split(getattr(self, name)(values, lengths), counts) for name in self.scalers]
        tables = self.table_weights()
        out = []
        for i, (name, ids, field_lengths) in enumerate(zip(self.keys, per_field, lengths, strict=True)):
            vectors = nn.functional.embedding(ids, tables[name])
            for factor in factors:
                vectors = vectors * factor[i].to(vectors.dtype)
            row_of = torch.repeat_interleave(torch.arange(field_lengths.shape[0], device=ids.device), field_lengths)
            pooled = vectors.new_zeros(field_lengths.shape[0], vectors.shape[1]).index_add_(0, row_of, vectors)
            if self.config.pooling == "mean":
                pooled = pooled / field_lengths.clamp(min=1).unsqueeze(1).to(pooled.dtype)
            out.append(pooled)
        return out

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        rows = batch.rows
        parts = []
        if self.sparse:
            if batch.keys != self.keys:
                raise ValueError(f"batch fields {batch.keys} do not match the embedding's {self.keys}")
            parts = self._scaled(batch) if self.scalers else self.lookup.pool(self.bags, batch)
        out = torch.stack(parts, dim=1) if parts else batch.dense.new_zeros(rows, 0, self.config.dim)
        if self.dense:
            dense = self._piecewise(batch.dense) if self.piecewise else batch.dense.unsqueeze(-1) * self.field_vectors
            out = torch.cat([out, dense.to(out.dtype)], dim=1)
        return out
