"""Out-of-core benchmark: ingest and rank 50 M synthetic rows from parquet shards, with peak RSS.

Each stage runs as its own `python -m pipeline` process; its wall time and peak
resident memory (getrusage of the finished child) are printed against the
4 GB goal.

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

import yaml

from bench.common import machine
from features import synthetic

GOAL_GIB = 4.0


def run_stage(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one pipeline process."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # a fresh child so that RUSAGE of this child alone is read back
        os.execv(sys.executable, [sys.executable, "-m", "pipeline", *args])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"pipeline {' '.join(args)} failed")
    return wall, usage.ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--data", type=Path, help="parquet shard directory (generated when missing)")
    parser.add_argument("--out", type=Path, help="pipeline output directory")
    args = parser.parse_args()
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
    rank_s, rank_gib = run_stage(["rank", "--out", str(out), "--no-tracking"])
    fm = json.loads((out / "ingest" / "feature_map.json").read_text())
    rows = sum(s["rows"] for s in fm["splits"].values())
    train = fm["splits"]["train"]["rows"]
    cells = train * len(fm["fields"])
    top = [line.split(",")[1] for line in (out / "rank" / "ranking.csv").read_text().splitlines()[1:6]]
    print(f"rows: {rows:,} (train {train:,}), fields: {len(fm['fields'])}")
    print("| stage | wall s | throughput | peak RSS GiB | goal | ratio to goal |")
    print("|---|---|---|---|---|---|")
    print(
        f"| ingest (read, fit vocabularies, encode, write) | {ingest_s:.1f} | {rows / ingest_s / 1e6:.2f} M rows/s | {ingest_gib:.2f} | < {GOAL_GIB} | {ingest_gib / GOAL_GIB:.2f} |"
    )
    print(
        f"| rank (train counts, valid/test drift, pairs, 3MR) | {rank_s:.1f} | {cells / rank_s / 1e6:.0f} M train cells/s | {rank_gib:.2f} | < {GOAL_GIB} | {rank_gib / GOAL_GIB:.2f} |"
    )
    print(f"top 5 by score: {', '.join(top)} (planted: {', '.join(synthetic.INFORMATIVE)})")
    peak = max(ingest_gib, rank_gib, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(f"\npeak RSS {peak:.2f} GiB: {'within' if peak < GOAL_GIB else 'OVER'} the {GOAL_GIB} GiB goal")
    if args.out is None:  # the stage outputs (1.6 GB for 50 M rows) go; generated data and a given --out stay
        shutil.rmtree(out, ignore_errors=True)
        if args.data is not None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"generated data kept in {data} (pass --data {data} to reuse it)")


if __name__ == "__main__":
    main()
