"""The predictions file `python -m pipeline predict` writes: checked before any scoring (its place can be written, a
CSV can hold the kept columns), then written chunk by chunk as `pipeline.package.Scoring` yields them, through a
temporary file renamed at the end."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from pipeline.errors import UserError


def _temporary(path: Path) -> Path:
    """A temporary name of this process's own beside `path` (two predicts to one output never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def check_writable(path: Path) -> None:
    """A UserError now if the predictions cannot be written to `path` (its folder cannot be made, or written to)."""
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.touch()
        finally:  # also when a SIGTERM (raised as an exit) lands between the two
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the predictions there ({exc.strerror or exc})") from exc


def check_csv_columns(kept_types: dict[str, pl.DataType], path: Path) -> None:
    """A UserError, before any scoring, for a kept column a CSV file cannot hold (lists, structs, bytes, durations)."""
    if path.suffix.lower() != ".csv":
        return
    for name, dtype in kept_types.items():
        if dtype.is_nested() or dtype in (pl.Binary, pl.Object) or isinstance(dtype, pl.Duration):
            raise UserError(f"--keep {name}: a {dtype} column cannot go to a CSV file; write {path.with_suffix('.parquet').name} instead")


def write_predictions(frames: Iterable[pl.DataFrame], path: Path) -> None:
    """Write the predictions, chunk by chunk as they come, as parquet (or CSV for a .csv name) through a temporary file
    and a rename: a write or a scoring that fails (a full disk, a bad row in the last chunk) leaves neither.
    (`check_writable` says before any scoring whether the place can take them.)"""
    import pyarrow.parquet as pq

    tmp = _temporary(path)
    rows, writer = 0, None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as handle:
            try:
                for frame in frames:
                    if path.suffix.lower() == ".csv":
                        frame.write_csv(handle, include_header=rows == 0)
                    else:
                        table = frame.to_arrow()
                        writer = writer or pq.ParquetWriter(handle, table.schema, compression="zstd")
                        writer.write_table(table)
                    rows += frame.height
            finally:
                if writer is not None:
                    writer.close()
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: could not write the predictions ({exc.strerror or exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    print(f"predict: {rows:,} rows -> {path}", file=sys.stderr)
