"""Inputs for the Ray engine's ingest tests: parquet files in small row groups, several per input, with every kind of
field (strings with nulls, integer ids, floats with NaN, counts, a float in 4 % of rows, multi-valued), a side table and
a time column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def frame(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    x[rng.random(rows) < 0.05] = np.nan
    city = rng.choice(["a", "b", "c", "d", "e", "f", "g"], rows).astype(object)
    city[rng.random(rows) < 0.03] = None
    bid = np.where(rng.random(rows) < 0.04, rng.lognormal(1.0, 0.5, rows), np.nan)  # sampled by its own values
    tags = ["|".join(rng.choice(list("pqrstu"), rng.integers(0, 4), replace=False)) for _ in range(rows)]
    logit = 0.8 * np.nan_to_num(x) + (city == "a") - 1.0
    return pl.DataFrame(
        {
            "click": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8),
            "city": city.tolist(),
            "item": rng.integers(0, 400, rows),
            "x": x,
            "count": rng.poisson(3.0, rows),
            "bid": bid,
            "tags": tags,
            "t": rng.integers(0, 10_000, rows),
        }
    )


def write(root: Path) -> dict[str, tuple[list[Path], dict]]:
    """Write the inputs under `root`; the cases: name -> (data paths, config overrides)."""
    side = root / "items.csv"
    root.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"item": np.arange(0, 400, 2), "shelf": [f"s{i % 9}" for i in range(200)]}).write_csv(side)
    days = []
    for day, sizes in enumerate(((4_000, 3_000), (5_000,))):
        directory = root / f"dt=2026-12-0{day + 1}"
        directory.mkdir(parents=True, exist_ok=True)
        for index, rows in enumerate(sizes):
            frame(rows, 10 * day + index).write_parquet(directory / f"part-{index}.parquet", row_group_size=900)
        days.append(directory)
    given = root / "given"
    given.mkdir(exist_ok=True)
    frame(9_000, 7).write_parquet(given / "train.parquet", row_group_size=1_000)
    frame(2_000, 8).write_parquet(given / "test.parquet", row_group_size=700)
    common = {"schema": {"multi": ["tags"]}, "encode": {"min_count": 2, "quantile_sample_rows": 1000}, "engine": {"shards": 5}}
    join = {"data": {"joins": [{"path": str(side), "key": "item"}]}}
    return {
        "window": (days, common | join),
        "time": (days[:1], common | {"split": {"method": "time", "time_column": "t", "valid": 0.15, "test": 0.15}}),
        "given": ([given], common | {"split": {"valid": 0.2}}),
    }


def files(directory: Path) -> dict[str, bytes]:
    """Every file an ingest stage wrote, by relative path, but its timing record."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "stage.json"}
