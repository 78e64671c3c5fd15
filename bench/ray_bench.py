"""The rank stage on Ray against the local engine, same host, same sitting, same encoded splits (issue 18).

Ingests the synthetic data once (`python -m pipeline generate` shards, then the ingest stage), then runs the rank
stage twice as whole processes on that one ingest output: `--engine local` and `--engine ray` (a local Ray of
`--workers` CPUs, started by the run, so its start-up counts). Prints each one's wall time and train rows/s, the
ratio Ray / local, and whether the outputs are byte-identical.

    python -m bench.ray_bench [--rows 50000000] [--workers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine
from bench.scale_bench import run_stage
from pipeline import catalog

OUTPUTS = ("ranking.csv", "pairs.csv", "quality.json", "ranking.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ray_bench_"))
    raw, local = work / "raw", work / "local"
    if not raw.is_dir():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "generate", "--rows", str(args.rows), "--out", str(raw)], check=True)
        print(f"generate: {args.rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    if not catalog.FEATURE_MAP.at(local).is_file():
        wall, rss = run_stage(["run", "--data", str(raw), "--out", str(local), "--stages", "ingest", "--no-tracking"])
        print(f"ingest: {wall:.1f} s, peak RSS {rss:.2f} GiB", flush=True)
    on_ray = work / "ray"
    on_ray.mkdir(exist_ok=True)
    if not (on_ray / "ingest").exists():
        (on_ray / "ingest").symlink_to(local / "ingest")  # the same encoded splits, read in place
    train_rows = catalog.parquet_rows(catalog.split_file(local / "ingest", "train"))
    timings = {}
    for engine, out in (("local", local), ("ray", on_ray)):
        extra = ["--engine", engine] + (["--config", str(_workers_config(work, args.workers))] if engine == "ray" else [])
        wall, rss = run_stage(["rank", "--out", str(out), "--no-tracking", "--force", *extra])
        timings[engine] = wall
        print(
            f"rank --engine {engine}: {wall:.1f} s, {train_rows / wall / 1e6:.2f} M train rows/s, peak RSS (driver) {rss:.2f} GiB",
            flush=True,
        )
    identical = all((local / "rank" / n).read_bytes() == (on_ray / "rank" / n).read_bytes() for n in OUTPUTS)
    print(f"ray / local throughput: {timings['local'] / timings['ray']:.2f}x; outputs byte-identical: {identical}")
    print(f"machine: {machine()}; {train_rows:,} train rows; Ray workers {args.workers}")


def _workers_config(work: Path, workers: int) -> Path:
    path = work / "ray.yaml"
    path.write_text(f"engine: {{workers: {workers}}}\n")
    return path


if __name__ == "__main__":
    main()
