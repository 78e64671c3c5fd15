"""Out-of-core benchmark: ingest and rank 50 M synthetic rows from parquet shards, with peak RSS.

Each stage runs as its own `python -m pipeline` process; its wall time and peak
resident memory (getrusage of the finished child) are printed against the
4 GB goal, and beside an anchor run as its own process in the same sitting,
the least each stage's job takes out of core with the plain tools:

- ingest: polars' streaming copy of the same shards into one parquet file
  compressed as the stage writes its splits (`scan_parquet(...).sink_parquet(...)`:
  every row read and written once, no vocabularies, no split; the stage also
  writes the raw valid and test rows, `split.keep_raw_holdout`);
- rank: the label's plug-in mutual information of every field of the
  ingested train split, from numpy bincounts of its codes accumulated over
  pyarrow record batches (no correction, pairs, drift or 3MR).

    python -m bench.scale_bench [--rows 50000000] [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.common import machine
from features import synthetic

GOAL_GIB = 4.0
BATCH_ROWS = 1 << 20


def run_child(module: str, args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of `python -m module args` as its own process, after the page cache's dirty
    pages are written out (each child starts with none of the one before's writes still to flush)."""
    os.sync()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # a fresh child so that RUSAGE of this child alone is read back
        os.execv(sys.executable, [sys.executable, "-m", module, *args])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{module} {' '.join(args)} failed")
    return wall, usage.ru_maxrss / 2**20


def run_stage(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one pipeline process."""
    return run_child("pipeline", args)


def anchor_ingest(data: Path, target: Path) -> None:
    """Polars' streaming copy of the shards into one parquet file, compressed as the ingest stage writes its splits."""
    import polars as pl

    from pipeline.catalog import PARQUET_LEVEL

    pl.scan_parquet(data / "*.parquet").sink_parquet(target, compression_level=PARQUET_LEVEL, engine="streaming")


def anchor_rank(ingested: Path) -> dict[str, float]:
    """Every field's plug-in label MI (nats) on the train split, from bincounts accumulated over record batches."""
    import pyarrow.parquet as pq

    from features.information import mutual_information

    fm = json.loads((ingested / "feature_map.json").read_text())
    fields = {f["column"]: int(f["vocab_size"]) for f in fm["fields"]}
    counts = {column: np.zeros(2 * size, dtype=np.int64) for column, size in fields.items()}
    for batch in pq.ParquetFile(ingested / "train.parquet").iter_batches(BATCH_ROWS, columns=[fm["label"], *fields]):
        y = batch.column(fm["label"]).to_numpy().astype(np.int64)
        for column, size in fields.items():
            counts[column] += np.bincount(batch.column(column).to_numpy().astype(np.int64) * 2 + y, minlength=2 * size)
    return {column: mutual_information(table.reshape(-1, 2)) for column, table in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--data", type=Path, help="parquet shard directory (generated when missing)")
    parser.add_argument("--out", type=Path, help="pipeline output directory")
    parser.add_argument("--anchor", choices=["ingest", "rank"], help=argparse.SUPPRESS)  # a child: one anchor, then exit
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.anchor == "ingest":
        return anchor_ingest(args.data, args.target)
    if args.anchor == "rank":
        top = sorted((mi, name) for name, mi in anchor_rank(args.out / "ingest").items())[::-1][:5]
        print(f"anchor rank: top 5 by plain MI: {', '.join(name for _, name in top)}")
        return None
    work = Path(tempfile.mkdtemp(prefix="scale_bench_"))
    data = args.data or work / "raw"
    out = args.out or work / "out"
    print(f"# Out-of-core benchmark\n\nmachine: {machine()}\n")
    if not data.exists():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "generate", "--rows", str(args.rows), "--out", str(data)], check=True)
        print(
            f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f} s ({args.rows / (time.perf_counter() - start) / 1e6:.2f} M rows/s)"
        )
    config = work / "config.yaml"
    # Parquet carries no kinds: the synthetic ids are integers, so name the categorical ones.
    categorical = [n for n, k in synthetic.KINDS.items() if k == "categorical"]
    config.write_text(
        yaml.safe_dump({"data": {"path": str(data), "format": "parquet"}, "schema": {"categorical": categorical}, "out": str(out)})
    )
    common = ["--config", str(config), "--no-tracking"]
    ingest_s, ingest_gib = run_stage(["ingest", *common])
    copy = out / "anchor_copy.parquet"  # on the disk the stage wrote to
    anchor_ingest_s, anchor_ingest_gib = run_child("bench.scale_bench", ["--anchor", "ingest", "--data", str(data), "--target", str(copy)])
    copy.unlink()
    rank_s, rank_gib = run_stage(["rank", "--out", str(out), "--no-tracking"])
    anchor_rank_s, anchor_rank_gib = run_child("bench.scale_bench", ["--anchor", "rank", "--out", str(out)])
    fm = json.loads((out / "ingest" / "feature_map.json").read_text())
    rows = sum(s["rows"] for s in fm["splits"].values())
    train = fm["splits"]["train"]["rows"]
    cells = train * len(fm["fields"])
    top = [line.split(",")[1] for line in (out / "rank" / "ranking.csv").read_text().splitlines()[1:6]]
    print(f"rows: {rows:,} (train {train:,}), fields: {len(fm['fields'])}")
    print("| stage | wall s | throughput | peak RSS GiB | RSS / goal | anchor | anchor wall s | anchor RSS GiB | time / anchor |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| ingest (read, fit vocabularies, encode, write) | {ingest_s:.1f} | {rows / ingest_s / 1e6:.2f} M rows/s | {ingest_gib:.2f} | "
        f"{ingest_gib / GOAL_GIB:.2f} | polars streaming copy | {anchor_ingest_s:.1f} | {anchor_ingest_gib:.2f} | {ingest_s / anchor_ingest_s:.2f}x |"
    )
    print(
        f"| rank (train counts, valid/test drift, pairs, 3MR) | {rank_s:.1f} | {cells / rank_s / 1e6:.0f} M train cells/s | {rank_gib:.2f} | "
        f"{rank_gib / GOAL_GIB:.2f} | bincount MI over batches | {anchor_rank_s:.1f} | {anchor_rank_gib:.2f} | {rank_s / anchor_rank_s:.2f}x |"
    )
    print(f"top 5 by score: {', '.join(top)} (planted: {', '.join(synthetic.INFORMATIVE)})")
    peak = max(ingest_gib, rank_gib, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(f"\npeak RSS {peak:.2f} GiB: {'within' if peak < GOAL_GIB else 'OVER'} the {GOAL_GIB} GiB goal")
    if args.out is None:  # the stage outputs (1.6 GB for 50 M rows) go; generated data and a given --out stay
        shutil.rmtree(out, ignore_errors=True)
    if args.data is not None:  # the work folder holds the config alone
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"generated data kept in {data} (pass --data {data} to reuse it)")


if __name__ == "__main__":
    main()
