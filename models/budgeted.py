"""Per-field tables at a parameter budget: the hashing trick and frequency-capped vocabularies.

These are the baselines Unified Embedding (models/unified.py) is measured against at equal budgets
(issue 19; docs/methods/budgeted.md). Both keep one table per field and shrink it:
- the hashing trick (Weinberger et al., 2009) hashes a field's ids into fewer rows than it has values,
  with a salted hash per field, so collisions happen only within a field;
- a frequency cap keeps a field's most frequent values (the vocabulary is numbered most frequent first,
  features/encode.py) and sends the rest to the field's out-of-vocabulary row, as a higher `min_count`
  at ingest would.
`PerFieldLayout` is what FeatureEmbedding takes as its `shared` tables (EmbeddingConfig.shared), so
every model that takes Unified Embedding's tables takes these (`unified.BASES`). The methods that set
them up are methods/hashing.py and methods/capped.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from featuremap import FIRST_VALUE_ID, OOV_ID
from models.batching import EncodedBatch
from models.embedding import Backend, Pooling, bag_offsets, split_fields
from models.unified import HASH_PRIME

Rule = Literal["hash", "cap"]


@dataclass(frozen=True)
class PerFieldLayout:
    """One table per sparse field of `rows[t]` rows over a field of `vocab[t]` ids.

    rule "hash": ids of a field with rows < vocab go to ((a·id + b) mod P) mod rows, a salted hash per field
    drawn from `seed`; a field whose table holds its vocabulary keeps its ids. rule "cap": ids >= rows go to the
    field's out-of-vocabulary row (ids are numbered most frequent first, so the table keeps the most frequent
    values). The first-order weights (FM, DeepFM) get the same rows, one wide.
    """

    rule: Rule
    rows: tuple[int, ...]
    vocab: tuple[int, ...]
    seed: int = 0

    def tables_for(self, names: list[str], dim: int, pooling: Pooling, backend: Backend) -> PerFieldTables:
        """The tables of a FeatureEmbedding over sparse fields `names`."""
        return PerFieldTables(names, dim, self, pooling, backend)

    def first_order(self, dim: int) -> PerFieldLayout:
        """The first-order weights take the same rows (so they shrink with the budget as Unified Embedding's do)."""
        return self

    @property
    def parameters_per_dim(self) -> int:
        """Rows in all: the embedding parameters are this times the embedding dim."""
        return sum(self.rows)


class PerFieldTables(nn.Module):
    """The per-field tables of a PerFieldLayout and the remapping of ids into them.

    Backends as for FeatureEmbedding: "torch" (one nn.EmbeddingBag per field) or "torchrec" (one
    EmbeddingBagCollection table per field, fed a KeyedJaggedTensor of the remapped ids).
    """

    def __init__(self, names: list[str], dim: int, layout: PerFieldLayout, pooling: Pooling, backend: Backend) -> None:
        super().__init__()
        if len(layout.rows) != len(names) or len(layout.vocab) != len(names):
            raise ValueError(f"the layout has {len(layout.rows)} tables for {len(names)} sparse fields")
        if min(layout.rows, default=1) < FIRST_VALUE_ID and layout.rule == "cap":
            raise ValueError(f"a capped table needs at least {FIRST_VALUE_ID} rows (padding, out-of-vocabulary, missing)")
        if min(layout.rows, default=1) < 1:
            raise ValueError("every table needs at least one row")
        self.names = names
        self.rule = layout.rule
        self.rows = list(layout.rows)
        self.remapped = [rows < vocab for rows, vocab in zip(layout.rows, layout.vocab, strict=True)]
        self.backend = backend
        generator = torch.Generator().manual_seed(layout.seed)
        a = torch.randint(1, HASH_PRIME, (len(names),), generator=generator, dtype=torch.int64)
        b = torch.randint(0, HASH_PRIME, (len(names),), generator=generator, dtype=torch.int64)
        self.register_buffer("salts", torch.stack([a, b], dim=-1))
        if backend == "torchrec":
            from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

            tables = [
                EmbeddingBagConfig(
                    name=f"t_{name}",
                    embedding_dim=dim,
                    num_embeddings=rows,
                    feature_names=[name],
                    pooling=PoolingType.MEAN if pooling == "mean" else PoolingType.SUM,
                )
                for name, rows in zip(names, self.rows, strict=True)
            ]
            self.collection = EmbeddingBagCollection(tables=tables, device=torch.device("cpu"))
        else:
            self.tables = nn.ModuleList(nn.EmbeddingBag(rows, dim, mode=pooling) for rows in self.rows)

    def remap(self, field: int, ids: torch.Tensor) -> torch.Tensor:
        """Field `field`'s ids as rows of its table."""
        if not self.remapped[field]:
            return ids
        rows = self.rows[field]
        if self.rule == "cap":
            return torch.where(ids < rows, ids, torch.full_like(ids, OOV_ID))
        a, b = self.salts[field]
        return ((ids * a + b) % HASH_PRIME) % rows

    def weights(self) -> dict[str, torch.Tensor]:
        """Each field's table weight, by field name."""
        if self.backend == "torchrec":
            return {name: self.collection.embedding_bags[f"t_{name}"].weight for name in self.names}
        return {name: table.weight for name, table in zip(self.names, self.tables, strict=True)}

    def forward(self, batch: EncodedBatch) -> list[torch.Tensor]:
        """Each sparse field's [rows, dim] embedding."""
        per_field, lengths = split_fields(batch)
        ids = [self.remap(field, values) for field, values in enumerate(per_field)]
        if self.backend == "torchrec":
            from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

            kjt = KeyedJaggedTensor(keys=self.names, values=torch.cat(ids), lengths=lengths.reshape(-1))
            pooled = self.collection(kjt).to_dict()
            return [pooled[name] for name in self.names]
        return [table(values, bag_offsets(n)) for table, values, n in zip(self.tables, ids, lengths, strict=True)]


def hashed_rows(vocab: Sequence[int], rows: int) -> tuple[int, ...]:
    """The hashing trick's rows per field for `rows` rows in all, by water-filling: every field gets
    min(vocab, λ) rows with λ the largest level whose total fits, so a field smaller than its share keeps its
    whole vocabulary (no collisions) and the rest is split evenly among the larger fields; leftover rows
    (from rounding λ down) go one each to the largest fields."""
    sizes = np.asarray(vocab, dtype=np.int64)
    if sizes.size == 0:
        return ()
    if rows >= sizes.sum():
        return tuple(int(v) for v in sizes)
    if rows < sizes.size:
        raise ValueError(f"{rows} rows cannot give each of {sizes.size} fields a row")
    ordered = np.sort(sizes)
    below = np.concatenate([[0], np.cumsum(ordered)[:-1]])  # rows the fields smaller than the i-th take whole
    levels = (rows - below) // (sizes.size - np.arange(sizes.size))  # λ if the fields from the i-th on are cut
    cut = int(np.argmax(levels < ordered))  # the first field the level does not cover
    level = int(levels[cut])
    out = np.minimum(sizes, level)
    spare = rows - int(out.sum())
    for i in np.argsort(-sizes, kind="stable")[:spare]:  # fields cut at the level, largest first
        if out[i] < sizes[i]:
            out[i] += 1
    return tuple(int(v) for v in out)


def capped_rows(vocab: Sequence[int], counts: Sequence[np.ndarray | None], rows: int) -> tuple[tuple[int, ...], int]:
    """A frequency cap's rows per field for `rows` rows in all, and the min count it amounts to.

    `counts[t]` holds field t's train count per id (`vocab[t]` of them; ids from FIRST_VALUE_ID on are values,
    numbered most frequent first); None keeps the field whole (quantile bins, which are not numbered by
    frequency). Every capped field keeps its padding, out-of-vocabulary and missing rows; the values kept are the
    most frequent across all fields (one global min count, ties broken by field then id), so with ids numbered by
    frequency a capped table is a prefix of its field's ids. The min count is the count of the rarest value kept
    (0 when nothing is cut)."""
    if len(vocab) != len(counts):
        raise ValueError(f"{len(counts)} count arrays for {len(vocab)} fields")
    capped = [t for t, c in enumerate(counts) if c is not None]
    if rows >= sum(vocab):
        return tuple(int(v) for v in vocab), 0
    fixed = sum(int(v) for t, v in enumerate(vocab) if counts[t] is None) + FIRST_VALUE_ID * len(capped)
    if rows < fixed:
        raise ValueError(f"{rows} rows cannot hold the {fixed} rows every field keeps (uncapped fields, special ids)")
    values = [np.asarray(counts[t][FIRST_VALUE_ID:], dtype=np.int64) for t in capped]
    count = np.concatenate(values)
    field = np.repeat(np.arange(len(capped)), [v.size for v in values])
    position = np.concatenate([np.arange(v.size) for v in values])
    order = np.lexsort((position, field, -count))[: rows - fixed]  # most frequent first
    kept = np.bincount(field[order], minlength=len(capped))
    out = [int(v) for v in vocab]
    for i, t in enumerate(capped):
        out[t] = FIRST_VALUE_ID + int(kept[i])
    return tuple(out), int(count[order[-1]]) if order.size else int(count.max(initial=0)) + 1
