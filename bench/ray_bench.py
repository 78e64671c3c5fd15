"""The data stages on Ray against the local engine, same host, same sitting, same input (issue 18).

Writes the synthetic data as parquet shards once (`python -m pipeline generate`), then runs as whole processes, once
per engine, `--engine local` and `--engine ray` (a local Ray of `--workers` CPUs, started by each run, so its
start-up counts): the ingest stage on those shards, then the rank stage on that engine's ingest output. Prints each
one's wall time and rows/s, the ratio Ray / local per stage, and whether the outputs are byte-identical (ingest:
every file it writes but its timing record; rank: its four outputs).

    python -m bench.ray_bench [--rows 50000000] [--workers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
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
    on_ray = work / "ray"
    config = _workers_config(work, args.workers)
    rows = sum(catalog.parquet_rows(p) for p in raw.glob("*.parquet"))
    timings: dict[tuple[str, str], float] = {}
    for engine, out in (("local", local), ("ray", on_ray)):
        shutil.rmtree(out, ignore_errors=True)
        extra = ["--engine", engine] + (["--config", str(config)] if engine == "ray" else [])
        wall, rss = run_stage(["run", "--data", str(raw), "--out", str(out), "--stages", "ingest", "--no-tracking", *extra])
        timings["ingest", engine] = wall
        print(
            f"ingest --engine {engine}: {wall:.1f} s, {rows / wall / 1e6:.2f} M input rows/s, peak RSS (driver) {rss:.2f} GiB", flush=True
        )
    same_ingest = _files(local / "ingest") == _files(on_ray / "ingest")
    train_rows = catalog.parquet_rows(catalog.split_file(local / "ingest", "train"))
    for engine, out in (("local", local), ("ray", on_ray)):
        extra = ["--engine", engine] + (["--config", str(config)] if engine == "ray" else [])
        wall, rss = run_stage(["rank", "--out", str(out), "--no-tracking", "--force", *extra])
        timings["rank", engine] = wall
        print(
            f"rank --engine {engine}: {wall:.1f} s, {train_rows / wall / 1e6:.2f} M train rows/s, peak RSS (driver) {rss:.2f} GiB",
            flush=True,
        )
    same_rank = all((local / "rank" / n).read_bytes() == (on_ray / "rank" / n).read_bytes() for n in OUTPUTS)
    for stage, same in (("ingest", same_ingest), ("rank", same_rank)):
        ratio = timings[stage, "local"] / timings[stage, "ray"]
        print(f"{stage}: ray / local throughput {ratio:.2f}x; outputs byte-identical: {same}")
    print(f"machine: {machine()}; {rows:,} input rows, {train_rows:,} train rows; Ray workers {args.workers}")


def _files(directory: Path) -> dict[str, str]:
    """Every file under `directory` but the stage's timing record, by relative path: its sha256."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "stage.json"
    }


def _workers_config(work: Path, workers: int) -> Path:
    path = work / "ray.yaml"
    path.write_text(f"engine: {{workers: {workers}}}\n")
    return path


if __name__ == "__main__":
    main()
