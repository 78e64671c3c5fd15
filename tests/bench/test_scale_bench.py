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


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("scale")
    data, out = work / "raw", work / "out"
    subprocess.run([sys.executable, "-m", "pipeline", "generate", "--rows", "60000", "--out", str(data)], cwd=ROOT, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale_bench", "--data", str(data), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out, done.stdout


def test_rank_anchor_accumulates_batches_to_the_whole_splits_mi(bench_run, monkeypatch):
    out, _ = bench_run
    monkeypatch.setattr(scale_bench, "BATCH_ROWS", 7_001)  # several batches, the last one short
    mi = scale_bench.anchor_rank(out / "ingest")
    train = pl.read_parquet(out / "ingest" / "train.parquet")
    assert len(mi) == 18
    for column, value in mi.items():
        codes = train[column].to_numpy().astype(np.int64) * 2 + train["label"].to_numpy()
        assert value == pytest.approx(
            mutual_information(np.bincount(codes, minlength=2 * (codes.max() // 2 + 1)).reshape(-1, 2)), rel=1e-12, abs=1e-15
        )


def test_each_stage_is_printed_beside_its_same_sitting_anchor(bench_run):
    _, stdout = bench_run
    rows = {
        line.split("|")[1].strip().split(" ")[0]: line.split("|")
        for line in stdout.splitlines()
        if line.startswith("| ingest") or line.startswith("| rank")
    }
    assert set(rows) == {"ingest", "rank"}
    for cells in rows.values():
        wall, anchor_wall, ratio = float(cells[2]), float(cells[7]), float(cells[9].strip().rstrip("x"))
        # the walls are printed to 0.1 s, the ratio from the unrounded ones
        assert anchor_wall > 0 and (wall - 0.05) / (anchor_wall + 0.05) - 0.01 <= ratio <= (wall + 0.05) / (anchor_wall - 0.05) + 0.01
    assert "polars streaming copy" in rows["ingest"][6] and "bincount MI" in rows["rank"][6]
    assert "anchor rank: top 5 by plain MI:" in stdout
