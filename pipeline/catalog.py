"""The catalog: every stage's declared inputs and outputs, where they live on disk, atomic writes, batch readers.

`STAGES` declares, per stage in pipeline order, the config sections its output depends on,
the stages whose committed outputs it reads, and the files it writes (each an `Output`, the
one place its name is spelled). The runner plans from it and the cache fingerprints from it;
stages and readers locate files through these names.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from featuremap import FeatureMap
from pipeline.errors import UserError


@dataclass(frozen=True)
class Output:
    """A file (or directory) `name` in stage `stage`'s committed output directory."""

    stage: str
    name: str

    def at(self, out: Path) -> Path:
        return stage_path(out, self.stage) / self.name


FEATURE_MAP = Output("ingest", "feature_map.json")
ENCODER = Output("ingest", "encoder.json")
VOCABULARIES = Output("ingest", "vocab")
SPLITS = {split: Output("ingest", f"{split}.parquet") for split in ("train", "valid", "test")}
HOLDOUT = {split: Output("ingest", f"holdout/{split}.parquet") for split in ("valid", "test")}  # rows as read, not encoded
RANKING = Output("rank", "ranking.csv")
PAIRS = Output("rank", "pairs.csv")
QUALITY = Output("rank", "quality.json")
RANKING_PLOT = Output("rank", "ranking.png")
FIELDS = Output("search", "fields.json")
SEARCH_BASELINE = Output("search", "baseline.json")
STUDY = Output("search", "optuna.json")
STUDY_DB = Output("search", "study.db")
PARETO = Output("search", "pareto.png")
TRAIN_METRICS = Output("train", "metrics.json")
HISTORY = Output("train", "history.json")
LEARNING_CURVE = Output("train", "learning_curve.png")
BASELINES = Output("train", "baselines.json")
PACKAGE = Output("train", "package")
DECISION = Output("promote", "decision.json")
REPORT = Output("report", "report.html")
METRICS = "metrics.json"  # OUT/metrics.json: every stage's report merged
RUN_JOURNAL = "run.json"  # OUT/run.json: what the latest run did


def method_summary(name: str) -> Output:
    """The search stage's summary of method `name` (its state files are the method's own: methods/)."""
    return Output("search", f"{name}.json")


@dataclass(frozen=True)
class StageDecl:
    """What a stage reads (config sections, earlier stages' outputs) and what it writes."""

    name: str
    sections: tuple[str, ...]  # config sections its output depends on
    reads: tuple[str, ...]  # stages whose committed outputs it may read (their fingerprints are part of its own)
    writes: tuple[Output, ...]  # besides the method files the search stage writes


STAGES: tuple[StageDecl, ...] = (
    StageDecl(
        "ingest", ("data", "schema_", "split", "encode"), (), (FEATURE_MAP, ENCODER, VOCABULARIES, *SPLITS.values(), *HOLDOUT.values())
    ),
    StageDecl("rank", ("rank",), ("ingest",), (RANKING, PAIRS, QUALITY, RANKING_PLOT)),
    # rank's section too: search and train read its selection settings (rank.select) when they run alone
    StageDecl("search", ("rank", "search", "train"), ("ingest", "rank"), (FIELDS, SEARCH_BASELINE, STUDY, STUDY_DB, PARETO)),
    StageDecl(
        "train", ("rank", "search", "train"), ("ingest", "rank", "search"), (TRAIN_METRICS, HISTORY, LEARNING_CURVE, BASELINES, PACKAGE)
    ),
    # the registry's champion is outside the run: a retry after the alias moved finds itself champion, and says so
    StageDecl("promote", ("promote", "tracking"), ("ingest", "train"), (DECISION,)),
    # a new tracking store reruns the report, so that the store gets the report artifact
    StageDecl("report", ("tracking",), ("ingest", "rank", "search", "train", "promote"), (REPORT,)),
)
DECLARED = {stage.name: stage for stage in STAGES}
STAGE_ORDER = tuple(stage.name for stage in STAGES)


def stage_path(out: Path, stage: str) -> Path:
    """The committed output directory of `stage`."""
    return out / stage


@contextmanager
def staging(out: Path, stage: str) -> Iterator[Path]:
    """A private directory that replaces `out/stage` in one rename when the block succeeds.

    On any error the private directory is removed, so readers never see a
    half-written stage.
    """
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{stage}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = stage_path(out, stage)
    old = None
    if final.exists():
        old = out / f".{stage}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_feature_map(ingest_dir: Path) -> FeatureMap:
    """The feature map written by the ingest stage."""
    return FeatureMap.load(ingest_dir / FEATURE_MAP.name)


def split_file(ingest_dir: Path, split: str) -> Path:
    """The encoded parquet file of one split."""
    return ingest_dir / SPLITS[split].name


def parquet_rows(path: Path) -> int:
    """Row count from the parquet footer (no data read)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


# zstd at level 1, not polars' default 3: a third less time writing, files ~10 % larger (an encoded 1.6 M-row split:
# 0.29 -> 0.19 s, 21 -> 23 MiB), and they read back twice as fast.
PARQUET_LEVEL = 1


# The encoded splits' parquet statistics: null counts, no min and max. Their ids are read whole (training, ranking),
# never filtered by value, and polars' min/max of their Int32 columns took a seventh of writing them (a 50 M-row
# ingest: 1.2 s; bench/RESULTS.md, "Out of core"). Raw holdouts keep polars' default statistics.
ENCODED_STATISTICS = {"min": False, "max": False, "distinct_count": False, "null_count": True}


def sink(frame: Any, target: Any, row_group_size: int = 1 << 18, statistics: bool | dict[str, bool] = True) -> None:
    """Write a lazy frame, streaming, to a parquet path or to the files of a `pl.PartitionBy`: how every stage output
    is written (`features.ingest.Sink`)."""
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    frame.sink_parquet(target, compression_level=PARQUET_LEVEL, row_group_size=row_group_size, statistics=statistics, engine="streaming")


def sink_all(targets: dict[Path, Any], row_group_size: int = 1 << 18, statistics: bool | dict[str, bool] = True) -> None:
    """Write each lazy frame to its parquet path, streaming, one after the other. Run as one `collect_all`, the sinks
    took the same time (ingest of 50 M rows: 52.7 against 52.8 s) at twice the peak memory (1.80 against 0.95 GB),
    polars buffering every sink's pipeline at once (bench/RESULTS.md, "Out of core")."""
    for path, frame in targets.items():
        sink(frame, path, row_group_size, statistics)


def row_group_shards(path: Path, shards: int) -> list[tuple[list[int], int]]:
    """The file's row groups cut into at most `shards` contiguous runs of about equal rows: (row groups, first row)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    target = max(1, -(-sum(sizes) // max(1, shards)))
    runs: list[tuple[list[int], int]] = []
    first = in_run = 0
    for index, size in enumerate(sizes):
        if not runs or in_run >= target:
            runs.append(([], first))
            in_run = 0
        runs[-1][0].append(index)
        first += size
        in_run += size
    return runs


def read_columns(path: Path, columns: list[str]) -> dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]]:
    """Whole columns of a parquet file as numpy; list columns as (flat values, row offsets)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = pq.ParquetFile(path).schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise UserError(f"{path}: column(s) {', '.join(missing)} missing; the feature map does not match the data, rerun ingest")
    table = pq.read_table(path, columns=columns)
    out: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = {}
    for name in columns:
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):  # polars writes large lists
            out[name] = (column.flatten().to_numpy(), column.offsets.to_numpy().astype(np.int64))
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def iter_batches(path: Path, columns: list[str], batch_rows: int, row_groups: list[int] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Stream `columns` of a parquet file (of its `row_groups` only, when given) as numpy arrays, `batch_rows` rows at
    a time."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    missing = [c for c in columns if c not in handle.schema_arrow.names]
    if missing:
        raise UserError(f"{path}: column(s) {', '.join(missing)} missing; the feature map does not match the data, rerun ingest")
    batches = handle.iter_batches(batch_size=batch_rows, columns=columns, row_groups=row_groups)

    def read_next() -> dict[str, np.ndarray] | None:
        batch = next(batches, None)
        return None if batch is None else {name: batch.column(name).to_numpy(zero_copy_only=False) for name in columns}

    # Decode the next batch on a thread while the caller works on this one (pyarrow releases the GIL).
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read_next)
        while (current := pending.result()) is not None:
            pending = reader.submit(read_next)
            yield current


def rank_batches(
    path: Path, feature_map: FeatureMap, batch_rows: int, desc: str | None = None, row_groups: list[int] | None = None
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """(ids per rank column, int8 labels) of an encoded split (of its `row_groups` only, when given), batch by batch."""
    columns = [spec.rank_column for spec in feature_map.fields]
    total = -(-parquet_rows(path) // batch_rows)
    batches = iter_batches(path, [*columns, feature_map.label], batch_rows, row_groups)
    for batch in tqdm(batches, total=total, desc=desc, unit="batch", disable=None if desc else True):
        label = batch.pop(feature_map.label).astype(np.int8, copy=False)
        yield batch, label
