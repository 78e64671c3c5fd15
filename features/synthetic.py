"""Synthetic CTR data with planted signal: the project's embedded default dataset.

The label is drawn from a logistic model of a few planted features:
- informative single features of cardinality 2, 5, 10 and a Zipf 20k-value id;
- two pure pairwise interactions (each side alone carries no information
  about the label: every row of the effect table holds the same multiset of
  effects, so P(y | a) is the same for every a);
- one informative numeric field.
Everything else is noise: ids of cardinality 2 to ~1e6 (uniform and Zipf),
noise numerics, and missing values in several columns. Generation is
vectorised and chunked at a fixed chunk size, so the same seed and row count
give the same rows whatever the shard size used to write them.

That is the `planted` kind (the default); `longtail` (features/longtail.py) has
web-like fields of 10^5 to 10^7 Zipf-distributed values, for measuring
embeddings at a parameter budget. `generate`, `iter_chunks`, `kinds` and
`write_parquet_shards` take the kind.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from featuremap import FieldKind
from featuremap.errors import InputError
from features import longtail
from features.longtail import zipf_ids

CHUNK_ROWS = 1 << 20
# `pipeline run --rows N` holds up to this many rows in memory (~0.6 GB); more are written to the ingest's scratch as
# parquet shards and read out of core, like any parquet input.
IN_MEMORY_ROWS = 4 * CHUNK_ROWS
LABEL = "label"
SyntheticKind = Literal["planted", "longtail"]
INFORMATIVE = ("inf_c2", "inf_c5", "inf_c10", "inf_zipf20k", "num_signal")
INTERACTIONS = (("pair_a", "pair_b"), ("pair_c", "pair_d"))
# name -> (cardinality, distribution); pair fields are uniform so that each side alone is uninformative.
CATEGORICAL = {
    "inf_c2": (2, "uniform"),
    "inf_c5": (5, "uniform"),
    "inf_c10": (10, "uniform"),
    "inf_zipf20k": (20_000, "zipf"),
    "pair_a": (4, "uniform"),
    "pair_b": (4, "uniform"),
    "pair_c": (10, "uniform"),
    "pair_d": (20, "uniform"),
    "noise_u2": (2, "uniform"),
    "noise_u50": (50, "uniform"),
    "noise_u1k": (1_000, "uniform"),
    "noise_zipf10k": (10_000, "zipf"),
    "noise_u100k": (100_000, "uniform"),
    "noise_zipf100k": (100_000, "zipf"),
    "noise_zipf1m": (1_000_000, "zipf"),
}
NUMERIC = ("num_signal", "num_noise", "count_noise")
MISSING = {"inf_c10": 0.05, "noise_u50": 0.2, "noise_zipf10k": 0.1, "num_signal": 0.1, "count_noise": 0.3}
KINDS: dict[str, FieldKind] = {name: "categorical" for name in CATEGORICAL} | {name: "numeric" for name in NUMERIC}


@dataclass(frozen=True)
class SyntheticModel:
    """The planted effects, drawn once from the seed."""

    effects: dict[str, np.ndarray]
    pair_signs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    bias: float = -1.3

    @classmethod
    def from_seed(cls, seed: int) -> SyntheticModel:
        rng = np.random.default_rng([seed, 0xC7])
        effects = {
            "inf_c2": np.array([-0.5, 0.5]),
            "inf_c5": rng.normal(0, 0.5, 5),
            "inf_c10": rng.normal(0, 0.4, 10),
            "inf_zipf20k": rng.normal(0, 0.6, 20_000),
        }
        signs = tuple(rng.permutation(np.repeat([-1.0, 1.0], k // 2)) for k in (4, 4, 10, 20))
        return cls(effects=effects, pair_signs=signs)  # type: ignore[arg-type]


def _chunk(model: SyntheticModel, key: list[int], n: int) -> pl.DataFrame:
    rng = np.random.default_rng(key)
    cols: dict[str, np.ndarray] = {}
    for name, (k, dist) in CATEGORICAL.items():
        values = zipf_ids(rng, k, n) if dist == "zipf" else rng.integers(0, k, n)
        cols[name] = values.astype(np.int32)
    signal = rng.normal(0.0, 1.0, n)
    cols["num_signal"] = np.exp(signal + 1.0)
    cols["num_noise"] = rng.normal(10.0, 3.0, n)
    cols["count_noise"] = rng.geometric(0.05, n).astype(np.float64)
    logit = np.full(n, model.bias)
    for name, effect in model.effects.items():
        logit += effect[cols[name]]
    sa, sb, sc, sd = model.pair_signs
    logit += 0.9 * sa[cols["pair_a"]] * sb[cols["pair_b"]]
    logit += 0.7 * sc[cols["pair_c"]] * sd[cols["pair_d"]]
    logit += 0.5 * signal
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    frame = pl.DataFrame({LABEL: label, **cols})
    masks = {name: rng.random(n) < share for name, share in MISSING.items()}
    return frame.with_columns(pl.when(pl.Series(mask)).then(None).otherwise(pl.col(name)).alias(name) for name, mask in masks.items())


def kinds(kind: SyntheticKind = "planted") -> dict[str, FieldKind]:
    """The field kinds of the `kind` dataset (its label is LABEL)."""
    if kind == "longtail":
        return dict(longtail.KINDS)
    return dict(KINDS)


def iter_chunks(rows: int, seed: int, kind: SyntheticKind = "planted", part: int = 0) -> Iterator[pl.DataFrame]:
    """Yield the `kind` dataset of `rows` rows in chunks of at most CHUNK_ROWS. A `part` above 0 (planted data only) draws
    other rows from the same planted effects: another day's partition of the same traffic."""
    if kind == "longtail":
        if part:
            raise ValueError("part is for the planted data only")
        yield from longtail.iter_chunks(rows, seed)
        return
    model = SyntheticModel.from_seed(seed)
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        yield _chunk(model, [seed, index, part] if part else [seed, index], min(CHUNK_ROWS, rows - start))


def generate(rows: int, seed: int = 7, kind: SyntheticKind = "planted") -> pl.DataFrame:
    """The whole dataset in memory."""
    return pl.concat(list(iter_chunks(rows, seed, kind)))


def shard_bytes_per_row(kind: SyntheticKind = "planted", sample_rows: int = 20_000) -> float:
    """Parquet bytes a row of `kind` takes in `write_parquet_shards`' files (from a sample written to memory), with a
    tenth to spare: what a run of many rows will need on disk."""
    import io

    buffer = io.BytesIO()
    next(iter_chunks(sample_rows, 7, kind)).write_parquet(buffer, row_group_size=CHUNK_ROWS)
    return 1.1 * buffer.tell() / sample_rows


def write_parquet_shards(
    directory: Path, rows: int, seed: int = 7, shard_rows: int = 4 * CHUNK_ROWS, kind: SyntheticKind = "planted", part: int = 0
) -> list[Path]:
    """Write the dataset (its `part`, see iter_chunks) as parquet shards without holding more than one shard in memory;
    an InputError first if the disk there cannot hold them."""
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    need, free = rows * shard_bytes_per_row(kind), shutil.disk_usage(existing).free
    if need > free:
        raise InputError(
            f"{directory}: {rows:,} synthetic rows need about {need / 2**30:.1f} GiB of parquet, {free / 2**30:.1f} GiB free there"
        )
    directory.mkdir(parents=True, exist_ok=True)
    paths, buffer, buffered = [], [], 0
    for chunk in iter_chunks(rows, seed, kind, part):
        buffer.append(chunk)
        buffered += chunk.height
        if buffered >= shard_rows:
            paths.append(directory / f"part-{len(paths):05d}.parquet")
            pl.concat(buffer).write_parquet(paths[-1], row_group_size=CHUNK_ROWS)
            buffer, buffered = [], 0
    if buffer:
        paths.append(directory / f"part-{len(paths):05d}.parquet")
        pl.concat(buffer).write_parquet(paths[-1], row_group_size=CHUNK_ROWS)
    return paths
