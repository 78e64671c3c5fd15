"""Vocabulary lookups: the encoder's lookup of each kind against a left join (the anchor), same data, same sitting.

The encoder maps a token to its id by an Enum cast (string vocabularies up to ENUM_MAX_VALUES), a gather from a
dense table (integer vocabularies over a small span), or a left join (the rest). This writes a parquet file of
`--rows` rows, one column per case below, fits an encoder on it, and then, each in a fresh process (so that
its peak RSS is its own), encodes one column and streams it to parquet: once as the encoder chooses, once with the
join forced. Prints wall seconds and peak RSS of each, and the join / chosen ratio of time.

    python -m bench.lookup_bench [--rows 10000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # as `python -m pipeline` runs

import numpy as np
import polars as pl

from bench.common import machine
from features import encode
from features.encode import Encoder, EncoderParams
from features.schema import Schema

# column -> what it holds (the encoder picks the lookup from its vocabulary)
CASES = {
    "str_100k": "strings, Zipf over 10^5 values",
    "str_400k": "strings, uniform over 4·10^5 values",
    "str_2m": "strings, uniform over 2·10^6 values",
    "int_small": "integers over a span of 10^3",
    "int_hashed": "integers, 10^5 values over a span of 10^9",
}


def write_data(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    hashed = (np.arange(100_000, dtype=np.int64) * 7_919 + 13) % 1_000_000_007
    columns = {
        "y": rng.integers(0, 2, rows).astype(np.int8),
        "str_100k": pl.Series(np.minimum(rng.zipf(1.2, rows), 100_000)).cast(pl.String),
        "str_400k": pl.Series(rng.integers(0, 400_000, rows)).cast(pl.String),
        "str_2m": pl.Series(rng.integers(0, 2_000_000, rows)).cast(pl.String),
        "int_small": rng.integers(0, 1_000, rows),
        "int_hashed": hashed[np.minimum(rng.zipf(1.2, rows), 100_000) - 1],
    }
    pl.DataFrame(columns).write_parquet(path, row_group_size=1 << 18)


def lookup_of(encoder: Encoder, column: str) -> str:
    """Which lookup the encoder uses for `column`."""
    frame, _ = encoder._lookup(pl.LazyFrame({column: []}, schema={column: encoder.vocabs[column]["value"].dtype}), pl.col(column), column)
    if frame.collect_schema().names() != [column]:
        return "join"
    return "enum" if encoder.vocabs[column]["value"].dtype == pl.String else "dense"


def encode_in_child(fitted: Path, data: Path, column: str, out: Path, join: bool) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of a fresh process that encodes `column` of `data` with the encoder saved in
    `fitted` and sinks it to `out` (a process of its own: polars' threads do not survive a fork)."""
    args = [sys.executable, "-m", "bench.lookup_bench", "--child", str(fitted), str(data), column, str(out), str(int(join))]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.execv(sys.executable, args)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"encoding {column} failed")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20


def child(fitted: Path, data: Path, column: str, out: Path, join: bool) -> None:
    if join:
        encode.ENUM_MAX_VALUES, encode.DENSE_MIN_SPAN, encode.DENSE_SPAN_PER_VALUE = 0, 0, 0
    encoder = Encoder.load(fitted)
    one = Encoder(Schema(label="y", kinds={column: "categorical"}), encoder.params)
    one.vocabs, one.stats, one.train_rows = {column: encoder.vocabs[column]}, {column: encoder.stats[column]}, encoder.train_rows
    one.transform(pl.scan_parquet(data).select("y", column)).sink_parquet(out, compression_level=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fitted, data, column, out, join = args.child
        child(Path(fitted), Path(data), column, Path(out), join == "1")
        return
    work = Path(tempfile.mkdtemp(prefix="lookup-bench-"))
    try:
        data = work / "data.parquet"
        write_data(data, args.rows)
        encoder = Encoder(Schema(label="y", kinds=dict.fromkeys(CASES, "categorical")), EncoderParams()).fit(pl.scan_parquet(data))
        encoder.save(work / "fitted")
        print(f"# Vocabulary lookups\n\nmachine: {machine()}\nrows: {args.rows:,}, medians of {args.repeats} alternating runs\n")
        print("| column | values | vocabulary | lookup | s | peak RSS GiB | join s | join peak RSS GiB | join / lookup time |")
        print("|---|---|---|---|---|---|---|---|---|")
        for column, what in CASES.items():
            chosen = lookup_of(encoder, column)
            runs = [
                (
                    encode_in_child(work / "fitted", data, column, work / "a.parquet", join=False),
                    encode_in_child(work / "fitted", data, column, work / "b.parquet", join=True),
                )
                for _ in range(args.repeats)
            ]  # alternating, medians of each
            wall, rss = (statistics.median(r[0][i] for r in runs) for i in (0, 1))
            join_wall, join_rss = (statistics.median(r[1][i] for r in runs) for i in (0, 1))
            same = pl.read_parquet(work / "a.parquet").equals(pl.read_parquet(work / "b.parquet"))
            if not same:
                raise SystemExit(f"{column}: the {chosen} lookup and the join disagree")
            size = encoder.vocabs[column].height
            print(
                f"| {column} | {what} | {size:,} | {chosen} | {wall:.2f} | {rss:.2f} | {join_wall:.2f} | {join_rss:.2f} | {join_wall / wall:.2f}× |"
            )
            sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
