"""Unified Embedding's model side (Coleman et al., 2023): shared hashed tables in place of one table per field.

The method (settings, layout search, package entry) is methods/unified.py; this module holds
the torch parts it builds a model with: `SharedLayout` (what FeatureEmbedding takes as its
`shared` tables), `HashedChunks` (the tables and the salted hashes into them), the chunk-count
rules and `shared_model`. Design and evidence: docs/methods/unified.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from featuremap import FeatureMap
from models.base import CTRModel
from models.batching import EncodedBatch, sparse_fields
from models.embedding import Backend, EmbeddingConfig, Pooling, SharedTables, bag_offsets, split_fields

# Carter-Wegman hashing ((a·x + b) mod P) mod rows with P = 2^31 - 1: a·x stays inside int64 for ids below 2^31.
HASH_PRIME = 2**31 - 1  # shared by the per-field hashed tables of models/budgeted.py

# Models that take a layout's tables (shared or budgeted) in place of their one embedding module (FGCNN has two, LR
# one-wide weights: a budget would not mean the same there).
BASES = ("autoint", "autoint+", "dcnv2", "deepfm", "dnn", "fm")


@dataclass(frozen=True)
class SharedLayout:
    """Feature multiplexing: shared tables instead of one table per field.

    Feature t looks up c_t rows, each with its own salted hash, of width dim / chunks, and concatenates them; the
    (feature, chunk) lookups, taken in feature then chunk order, go to the tables round-robin, so collisions happen
    across features. `budget` is the total number of embedding parameters: rows per table = budget / (tables · dim /
    chunks). c_t is `chunks` unless `feature_chunks` gives one count per sparse field (1..chunks); a feature with
    fewer chunks fills the front of its width-`dim` vector and leaves the rest zero. `field_vectors` adds a learned
    vector per feature (fields · dim parameters, out of the budget).
    """

    budget: int
    tables: int = 1
    chunks: int = 1
    seed: int = 0
    field_vectors: bool = False
    feature_chunks: tuple[int, ...] | None = None  # c_t per sparse field, in the feature map's order

    def tables_for(self, names: list[str], dim: int, pooling: Pooling, backend: Backend) -> HashedChunks:
        """The shared tables of a FeatureEmbedding over sparse fields `names`."""
        return HashedChunks(names, dim, self, pooling, backend)

    def first_order(self, dim: int) -> SharedLayout:
        """The layout of a model's 1-wide first-order weights: one table of budget / dim rows, one chunk."""
        return dataclasses.replace(self, budget=max(1, self.budget // dim), tables=1, chunks=1, field_vectors=False, feature_chunks=None)


class HashedChunks(nn.Module):
    """The shared tables and the per-(feature, chunk) salted hashes into them.

    Backends as for FeatureEmbedding: "torch" (one nn.EmbeddingBag per shared table) or "torchrec" (one
    EmbeddingBagCollection whose tables each serve several (feature, chunk) keys, e.g. `user@0`, `item@1`). Chunks
    are concatenated in chunk order, never in the keys' string order.
    """

    def __init__(self, names: list[str], dim: int, layout: SharedLayout, pooling: Pooling, backend: Backend) -> None:
        super().__init__()
        if dim % layout.chunks:
            raise ValueError(f"embedding dim {dim} is not divisible into {layout.chunks} chunks")
        fields = len(names)
        counts = [layout.chunks] * fields if layout.feature_chunks is None else [int(c) for c in layout.feature_chunks]
        if len(counts) != fields or not all(1 <= c <= layout.chunks for c in counts):
            raise ValueError(f"feature_chunks needs one count in 1..{layout.chunks} for each of the {fields} sparse fields, got {counts}")
        lookups = sum(counts)
        if layout.tables > lookups:
            raise ValueError(f"{layout.tables} tables for {lookups} (feature, chunk) lookups would leave tables unused")
        self.chunk_dim = dim // layout.chunks
        extra = fields * dim if layout.field_vectors else 0
        self.rows = (layout.budget - extra) // (layout.tables * self.chunk_dim)
        if self.rows < 1:
            raise ValueError(f"budget {layout.budget} is too small for {layout.tables} tables of width {self.chunk_dim}")
        self.names = names
        self.dim = dim
        self.counts = counts  # c_t per field
        self.padded = min(counts) < layout.chunks
        self.backend = backend
        generator = torch.Generator().manual_seed(layout.seed)
        a = torch.randint(1, HASH_PRIME, (fields, layout.chunks), generator=generator, dtype=torch.int64)
        b = torch.randint(0, HASH_PRIME, (fields, layout.chunks), generator=generator, dtype=torch.int64)
        self.register_buffer("salts", torch.stack([a, b], dim=-1))
        starts = itertools.accumulate(counts[:-1], initial=0)  # each field's first lookup's position
        self.assignment = [[int(start + k) % layout.tables for k in range(c)] for start, c in zip(starts, counts, strict=True)]
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
                for i in range(layout.tables)
            ]
            self.collection = EmbeddingBagCollection(tables=tables, device=torch.device("cpu"))
        else:
            self.tables = nn.ModuleList(nn.EmbeddingBag(self.rows, self.chunk_dim, mode=pooling) for _ in range(layout.tables))
        self.field_vectors = nn.Parameter(torch.zeros(fields, dim)) if layout.field_vectors else None

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
        return ((ids * a + b) % HASH_PRIME) % self.rows

    def forward(self, batch: EncodedBatch) -> list[torch.Tensor]:
        """Each sparse field's [rows, dim] embedding."""
        per_field, lengths = split_fields(batch)
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
        else:  # one lookup per table, of all the (feature, chunk) keys it serves: one gradient per table, not per key
            rows = batch.rows
            pooled: dict[tuple[int, int], torch.Tensor] = {}
            for i, table in enumerate(self.tables):
                keys = [(f, k) for f in range(len(per_field)) for k in range(self.counts[f]) if self.assignment[f][k] == i]
                values = torch.cat([self.hashed(f, k, per_field[f]) for f, k in keys])
                vectors = table(values, bag_offsets(torch.cat([lengths[f] for f, _ in keys])))
                pooled.update(zip(keys, vectors.view(len(keys), rows, self.chunk_dim), strict=True))
            out = [torch.cat([pooled[f, k] for k in range(self.counts[f])], dim=1) for f in range(len(per_field))]
        if self.padded:  # a feature with fewer chunks: zero tail
            out = [nn.functional.pad(vectors, (0, self.dim - vectors.shape[1])) for vectors in out]
        if self.field_vectors is not None:
            out = [vectors + self.field_vectors[field] for field, vectors in enumerate(out)]
        return out


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


def feature_chunks(rule: Any, feature_map: FeatureMap, embedding: EmbeddingConfig, chunks: int) -> tuple[int, ...] | None:
    """The chunk count per sparse field: "uniform" (None: every field `chunks`), "cardinality" (more for larger
    vocabularies) or a {field: count} mapping (the method turns "rank" into one from the rank stage's order)."""
    names = {f.name: f.vocab_size for f in sparse_fields(feature_map, embedding.numeric_as_value)}
    if rule == "uniform":
        return None
    if rule == "cardinality":
        counts = chunks_by_cardinality(names, chunks)
    elif isinstance(rule, dict):
        missing = sorted(set(names) - set(rule))
        if missing:
            raise ValueError(f"chunk_counts has no count for field(s) {', '.join(missing)}")
        counts = rule
    else:
        raise ValueError(f"chunk_counts must be uniform, cardinality, rank or a {{field: count}} mapping, got {rule!r}")
    return tuple(int(counts[name]) for name in names)


def per_field_parameters(feature_map: FeatureMap, dim: int) -> int:
    """Embedding parameters of one table per field (the budget's reference)."""
    return sum(f.vocab_size for f in feature_map.fields) * dim


def shared_model(base: str, feature_map: FeatureMap, embedding: EmbeddingConfig, layout: SharedTables, params: dict) -> CTRModel:
    """Model `base` (one of BASES, with its own `params`) over the tables of `layout` (Unified Embedding's shared
    tables, or the budgeted per-field tables of models/budgeted.py) in place of one full table per field."""
    from models.registry import build_model

    if base not in BASES:
        raise ValueError(f"model {base!r} cannot take shared tables; use one of {', '.join(BASES)}")
    return build_model(base, feature_map, dataclasses.replace(embedding, shared=layout), params)
