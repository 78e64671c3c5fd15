"""Synthetic CTR data with web-like, long-tailed vocabularies: the `longtail` kind of the built-in data.

Made for measuring embeddings at a parameter budget (issue 19, docs/data/README.md "Synthetic data"): the
setting Unified Embedding's paper measures in is fields with millions of Zipf-distributed values where the
head is seen often and the tail rarely, not a few thousand values that are all seen many times.

Fields (value ids drawn with P(v) ∝ ln((v+2)/(v+1)), a Zipf(1)-like law, so id 0 is the most frequent):
- `user` (2·10^6 values), `item` (5·10^5), `query` (10^7) and `publisher` (10^5): the long-tailed ids;
- `advertiser` (2·10^4) and `category` (200), functions of the item (the catalogue's hierarchy);
- `hour` (24, uniform) and `device` (4, skewed): small context fields.
Label: a logistic model of
- an effect per value of every id field and of the advertiser, drawn N(0, sd) for head and tail alike
  (signal in the tail: a rare value matters as much as a common one, but is seen too seldom to learn alone);
- shared structure across fields: user × category and query × category affinities, as dot products of a
  4-dimensional factor per user (its own) and per query (its query cluster's, 1,000 clusters) with the
  category's factor; a tail item is still placed by its category and advertiser;
- an hour-of-day curve and a device effect.
With 2 M rows about 1.5 M distinct values occur (query ~0.8 M, user ~0.4 M). Generation is vectorised and
chunked like features/synthetic.py: the same seed and row count give the same rows whatever the shard size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from featuremap import FieldKind

CHUNK_ROWS = 1 << 20
LABEL = "label"
IDS = {"user": 2_000_000, "item": 500_000, "query": 10_000_000, "publisher": 100_000}
ADVERTISERS, CATEGORIES, QUERY_CLUSTERS, FACTORS = 20_000, 200, 1_000, 4
EFFECT_SD = {"user": 0.4, "item": 0.5, "query": 0.3, "publisher": 0.4, "advertiser": 0.4}
COLUMNS = (*IDS, "advertiser", "category", "hour", "device")
KINDS: dict[str, FieldKind] = {name: "categorical" for name in COLUMNS}


@dataclass(frozen=True)
class LongTailModel:
    """The catalogue and the planted effects, drawn once from the seed."""

    effects: dict[str, np.ndarray]
    advertiser_of: np.ndarray  # item -> advertiser
    category_of: np.ndarray  # item -> category
    cluster_of: np.ndarray  # query -> query cluster
    user_factors: np.ndarray  # [users, FACTORS]
    cluster_factors: np.ndarray  # [query clusters, FACTORS]
    category_factors: np.ndarray  # [categories, FACTORS]
    hour: np.ndarray
    device: np.ndarray
    bias: float = -1.9

    @classmethod
    def from_seed(cls, seed: int) -> LongTailModel:
        rng = np.random.default_rng([seed, 0x1A7])
        sizes = {**IDS, "advertiser": ADVERTISERS}
        effects = {name: rng.normal(0.0, EFFECT_SD[name], size).astype(np.float32) for name, size in sizes.items()}
        return cls(
            effects=effects,
            advertiser_of=rng.integers(0, ADVERTISERS, IDS["item"]).astype(np.int32),
            category_of=rng.integers(0, CATEGORIES, IDS["item"]).astype(np.int16),
            cluster_of=rng.integers(0, QUERY_CLUSTERS, IDS["query"]).astype(np.int16),
            user_factors=rng.normal(0.0, 0.6, (IDS["user"], FACTORS)).astype(np.float32),
            cluster_factors=rng.normal(0.0, 0.6, (QUERY_CLUSTERS, FACTORS)).astype(np.float32),
            category_factors=rng.normal(0.0, 0.6, (CATEGORIES, FACTORS)).astype(np.float32),
            hour=0.3 * np.sin(np.arange(24) * 2 * np.pi / 24),
            device=rng.normal(0.0, 0.2, 4),
        )


def zipf_ids(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    # P(v) = ln((v+2)/(v+1)) / ln(k+1): a Zipf(1)-like law sampled in O(1) per row.
    return np.minimum(np.exp(rng.random(n) * np.log(k + 1)).astype(np.int64) - 1, k - 1)


def _chunk(model: LongTailModel, seed: int, index: int, n: int) -> pl.DataFrame:
    rng = np.random.default_rng([seed, 0x1A7, index])
    cols = {name: zipf_ids(rng, size, n) for name, size in IDS.items()}
    item = cols["item"]
    cols["advertiser"] = model.advertiser_of[item].astype(np.int64)
    cols["category"] = model.category_of[item].astype(np.int64)
    cols["hour"] = rng.integers(0, 24, n)
    cols["device"] = rng.choice(4, n, p=[0.6, 0.25, 0.1, 0.05])
    logit = planted_logit(model, cols)
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return pl.DataFrame({LABEL: label, **{name: cols[name].astype(np.int32) for name in COLUMNS}})


def planted_logit(model: LongTailModel, cols: dict[str, np.ndarray]) -> np.ndarray:
    """The label's logit for rows of `cols` (the generated columns, by name)."""
    logit = np.full(len(cols["user"]), model.bias)
    for name, effect in model.effects.items():
        logit += effect[cols[name]]
    category = model.category_factors[cols["category"]]
    logit += np.einsum("ij,ij->i", model.user_factors[cols["user"]], category)
    logit += np.einsum("ij,ij->i", model.cluster_factors[model.cluster_of[cols["query"]]], category)
    return logit + model.hour[cols["hour"]] + model.device[cols["device"]]


def iter_chunks(rows: int, seed: int) -> Iterator[pl.DataFrame]:
    """Yield the dataset of `rows` rows in chunks of at most CHUNK_ROWS."""
    model = LongTailModel.from_seed(seed)
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        yield _chunk(model, seed, index, min(CHUNK_ROWS, rows - start))
