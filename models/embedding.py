"""The one module that turns an EncodedBatch into field embeddings [rows, fields, dim].

One table per sparse field (id 0 is padding and stays zero), pooled over the
ids of multi-valued fields; numeric fields fed as values become value × a
learned field vector. Two interchangeable backends:
- "torchrec": an EmbeddingBagCollection fed a KeyedJaggedTensor (shardable
  with DistributedModelParallel);
- "torch": plain nn.EmbeddingBag per field, for machines without fbgemm
  (e.g. a GPU host with no fbgemm-gpu wheel).
Both compute the same function; `copy_weights_from` moves tables between them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from common.featuremap import FIRST_VALUE_ID, PADDING_ID, FeatureMap
from models.batching import EncodedBatch, dense_fields, sparse_fields

Backend = Literal["torch", "torchrec"]
Pooling = Literal["mean", "sum"]


# Carter-Wegman hashing ((a·x + b) mod P) mod rows with P = 2^31 - 1: a·x stays inside int64 for ids below 2^31.
_PRIME = 2**31 - 1


def bag_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """EmbeddingBag offsets (each row's first position) from the number of ids per row."""
    offsets = torch.zeros_like(lengths)
    offsets[1:] = torch.cumsum(lengths, 0)[:-1]
    return offsets


def field_offsets(vocab_sizes: list[int]) -> torch.Tensor:
    """Where each field's rows start when all fields' values are numbered in one flat range."""
    return bag_offsets(torch.tensor(vocab_sizes, dtype=torch.int64))


@dataclass(frozen=True)
class MultiplexConfig:
    """Unified Embedding (feature multiplexing): shared tables instead of one table per field.

    Feature t looks up c_t rows, each with its own salted hash, of width
    dim / chunks, and concatenates them; the (feature, chunk) lookups, taken in
    feature then chunk order, go to the tables round-robin, so collisions happen
    across features. `budget` is the total number of embedding parameters:
    rows per table = budget / (tables · dim / chunks).

    c_t is `chunks` for every feature unless `feature_chunks` gives one count
    per sparse field (1..chunks; the paper's "more chunks for important or
    high-cardinality features"). A feature with c_t < chunks fills the first
    c_t · dim / chunks entries of its width-`dim` embedding and leaves the rest
    zero, as DNIS's masked dimensions do: FM products and attention read
    equal-width vectors, and the zero entries carry nothing.

    `field_vectors` adds a learned vector per feature to its embedding (fields ·
    dim parameters, taken out of the budget), as a transformer adds position
    embeddings. Attention models share their Q/K/V projections across fields,
    so with one table per field a field's identity lives in its table's
    vectors; once features share hashed rows, a row no longer says which
    feature it came from, and the field vector puts that back.
    """

    budget: int
    tables: int = 1
    chunks: int = 1
    seed: int = 0
    field_vectors: bool = False
    feature_chunks: tuple[int, ...] | None = None  # c_t per sparse field, in the feature map's order


def chunks_by_cardinality(vocab_sizes: dict[str, int], max_chunks: int) -> dict[str, int]:
    """c_t = ceil(chunks · ln(vocab_t) / ln(largest vocab)), at least 1: the largest vocabulary gets every chunk."""
    top = math.log(max(max(vocab_sizes.values(), default=2), 2))
    return {name: min(max_chunks, max(1, math.ceil(max_chunks * math.log(max(v, 1)) / top))) for name, v in vocab_sizes.items()}


def chunks_by_rank(ranks: dict[str, int], max_chunks: int) -> dict[str, int]:
    """c_t = 1 + round((chunks − 1) · (n − rank_t) / (n − 1)) over n ranked features: rank 1 gets every chunk, the
    last one chunk, linearly in rank order in between (the rank stage's corrected MI already weighs cardinality)."""
    n = len(ranks)
    share = {name: (n - rank) / (n - 1) if n > 1 else 1.0 for name, rank in ranks.items()}  # 1 at rank 1, 0 at rank n
    return {name: 1 + math.floor((max_chunks - 1) * s + 0.5) for name, s in share.items()}


@dataclass(frozen=True)
class EmbeddingConfig:
    """How to embed a feature map's fields."""

    dim: int = 10
    backend: Backend = "torch"
    numeric_as_value: bool = False
    pooling: Pooling = "mean"
    init_std: float = 1e-4
    multiplex: MultiplexConfig | None = None


class HashedChunks(nn.Module):
    """The shared tables of Unified Embedding and the per-(feature, chunk) salted hashes into them.

    Backends as for FeatureEmbedding: "torch" (one nn.EmbeddingBag per shared
    table) or "torchrec" (one EmbeddingBagCollection whose tables each serve
    several (feature, chunk) keys, e.g. `user@0`, `item@1`). Chunks are
    concatenated in chunk order, never in the keys' string order.
    """

    def __init__(self, names: list[str], dim: int, config: MultiplexConfig, pooling: Pooling, backend: Backend) -> None:
        super().__init__()
        if dim % config.chunks:
            raise ValueError(f"embedding dim {dim} is not divisible into {config.chunks} chunks")
        fields = len(names)
        counts = [config.chunks] * fields if config.feature_chunks is None else [int(c) for c in config.feature_chunks]
        if len(counts) != fields or not all(1 <= c <= config.chunks for c in counts):
            raise ValueError(f"feature_chunks needs one count in 1..{config.chunks} for each of the {fields} sparse fields, got {counts}")
        lookups = sum(counts)
        if config.tables > lookups:
            raise ValueError(f"{config.tables} tables for {lookups} (feature, chunk) lookups would leave tables unused")
        self.chunk_dim = dim // config.chunks
        extra = fields * dim if config.field_vectors else 0
        self.rows = (config.budget - extra) // (config.tables * self.chunk_dim)
        if self.rows < 1:
            raise ValueError(f"budget {config.budget} is too small for {config.tables} tables of width {self.chunk_dim}")
        self.names = names
        self.dim = dim
        self.counts = counts  # c_t per field
        self.padded = min(counts) < config.chunks
        self.backend = backend
        generator = torch.Generator().manual_seed(config.seed)
        a = torch.randint(1, _PRIME, (fields, config.chunks), generator=generator, dtype=torch.int64)
        b = torch.randint(0, _PRIME, (fields, config.chunks), generator=generator, dtype=torch.int64)
        self.register_buffer("salts", torch.stack([a, b], dim=-1))
        starts = itertools.accumulate(counts[:-1], initial=0)  # each field's first lookup's position
        self.assignment = [[int(start + k) % config.tables for k in range(c)] for start, c in zip(starts, counts, strict=True)]
        if backend == "torchrec":
            from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

            tables = [
                EmbeddingBagConfig(
                    name=f"shared_{i}",
                    embedding_dim=self.chunk_dim,
                    num_embeddings=self.rows,
                    feature_names=[self.key(t, k) for t in range(fields) for k in range(counts[t]) if self.assignment[t][k] == i],
                    pooling=PoolingType.MEAN if pooling == "mean" else PoolingType.SUM,
                )
                for i in range(config.tables)
            ]
            self.collection = EmbeddingBagCollection(tables=tables, device=torch.device("cpu"))
        else:
            self.tables = nn.ModuleList(nn.EmbeddingBag(self.rows, self.chunk_dim, mode=pooling) for _ in range(config.tables))
        self.field_vectors = nn.Parameter(torch.zeros(fields, dim)) if config.field_vectors else None

    def key(self, field: int, chunk: int) -> str:
        """The torchrec feature name of one (feature, chunk) lookup."""
        return f"{self.names[field]}@{chunk}"

    def weights(self) -> dict[str, torch.Tensor]:
        """The shared tables' weights, by table name, and the field vectors (`field_vectors`) when there are any."""
        if self.backend == "torchrec":
            out = {name: bag.weight for name, bag in self.collection.embedding_bags.items()}
        else:
            out = {f"shared_{i}": table.weight for i, table in enumerate(self.tables)}
        if self.field_vectors is not None:
            out["field_vectors"] = self.field_vectors
        return out

    def hashed(self, field: int, chunk: int, ids: torch.Tensor) -> torch.Tensor:
        """Rows of feature `field`'s ids in its chunk `chunk` table: ((a·id + b) mod P) mod rows."""
        a, b = self.salts[field, chunk]
        return ((ids * a + b) % _PRIME) % self.rows

    def forward(self, per_field: list[torch.Tensor], lengths: torch.Tensor) -> list[torch.Tensor]:
        """Each field's [rows, dim] embedding from its ids (`per_field`) and ids per row (`lengths` [fields, rows])."""
        if self.backend == "torchrec":
            from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

            keys, values, kjt_lengths = [], [], []
            for field, ids in enumerate(per_field):
                for chunk in range(self.counts[field]):
                    keys.append(self.key(field, chunk))
                    values.append(self.hashed(field, chunk, ids))
                    kjt_lengths.append(lengths[field])
            pooled = self.collection(KeyedJaggedTensor(keys=keys, values=torch.cat(values), lengths=torch.cat(kjt_lengths))).to_dict()
            out = [torch.cat([pooled[self.key(f, k)] for k in range(self.counts[f])], dim=1) for f in range(len(per_field))]
        else:
            out = []
            for field, ids in enumerate(per_field):
                offsets = bag_offsets(lengths[field])
                chunks = [self.tables[self.assignment[field][k]](self.hashed(field, k, ids), offsets) for k in range(self.counts[field])]
                out.append(torch.cat(chunks, dim=1))
        if self.padded:  # a feature with fewer chunks: zero tail
            out = [nn.functional.pad(vectors, (0, self.dim - vectors.shape[1])) for vectors in out]
        if self.field_vectors is not None:
            out = [vectors + self.field_vectors[field] for field, vectors in enumerate(out)]
        return out


class ValueGates(nn.Module):
    """OptFS's gate per feature value (Lyu et al., 2023): g_v = sigmoid(tau * m_v) / sigmoid(m0), or hard 1[m_v > 0] / sigmoid(m0).

    One logit per value of every sparse field (padding, OOV and missing ids
    included), stored as one flat vector with per-field offsets. Shared by
    every FeatureEmbedding of a model, so a value's embedding and its linear
    weight are gated alike (and every interaction by g_i * g_j).
    """

    def __init__(self, vocab_sizes: list[int], init: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("offsets", field_offsets(vocab_sizes))
        self.vocab_sizes = list(vocab_sizes)
        self.logits = nn.Parameter(torch.full((sum(vocab_sizes),), float(init)))
        self.norm = float(torch.sigmoid(torch.tensor(init)))
        self.temperature = 1.0
        self.hard = False

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The gate of every id in `values` (field-major, `lengths` [fields, rows] ids per row)."""
        logits = self.logits[torch.repeat_interleave(self.offsets, lengths.sum(dim=1)) + values]
        if self.hard:
            return (logits > 0).to(logits.dtype) / self.norm
        return torch.sigmoid(self.temperature * logits) / self.norm

    def l1(self) -> torch.Tensor:
        """Sum of the soft gates over the whole table (OptFS's sparsity term)."""
        return torch.sigmoid(self.temperature * self.logits).sum()

    def kept(self) -> list[torch.Tensor]:
        """Per field, a boolean mask of the values whose gate is open (m > 0)."""
        return list(torch.split(self.logits.detach() > 0, self.vocab_sizes))


class DimensionMask(nn.Module):
    """DNIS's soft (then hard) selection of embedding dimensions per frequency block of values.

    Values of each field are ranked by frequency (the encoder numbers them most
    frequent first) and cut into `freq_blocks` equal blocks; the d dimensions are
    cut into `dim_blocks` blocks. During search a value's embedding is
    multiplied by alpha[field, block(value)] expanded to width d (alpha in
    [0, 1], initialised to 1). After pruning, `hard` holds one boolean mask row
    per value instead (its surviving dimensions; a value's dimension is the
    row's count).
    """

    def __init__(self, vocab_sizes: list[int], dim: int, freq_blocks: int, dim_blocks: int) -> None:
        super().__init__()
        if dim % dim_blocks:
            raise ValueError(f"embedding dim {dim} is not divisible into {dim_blocks} dimension blocks")
        self.dim, self.dim_blocks, self.freq_blocks = dim, dim_blocks, freq_blocks
        self.vocab_sizes = list(vocab_sizes)
        # Real values (ids from FIRST_VALUE_ID on, most frequent first) in equal blocks; reserved ids join the first.
        ranks = [(torch.arange(v) - FIRST_VALUE_ID).clamp(min=0) for v in vocab_sizes]
        blocks = [
            torch.clamp(r * freq_blocks // max(1, v - FIRST_VALUE_ID), max=freq_blocks - 1) for r, v in zip(ranks, vocab_sizes, strict=True)
        ]
        field = torch.cat([torch.full((v,), i) for i, v in enumerate(vocab_sizes)])
        self.register_buffer("row_block", field * freq_blocks + torch.cat(blocks))  # (field, frequency block) of every row
        self.register_buffer("offsets", field_offsets(vocab_sizes))
        self.alpha = nn.Parameter(torch.ones(len(vocab_sizes) * freq_blocks, dim_blocks))
        self.register_buffer("hard", torch.ones(0, dim, dtype=torch.bool))

    def row_multipliers(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, d] multipliers for global rows `rows` (field offset + id)."""
        if self.hard.numel():
            return self.hard[rows].to(self.alpha.dtype)
        return torch.repeat_interleave(self.alpha[self.row_block[rows]], self.dim // self.dim_blocks, dim=1)

    def set_hard(self, mask: torch.Tensor) -> None:
        """Replace the soft selection by a [all rows, d] boolean mask of surviving entries."""
        self.hard = mask.to(torch.bool)
        self.alpha.requires_grad_(False)

    def dims(self) -> list[torch.Tensor]:
        """Per field, the dimension of every value (the number of its surviving entries); full width before pruning."""
        if not self.hard.numel():
            return [torch.full((v,), self.dim) for v in self.vocab_sizes]
        return list(torch.split(self.hard.sum(dim=1), self.vocab_sizes))


class FeatureEmbedding(nn.Module):
    """Field embeddings for every model; later search methods gate, resize or multiplex here."""

    def __init__(self, feature_map: FeatureMap, config: EmbeddingConfig) -> None:
        super().__init__()
        self.config = config
        self.sparse = sparse_fields(feature_map, config.numeric_as_value)
        self.dense = dense_fields(feature_map, config.numeric_as_value)
        self.num_fields = len(self.sparse) + len(self.dense)
        self.keys = [f.name for f in self.sparse]
        if config.multiplex is not None:
            self.bags = HashedChunks(self.keys, config.dim, config.multiplex, config.pooling, config.backend)
        elif config.backend == "torchrec":
            from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

            tables = [
                EmbeddingBagConfig(
                    name=f"t_{f.name}",
                    embedding_dim=config.dim,
                    num_embeddings=f.vocab_size,
                    feature_names=[f.name],
                    pooling=PoolingType.MEAN if config.pooling == "mean" else PoolingType.SUM,
                )
                for f in self.sparse
            ]
            self.bags = EmbeddingBagCollection(tables=tables, device=torch.device("cpu"))
        else:
            self.bags = nn.ModuleDict(
                {f.name: nn.EmbeddingBag(f.vocab_size, config.dim, mode=config.pooling, padding_idx=PADDING_ID) for f in self.sparse}
            )
        self.field_vectors = nn.Parameter(torch.empty(len(self.dense), config.dim))
        self.gates: ValueGates | None = None
        self.dim_mask: DimensionMask | None = None
        self.reset_parameters()

    def attach_dimension_mask(self, mask: DimensionMask | None) -> None:
        """Multiply every value's embedding by its dimension selection (None removes it)."""
        if mask is not None and (self.config.multiplex is not None or mask.dim != self.config.dim):
            raise ValueError("a dimension mask needs one table per field of the mask's width")
        self.dim_mask = mask

    def attach_gates(self, gates: ValueGates | None) -> None:
        """Multiply every sparse value's embedding by its gate (None removes the gates)."""
        if gates is not None and self.config.multiplex is not None:
            raise ValueError("feature-value gates need one table per field, not shared hashed tables")
        self.gates = gates

    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights with the padding rows at zero."""
        with torch.no_grad():
            for weight in self.table_weights().values():
                weight.normal_(0.0, self.config.init_std)
                if self.config.multiplex is None:  # shared hashed rows have no padding row
                    weight[PADDING_ID].zero_()
            self.field_vectors.normal_(0.0, self.config.init_std)

    def table_weights(self) -> dict[str, torch.Tensor]:
        """Each sparse field's table weight, by field name (the shared tables, when multiplexed)."""
        if self.config.multiplex is not None:
            return self.bags.weights()
        if self.config.backend == "torchrec":
            return {f.name: self.bags.embedding_bags[f"t_{f.name}"].weight for f in self.sparse}
        return {name: bag.weight for name, bag in self.bags.items()}

    def copy_weights_from(self, other: FeatureEmbedding) -> None:
        """Take another FeatureEmbedding's tables and field vectors (any backend)."""
        with torch.no_grad():
            mine = self.table_weights()
            for name, weight in other.table_weights().items():
                mine[name].copy_(weight)
            self.field_vectors.copy_(other.field_vectors)

    def _selected(self, per_field: list[torch.Tensor], lengths: torch.Tensor) -> list[torch.Tensor]:
        """Pooled embeddings of gated (OptFS) and/or dimension-masked (DNIS) values, the same pooling as plain; any backend."""
        counts = lengths.sum(dim=1)
        values = torch.cat(per_field)
        gates = torch.split(self.gates(values, lengths), counts.tolist()) if self.gates is not None else [None] * len(per_field)
        rows = torch.repeat_interleave(self.dim_mask.offsets, counts) + values if self.dim_mask is not None else None
        multipliers = torch.split(self.dim_mask.row_multipliers(rows), counts.tolist()) if rows is not None else [None] * len(per_field)
        tables = self.table_weights()
        out = []
        for name, ids, gate, multiplier, field_lengths in zip(self.keys, per_field, gates, multipliers, lengths, strict=True):
            vectors = nn.functional.embedding(ids, tables[name])
            if multiplier is not None:
                vectors = vectors * multiplier
            if gate is not None:
                vectors = vectors * gate.unsqueeze(1).to(vectors.dtype)
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
            if self.gates is not None or self.dim_mask is not None or self.config.multiplex is not None or self.config.backend == "torch":
                lengths = batch.lengths.view(len(self.keys), rows).to(torch.int64)
                per_field = list(torch.split(batch.values, lengths.sum(dim=1).tolist()))
            if self.gates is not None or self.dim_mask is not None:
                parts.extend(self._selected(per_field, lengths))
            elif self.config.multiplex is not None:
                parts.extend(self.bags(per_field, lengths))
            elif self.config.backend == "torchrec":
                pooled = self.bags(batch.kjt()).to_dict()
                parts.extend(pooled[name] for name in self.keys)
            else:
                for name, ids, field_lengths in zip(self.keys, per_field, lengths, strict=True):
                    parts.append(self.bags[name](ids, bag_offsets(field_lengths)))
        out = torch.stack(parts, dim=1) if parts else batch.dense.new_zeros(rows, 0, self.config.dim)
        if self.dense:
            out = torch.cat([out, batch.dense.unsqueeze(-1) * self.field_vectors], dim=1)
        return out
