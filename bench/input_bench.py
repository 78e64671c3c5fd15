"""Compressed input: ingest of a gzipped CSV against the plain file, same rows, same sitting.

Writes a CSV of hashed string ids (Zipf-distributed, like Avazu or Criteo's
categorical columns) plus a few integer columns, gzips it (level 6, gzip's
default), then runs `python -m pipeline ingest` on each file as its own process,
alternating plain and gzip, and prints wall time and peak RSS of each with the
gzip / plain ratios. The plain file's ingest is the anchor; the issue's goal is
a ratio of at most 1.5 in time at the same memory bound.

    python -m bench.input_bench [--rows 2000000] [--repeats 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import machine
from bench.scale_bench import run_stage


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` rows: a label, six hashed string ids of 10^2..10^6 Zipf values, and three integer columns."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for j, values in enumerate((100, 1_000, 10_000, 100_000, 1_000_000, 1_000_000)):
        ids = np.minimum(rng.zipf(1.2, rows), values)
        columns[f"id{j}"] = pl.Series(ids).hash(seed=j).cast(pl.String).str.slice(0, 8)
    for j in range(3):
        columns[f"n{j}"] = rng.poisson(3 + 5 * j, rows)
    logit = -1.2 + 0.4 * (columns["n0"] > 3) - 0.3 * (np.asarray(columns["n1"]) % 3 == 0)
    columns = {"click": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8), **columns}
    pl.DataFrame(columns).write_csv(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed after)")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="input-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        plain, packed = work / "clicks.csv", work / "clicks.csv.gz"
        write_csv(plain, args.rows)
        with plain.open("rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 16 << 20)
        print(f"{machine()}")
        print(f"{args.rows:,} rows; plain {plain.stat().st_size / 2**20:.0f} MiB, gzip {packed.stat().st_size / 2**20:.0f} MiB")
        times: dict[str, list[float]] = {"plain": [], "gzip": []}
        peaks: dict[str, list[float]] = {"plain": [], "gzip": []}
        for r in range(args.repeats):
            for name, path in (("plain", plain), ("gzip", packed)):
                out = work / f"out-{name}-{r}"
                wall, rss = run_stage(["ingest", "--data", str(path), "--out", str(out), "--no-tracking"])
                times[name].append(wall)
                peaks[name].append(rss)
                print(f"  {name:5s} run {r + 1}: {wall:6.1f} s, {args.rows / wall / 1e6:.2f} M rows/s, peak RSS {rss:.2f} GiB")
                shutil.rmtree(out)
        t = {k: statistics.median(v) for k, v in times.items()}
        m = {k: max(v) for k, v in peaks.items()}
        print("| input | ingest s (median) | M rows/s | peak RSS GiB |")
        print("|---|---|---|---|")
        for name in ("plain", "gzip"):
            print(f"| {name} | {t[name]:.1f} | {args.rows / t[name] / 1e6:.2f} | {m[name]:.2f} |")
        print(f"gzip / plain: time {t['gzip'] / t['plain']:.2f}x (goal <= 1.5), peak RSS {m['gzip'] / m['plain']:.2f}x")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
