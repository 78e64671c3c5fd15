"""Compressed input: ingest of a gzipped CSV against the plain file, same rows, same sitting.

Writes a CSV of hashed string ids (Zipf-distributed, like Avazu or Criteo's
categorical columns) plus a few integer columns, gzips it (level 6, gzip's
default), then runs `python -m pipeline ingest` on each file as its own process,
alternating plain and gzip, and prints wall time and peak RSS of each with the
gzip / plain ratios. The plain file's ingest is the anchor; the issue's goal is
a ratio of at most 1.5 in time at the same memory bound.

With `--rank`, also `python -m pipeline rank --data clicks.csv` (ingest and
rank, the whole process, tracking off) against its anchor in the same sitting:
this process reading the same CSV with polars `read_csv` and computing each
column's label mutual information from numpy bincounts (ids factorised by
polars), the least a ranking tool must do (issue 17's goal: at most 3x).

    python -m bench.input_bench [--rows 2000000] [--repeats 2] [--rank] [--dir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

# Like for like: the anchor below runs in this process under the numpy setting `python -m pipeline` uses (no madvised
# huge pages, pipeline/__main__.py), set before numpy is imported. The anchor measured 2.3-2.6 s either way.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import numpy as np
import polars as pl

from bench.common import machine
from bench.scale_bench import run_stage
from features.information import mutual_information


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


def read_csv_bincount_mi(path: Path, label: str = "click") -> tuple[float, dict[str, float]]:
    """Seconds to read `path` with polars and compute every column's plug-in label MI (nats) from bincounts."""
    started = time.perf_counter()
    frame = pl.read_csv(path)
    y = frame[label].to_numpy().astype(np.int64)
    mi = {}
    for name in frame.columns:
        if name == label:
            continue
        codes = frame[name].rank("dense").to_numpy().astype(np.int64)  # ids 1..k, nulls ranked too
        mi[name] = mutual_information(np.bincount(codes * 2 + y, minlength=2 * (int(codes.max()) + 1)).reshape(-1, 2))
    return time.perf_counter() - started, mi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed after)")
    parser.add_argument("--rank", action="store_true", help="also the rank CLI on the plain CSV against read_csv + bincount MI")
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
        if args.rank:
            ranks, anchors = [], []
            for r in range(args.repeats):
                out = work / f"out-rank-{r}"
                wall, rss = run_stage(["rank", "--data", str(plain), "--out", str(out), "--no-tracking"])
                anchor, mi = read_csv_bincount_mi(plain)
                ranks.append(wall)
                anchors.append(anchor)
                top = pl.read_csv(out / "rank" / "ranking.csv")["feature"].head(4).to_list()
                print(
                    f"  rank CLI run {r + 1}: {wall:6.1f} s (peak RSS {rss:.2f} GiB), top 4 {top}; read_csv + bincount MI {anchor:.1f} s, "
                    f"top 4 by plain MI {sorted(mi, key=mi.get, reverse=True)[:4]}"
                )
                shutil.rmtree(out)
            ratio = statistics.median(ranks) / statistics.median(anchors)
            print(
                f"rank CLI / (read_csv + bincount MI), medians: {statistics.median(ranks):.1f} / {statistics.median(anchors):.1f} s = {ratio:.1f}x (goal <= 3)"
            )
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
