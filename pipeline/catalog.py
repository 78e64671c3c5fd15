"""The catalog: where stage outputs live on disk, atomic writes, and batch readers."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import UserError
from common.featuremap import FeatureMap

FEATURE_MAP = "feature_map.json"


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
    return FeatureMap.load(ingest_dir / FEATURE_MAP)


def split_file(ingest_dir: Path, split: str) -> Path:
    """The encoded parquet file of one split."""
    return ingest_dir / f"{split}.parquet"


def parquet_rows(path: Path) -> int:
    """Row count from the parquet footer (no data read)."""
    return pq.ParquetFile(path).metadata.num_rows


def read_columns(path: Path, columns: list[str]) -> dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]]:
    """Whole columns of a parquet file as numpy; list columns as (flat values, row offsets)."""
    names = pq.ParquetFile(path).schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise UserError(f"{path}: column(s) {', '.join(missing)} missing; the feature map does not match the data, rerun ingest")
    table = pq.read_table(path, columns=columns)
    out: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = {}
    for name in columns:
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type):
            out[name] = (column.flatten().to_numpy(), column.offsets.to_numpy().astype(np.int64))
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def iter_batches(path: Path, columns: list[str], batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """Stream `columns` of a parquet file as numpy arrays, `batch_rows` rows at a time."""
    handle = pq.ParquetFile(path)
    missing = [c for c in columns if c not in handle.schema_arrow.names]
    if missing:
        raise UserError(f"{path}: column(s) {', '.join(missing)} missing; the feature map does not match the data, rerun ingest")
    batches = handle.iter_batches(batch_size=batch_rows, columns=columns)

    def read_next() -> dict[str, np.ndarray] | None:
        batch = next(batches, None)
        return None if batch is None else {name: batch.column(name).to_numpy(zero_copy_only=False) for name in columns}

    # Decode the next batch on a thread while the caller works on this one (pyarrow releases the GIL).
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read_next)
        while (current := pending.result()) is not None:
            pending = reader.submit(read_next)
            yield current
