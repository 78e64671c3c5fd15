"""The train stage's LightGBM baseline reads at most its row cap of the train split, on the same splits as the model."""

import itertools

from pipeline import catalog
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.stages.baselines import fit_baselines


def test_the_baseline_reads_a_bounded_sample_of_train_and_scores_valid_and_test(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--rows", "40000", "--stages", "ingest", "--out", str(out), "--no-tracking"]) == 0
    cfg = load_config(None, {"out": str(out), "train": {"baseline_max_rows": 3000}})
    ingest_dir = catalog.stage_path(out, "ingest")
    found, children, fitted = fit_baselines(cfg, ingest_dir, catalog.load_feature_map(ingest_dir))
    lightgbm = found["lightgbm"]
    assert lightgbm["train_rows"] == 3000 and lightgbm["valid_auc"] > 0.6 and lightgbm["test_auc"] > 0.6
    assert children[0]["name"] == "baseline lightgbm" and children[0]["metrics"]["train_rows"] == lightgbm["train_rows"]
    # valid and test are scored whole (the blend needs every row), early stopping used at most the cap
    assert lightgbm["early_stopping_rows"] <= 3000 and lightgbm["valid_rows"] == len(fitted["lightgbm"].valid[1]) > 3000
    assert lightgbm["params"]["cat_smooth"] == 100  # the default's one change from LightGBM's defaults
    # train.baseline_params reach the library: a 2-leaf tree per round fits a different, weaker model
    stumps = load_config(None, {"out": str(out), "train": {"baseline_max_rows": 3000, "baseline_params": {"lightgbm": {"num_leaves": 2}}}})
    weak = fit_baselines(stumps, ingest_dir, catalog.load_feature_map(ingest_dir))[0]["lightgbm"]
    assert weak["params"]["num_leaves"] == 2 and "cat_smooth" not in weak["params"] and weak["valid_auc"] != lightgbm["valid_auc"]
    off = load_config(None, {"out": str(out), "train": {"baselines": []}})
    assert fit_baselines(off, ingest_dir, catalog.load_feature_map(ingest_dir)) == ({}, [], {})


def test_evenly_spaced_rows_are_exactly_the_cap(tmp_path):
    import polars as pl

    from pipeline.stages.baselines import _rows

    path = tmp_path / "s.parquet"
    pl.DataFrame({"a": list(range(10_001)), "y": [0, 1] * 5000 + [0]}).write_parquet(path)
    kept = _rows(path, ["a"], "y", 5000)[0].collect()["a"].to_list()
    assert len(kept) == 5000 and kept[0] <= 2 and kept[-1] == 10_000 and all(1 <= b - a <= 3 for a, b in itertools.pairwise(kept))
    assert _rows(path, ["a"], "y", 20_000)[0].collect().height == 10_001
