"""The data stages as Ray tasks (`engine.kind: ray`), with the same polars code per part as a local pass and the
same outputs, byte for byte.

Rank: each task counts a run of an encoded split's row groups (`features.ranking.count_batches`), and the driver adds
the counts in row order. Counts add exactly, and the pair sample takes rows by their number in the whole split, so the
merged result equals one local pass. The scores that draw their null batch by batch in sequence (`shifted`,
`permutation`) depend on where batches start; they run with the local engine.

Ingest (parquet input): the driver decides what needs the whole input but few rows (`features.ingest.prepare`: the
schema from the first rows, the time split's cuts, the integer-id test), then rounds of tasks, one per part
(a run of one file's row groups): count (`Encoder.count`: label checks and token counts, which the driver adds up and
fits the encoder from), scan the numeric columns (`Encoder.scan`: their presence and ranges, which add up likewise, and
every k-th train row for their mean, sd and quantile edges, each part numbered from its first train row in the whole
split; a sparse field's values, in a round of their own, from its first value), and encode, each part writing its
rows of each split to a part file. The stage then writes each split as one file from its parts in row order, as a
local run writes it. Rows are split by a hash of their number in the whole input, so a part split apart lands each
row where the whole input split at once puts it.

Tasks read and write by path: on a cluster, every node must see the input and `OUT` (a shared filesystem) and have
this project installed (the same venv, or a Ray runtime environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from featuremap import FeatureMap
from features.encode import Encoder, FitCounts, NumericScan
from features.ingest import IngestParams, IngestResult, Prepared, RawInput, prepare
from features.ranking import Counted, count_batches
from features.settings import RankParams
from pipeline import catalog
from pipeline.config import EngineConfig
from pipeline.errors import UserError

SEQUENTIAL_SCORES = ("shifted", "permutation")


def count_range(path: str, row_groups: list[int], first_row: int, feature_map: FeatureMap, params: RankParams, batch_rows: int) -> Counted:
    """One task: the counts of `row_groups` of the split at `path`, whose first row is `first_row` of the split."""
    return count_batches(catalog.rank_batches(Path(path), feature_map, batch_rows, row_groups=row_groups), feature_map, params, first_row)


def _connect(engine: EngineConfig) -> Any:
    import ray

    if not ray.is_initialized():
        if engine.address:
            ray.init(address=engine.address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=engine.workers, include_dashboard=False, log_to_driver=False)
    return ray


def _ray(engine: EngineConfig) -> Any:
    try:
        return _connect(engine)
    except ImportError as exc:
        raise UserError("engine.kind ray needs the ray package (pip install ray; make setup installs it)") from exc
    except ConnectionError as exc:
        raise UserError(f"cannot reach the Ray cluster at {engine.address}: {exc}") from exc


def count_on_ray(path: Path, feature_map: FeatureMap, params: RankParams, batch_rows: int, engine: EngineConfig) -> Counted:
    """The split's counts from `engine.shards` Ray tasks, added in row order."""
    if params.score in SEQUENTIAL_SCORES:
        raise UserError(f"rank.score {params.score!r} draws its null batch by batch in sequence; it runs with engine.kind: local")
    ray = _ray(engine)
    task = ray.remote(count_range)
    runs = catalog.row_group_shards(path, engine.shards)
    futures = [task.remote(str(path), groups, first, feature_map, params, batch_rows) for groups, first in runs]
    merged = count_batches(iter(()), feature_map, params)  # empty
    for part in ray.get(futures):  # in row order; Ray hands back read-only arrays, so the sums go into fresh ones
        merged.merge(part)
    return merged


# -- ingest ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """Rows `start` .. `start + rows` of parquet `file`, which are rows `first_row` .. of input `source`."""

    source: str
    file: str
    start: int
    rows: int
    first_row: int

    def frame(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.file).slice(self.start, self.rows)


def input_parts(raw: RawInput, shards: int) -> list[Part]:
    """The inputs' files cut into runs of row groups, about `shards` in all, in row order within each input."""
    total = sum(catalog.parquet_rows(f) for src in raw.frames.values() for f in src.files)
    parts = []
    for source, src in raw.frames.items():
        first = 0
        for file in src.files:
            rows = catalog.parquet_rows(file)
            runs = catalog.row_group_shards(file, max(1, round(shards * rows / max(1, total))))
            for (_, start), end in zip(runs, [s for _, s in runs[1:]] + [rows], strict=True):
                parts.append(Part(source, str(file), start, end - start, first + start))
            first += rows
    return parts


def ingest_count(plan: Prepared, part: Part) -> tuple[FitCounts | None, dict[str, int]]:
    """One task: the part's train counts (None when it holds no train rows) and its bad labels per other split."""
    splits = plan.part_splits(part.source, part.frame(), part.first_row)
    encoder = Encoder(plan.schema, plan.encoder_params)
    bad = {name: encoder.bad_labels(frame) for name, frame in splits.items() if name != "train"}
    counts = encoder.count(splits["train"], f"{plan.origin} (train split)") if "train" in splits else None
    return counts, bad


def ingest_scan(plan: Prepared, encoder: Encoder, part: Part, first_train_row: int) -> NumericScan:
    """One task: the part's numeric presence and ranges, and its share of every k-th train row of the whole split."""
    train = plan.part_splits(part.source, part.frame(), part.first_row)["train"]
    return encoder.scan(train, first_train_row, f"{plan.origin} (train split)")


def ingest_sample_own(plan: Prepared, encoder: Encoder, part: Part, first_values: dict[str, int]) -> dict[str, pl.Series]:
    """One task: the part's share of each sparse numeric field's sample (every k-th of its values in the whole split)."""
    return encoder.sample_own(plan.part_splits(part.source, part.frame(), part.first_row)["train"], first_values)


def ingest_write(plan: Prepared, encoder: Encoder, part: Part, directory: str, keep_holdout: bool) -> dict[str, str]:
    """One task: the part's encoded rows of each split (and its raw valid/test rows) written to part files."""
    splits = plan.part_splits(part.source, part.frame(), part.first_row)
    frames = {name: encoder.transform(frame) for name, frame in splits.items()}
    holdout = {f"holdout/{name}": frame for name, frame in plan.holdout(splits).items()} if keep_holdout else {}
    paths = {name: Path(directory) / name / f"{part.source}-{part.first_row:012d}.parquet" for name in frames | holdout}
    catalog.sink_all({paths[name]: frame for name, frame in frames.items()}, statistics=catalog.ENCODED_STATISTICS)
    catalog.sink_all({paths[name]: frame for name, frame in holdout.items()})
    return {name: str(path) for name, path in paths.items()}


def ingest_on_ray(
    raw: RawInput, params: IngestParams, engine: EngineConfig, parts_dir: Path, keep_holdout: bool, scratch: Path | None = None
) -> IngestResult:
    """Ingest as Ray tasks over the input's parts; the result's splits scan the part files (under `parts_dir`) in row order."""
    plan, _ = prepare(raw, params, scratch)
    ray = _ray(engine)
    parts = input_parts(raw, engine.shards)
    plan_ref = ray.put(plan)
    counted = ray.get([ray.remote(ingest_count).remote(plan_ref, part) for part in parts])
    encoder = Encoder(plan.schema, plan.encoder_params)
    train = [(part, counts.rows) for part, (counts, _) in zip(parts, counted, strict=True) if counts is not None]  # in row order
    total = None
    for counts, _ in counted:
        if counts is not None:
            total = counts if total is None else total.merge(counts)
    encoder.fit_counts(total, f"{raw.origin} (train split)")
    if encoder.numeric_fields():
        task, encoder_ref, first, futures = ray.remote(ingest_scan), ray.put(encoder), 0, []
        for part, rows in train:  # each part numbered from its first train row in the whole split
            futures.append(task.remote(plan_ref, encoder_ref, part, first))
            first += rows
        scans = ray.get(futures)
        sample = encoder.fit_scan(NumericScan.join(scans), f"{raw.origin} (train split)")
        if encoder.own_samples:
            task, encoder_ref, futures = ray.remote(ingest_sample_own), ray.put(encoder), []
            values = dict.fromkeys(encoder.own_samples, 0)  # a sparse field's values before the part, in the whole split
            for (part, _), scan in zip(train, scans, strict=True):
                futures.append(task.remote(plan_ref, encoder_ref, part, dict(values)))
                values = {name: count + scan.present[name] for name, count in values.items()}
            sample |= Encoder.join_samples(ray.get(futures))
        encoder.fit_sample(sample)
    # After the whole fit, as a local run checks them (its errors in its order: the train split's first).
    for name in dict.fromkeys(name for _, bad in counted for name in bad):  # valid before test
        encoder.raise_on_bad_labels(sum(bad.get(name, 0) for _, bad in counted), f"{raw.origin} ({name} split)")
    encoder_ref = ray.put(encoder)
    task = ray.remote(ingest_write)
    written: dict[str, list[str]] = {}
    for files in ray.get([task.remote(plan_ref, encoder_ref, part, str(parts_dir), keep_holdout) for part in parts]):
        for name, path in files.items():
            written.setdefault(name, []).append(path)
    splits = {name: pl.scan_parquet(paths) for name, paths in written.items() if not name.startswith("holdout/")}
    holdout = {name.removeprefix("holdout/"): pl.scan_parquet(paths) for name, paths in written.items() if name.startswith("holdout/")}
    return IngestResult(encoder, plan.schema, splits, raw.origin, list(plan.notes), holdout)
