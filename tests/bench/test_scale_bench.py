"""The out-of-core bench's anchors: the rank anchor's bincounts over record batches give the in-memory plug-in MI, and
the whole bench prints each stage beside its anchor."""

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from bench import scale_bench
from features.information import mutual_information
from tests.conftest import ROOT


def test_the_bench_prints_each_stage_beside_its_anchor_and_the_rank_anchor_counts_every_batch(tmp_path, monkeypatch):
    # One test, so that parallel workers do not each run the bench (about 5 s).
    data, out = tmp_path / "raw", tmp_path / "out"
    subprocess.run([sys.executable, "-m", "pipeline", "generate", "--rows", "60000", "--out", str(data)], cwd=ROOT, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale_bench", "--data", str(data), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = {
        line.split("|")[1].strip().split(" ")[0]: line.split("|")
        for line in done.stdout.splitlines()
        if line.startswith(("| ingest", "| rank"))
    }
    assert set(rows) == {"ingest", "rank"}
    for cells in rows.values():
        wall, anchor_wall, ratio = float(cells[2]), float(cells[7]), float(cells[9].strip().rstrip("x"))
        # the walls are printed to 0.1 s, the ratio from the unrounded ones
        assert anchor_wall > 0 and (wall - 0.05) / (anchor_wall + 0.05) - 0.01 <= ratio <= (wall + 0.05) / (anchor_wall - 0.05) + 0.01
    assert "polars streaming copy" in rows["ingest"][6] and "bincount MI" in rows["rank"][6]
    assert "anchor rank: top 5 by plain MI:" in done.stdout
    assert not (out / "anchor_copy.parquet").exists()

    # The rank anchor's bincounts, accumulated over several batches (the last one short), give the whole split's MI.
    monkeypatch.setattr(scale_bench, "BATCH_ROWS", 7_001)
    mi = scale_bench.anchor_rank(out / "ingest")
    train = pl.read_parquet(out / "ingest" / "train.parquet")
    assert len(mi) == 18
    for column, value in mi.items():
        codes = train[column].to_numpy().astype(np.int64) * 2 + train["label"].to_numpy()
        expected = mutual_information(np.bincount(codes, minlength=2 * (codes.max() // 2 + 1)).reshape(-1, 2))
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-15)
