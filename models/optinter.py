"""OptInter's model (Lyu et al., ICDE 2022): field embeddings plus one interaction vector per field pair.

Each candidate pair (a, b) of single-valued fields contributes, by its mode:
- memorise: a row of the pair's own cross-product table, looked up by the key
  id_a * vocab_b + id_b in the pair's memorised vocabulary (row 0: the pair's
  OOV, for keys seen too rarely in train);
- factorise: f_a ⊙ f_b from a separate embedding table;
- naive: nothing;
- search: sum_k softmax(alpha_p / t)_k * candidate_k over the three (naive
  is the zero vector), with architecture weights alpha and temperature t.
The MLP reads the flat field embeddings and every non-naive pair's vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from featuremap import FeatureMap
from models.base import CTRModel
from models.batching import EncodedBatch
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.layers import MLP

MODES = ("memorise", "factorise", "naive")


@dataclass(frozen=True)
class OptInterConfig:
    """Pairs by field name, a mode per pair, the memorised vocabulary size per pair, and the MLP."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)  # per pair: search | memorise | factorise | naive
    cross_sizes: list[int] = field(default_factory=list)  # memorised keys per pair
    cross_dim: int | None = None  # width of interaction vectors (default: the embedding dim)
    hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    dropout: float = 0.0
    batch_norm: bool = False
    factor_regularizer: float = 0.0  # L2 on the factor table, apart from the embedding regulariser


class OptInter(CTRModel):
    def __init__(self, feature_map: FeatureMap, embedding: EmbeddingConfig, config: OptInterConfig) -> None:
        super().__init__()
        if not (len(config.pairs) == len(config.modes) == len(config.cross_sizes)):
            raise ValueError("optinter needs one mode and one cross size per pair")
        unknown = sorted(set(config.modes) - {"search", *MODES})
        if unknown:
            raise ValueError(f"unknown pair mode(s) {', '.join(unknown)}; use search, memorise, factorise or naive")
        self.embedding = FeatureEmbedding(feature_map, embedding)
        names = self.embedding.keys
        specs = {f.name: f for f in self.embedding.sparse}
        for a, b in config.pairs:
            for name in (a, b):
                if name not in specs:
                    raise ValueError(f"pair field {name!r} is not a sparse field of the feature map")
                if specs[name].kind == "multi":
                    raise ValueError(f"pair field {name!r} is multi-valued; crosses need single-valued fields")
        self.pairs = [(names.index(a), names.index(b)) for a, b in config.pairs]
        self.vocab_b = [specs[b].vocab_size for _, b in config.pairs]
        self.modes = list(config.modes)
        width = config.cross_dim or embedding.dim
        uses = {m for m in self.modes}
        self.factors = FeatureEmbedding(feature_map, replace(embedding, dim=width)) if uses & {"search", "factorise"} else None
        self.tables = nn.ModuleDict()
        for p, (mode, size) in enumerate(zip(self.modes, config.cross_sizes, strict=True)):
            if mode in ("search", "memorise"):
                self.register_buffer(f"keys_{p}", torch.zeros(size, dtype=torch.int64))
                table = nn.Embedding(size + 1, width)
                nn.init.normal_(table.weight, 0.0, embedding.init_std)
                self.tables[str(p)] = table
        self.factor_regularizer = config.factor_regularizer
        self.alpha = nn.Parameter(torch.zeros(len(self.pairs), len(MODES)))
        self.temperature = 1.0
        active = sum(mode != "naive" for mode in self.modes)
        self.mlp = MLP(
            self.embedding.num_fields * embedding.dim + active * width, config.hidden, config.dropout, config.batch_norm, out_dim=1
        )

    def regularized_tables(self) -> list[torch.Tensor]:
        """The field embeddings and the cross-product tables: every table looked up by a (cross) feature's id.

        The factor table is not regularised: its product f_a * f_b is second order, and an L2 on it held it at zero
        under the BARS regulariser (0.05), so factorise equalled naive and alpha could not tell them apart (tied to 3
        decimals in every pair, on Frappe and on synthetic data). A cross table is a first-order embedding of the
        cross feature; left unregularised, Frappe's item crosses (thousands of rows each) overfit within 3 epochs.
        `factor_regularizer` puts a separate, lighter L2 on the factor table (see `penalty`).
        """
        return [*self.embedding.table_weights().values(), *(table.weight for table in self.tables.values())]

    def penalty(self) -> torch.Tensor | float:
        """factor_regularizer / 2 · ||factor table||² (the embedding regulariser's form, with its own weight)."""
        if self.factors is None or self.factor_regularizer <= 0:
            return 0.0
        return self.factor_regularizer / 2 * sum(w.pow(2).sum() for w in self.factors.table_weights().values())

    def set_cross_keys(self, keys: list[torch.Tensor]) -> None:
        """Load each memorised pair's sorted key vocabulary."""
        with torch.no_grad():
            for p, k in enumerate(keys):
                if str(p) in self.tables:
                    getattr(self, f"keys_{p}").copy_(torch.as_tensor(k, dtype=torch.int64))

    def memorised_rows(self) -> int:
        """Rows of the cross-product tables of pairs that memorise (OptInter's parameter count)."""
        return sum(self.tables[str(p)].num_embeddings for p, mode in enumerate(self.modes) if mode == "memorise")

    def mode_weights(self) -> torch.Tensor:
        """softmax(alpha / t) per pair over (memorise, factorise, naive)."""
        return torch.softmax(self.alpha / self.temperature, dim=1)

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        e = self.embedding(batch)
        rows = batch.rows
        # Each field's ids (field-major); a pair's fields are single-valued, so theirs are one id per row.
        ids = torch.split(batch.values, batch.lengths.view(len(self.embedding.keys), rows).sum(dim=1).tolist()) if self.pairs else []
        f = self.factors(batch) if self.factors is not None else None
        weights = self.mode_weights() if "search" in self.modes else None
        parts = [e.flatten(1)]
        for p, ((a, b), mode) in enumerate(zip(self.pairs, self.modes, strict=True)):
            if mode == "naive":
                continue
            memorised = factorised = None
            if mode in ("search", "memorise"):
                keys = getattr(self, f"keys_{p}")
                key = ids[a] * self.vocab_b[p] + ids[b]
                if keys.numel():
                    position = torch.searchsorted(keys, key).clamp(max=keys.numel() - 1)
                    index = torch.where(keys[position] == key, position + 1, torch.zeros_like(position))
                else:
                    index = torch.zeros_like(key)
                memorised = self.tables[str(p)](index)
            if mode in ("search", "factorise"):
                factorised = f[:, a] * f[:, b]
            if mode == "search":
                parts.append(weights[p, 0] * memorised + weights[p, 1] * factorised)
            else:
                parts.append(memorised if memorised is not None else factorised)
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
