"""GBDT leaf indices as categorical fields (methods/leaves.py): each tree's leaf per row, carried into the package and
predict, and kept out of the GBDT baselines' inputs."""

import json

import numpy as np
import polars as pl
import pytest

from features import synthetic
from methods.leaves import GBDTLeaves, LeavesSettings
from pipeline.cli import main


def _search_run(tmp_path, rows=6000):
    from methods.base import SearchRun
    from pipeline import catalog
    from pipeline.assemble import build, model_spec, resolved
    from pipeline.config import PipelineConfig
    from pipeline.upstream import load_split

    out = tmp_path / "out"
    assert main(["run", "--rows", str(rows), "--stages", "ingest", "--out", str(out), "--no-tracking"]) == 0
    fm = catalog.load_feature_map(out / "ingest")
    cfg = resolved(PipelineConfig(), fm)  # 4,800 train rows: numeric fields as bucket ids
    train, valid = (load_split(out / "ingest", s, fm, False) for s in ("train", "valid"))
    spec = model_spec(cfg)
    return SearchRun(fm, train, valid, cfg.train, spec, build(spec, fm), lambda n, by="gain": [])


def test_each_derived_field_is_one_trees_leaf_and_the_state_round_trips(tmp_path):
    run = _search_run(tmp_path)
    method = GBDTLeaves()
    found = method.search(run, LeavesSettings(trees=12, num_leaves=7))
    state = found.state
    assert 1 <= found.summary["trees"] <= 12 and len(state["leaves"]) == found.summary["trees"]
    ranked = found.summary["ranking"]  # the leaf fields ranked like any feature
    assert sorted(r["feature"] for r in ranked) == method.derived_fields(state) and ranked[0]["score"] >= ranked[-1]["score"]
    derived = method.derive(state, run.valid.columns, None)
    names = [f.name for f in method.derived_map(state, run.feature_map).fields[len(run.feature_map.fields) :]]
    assert names == sorted(derived) == method.derived_fields(state)
    x = np.column_stack([np.asarray(run.valid.columns[c], dtype=np.float32) for c in state["columns"]])
    leaves = state["booster"].predict(x, pred_leaf=True)  # the library's own leaf of each row in each tree
    assert np.array_equal(np.column_stack([derived[n] for n in names]).astype(np.int64), leaves + 3)
    for spec in method.derived_map(state, run.feature_map).fields[len(run.feature_map.fields) :]:
        assert spec.kind == "categorical" and derived[spec.name].min() >= 3 and derived[spec.name].max() < spec.vocab_size <= 3 + 7
    assert len({derived[n].tobytes() for n in names}) > 1  # the trees split rows differently
    method.save(state, tmp_path)
    again = method.derive(method.load(tmp_path), run.valid.columns, None)
    assert all(np.array_equal(derived[n], again[n]) for n in names)
    assert method.load(tmp_path / "out") is None  # no state there
    run.valid.columns.pop(state["columns"][0])
    with pytest.raises(ValueError, match="not in the data"):
        method.derive(state, run.valid.columns, None)


def test_leaves_train_an_lr_travel_in_the_package_and_stay_out_of_the_baselines(tmp_path):
    # GBDT + LR, the paper's design: the leaf fields feed the LR; LightGBM's baseline takes the ingest's and the encodings'
    # fields only; predict on the raw test holdout scores the chosen candidate as the run did (deep or blend).
    config = tmp_path / "c.yaml"
    config.write_text(
        "train: {model: lr, max_epochs: 2, baselines: [lightgbm]}\nsearch: {methods: [encodings, leaves], leaves: {trees: 8}}\n"
    )
    out = tmp_path / "out"
    args = ["run", "--rows", "8000", "--config", str(config), "--stages", "ingest,rank,search,train", "--out", str(out)]
    assert main([*args, "--no-tracking"]) == 0
    summary = json.loads((out / "search" / "leaves.json").read_text())
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    assert metrics["leaves"] is True and 1 <= summary["trees"] <= 8
    package = out / "train" / "package"
    fields = json.loads((package / "model.json").read_text())["fields"]
    assert sum(n.startswith("leaf__t") for n in fields) == summary["trees"]
    import lightgbm as lgb

    inputs = lgb.Booster(model_file=str(package / "gbdt" / "lightgbm.txt")).feature_name()
    assert not any(n.startswith("leaf__t") for n in inputs) and any(n.startswith("te__") for n in inputs)
    for kind in ("deep", "lightgbm"):  # each kind of candidate scores raw rows as the run scored them
        spec_path = package / "model.json"
        spec = json.loads(spec_path.read_text())
        spec["chosen"] = {"kind": "deep"} if kind == "deep" else {"kind": "gbdt", "gbdt": "lightgbm"}
        spec_path.write_text(json.dumps(spec))
        target = tmp_path / f"{kind}.parquet"
        assert main(["predict", "--model", str(out), "--data", str(out / "ingest" / "holdout" / "test.parquet"), "--out", str(target)]) == 0
        from sklearn.metrics import roc_auc_score

        scored = pl.read_parquet(target)
        expected = metrics["candidates"]["lr" if kind == "deep" else "lightgbm"]["test_auc"]
        assert roc_auc_score(scored[synthetic.LABEL].to_numpy(), scored["probability"].to_numpy()) == pytest.approx(expected, abs=1e-6)


def test_an_lr_over_the_leaves_learns_an_interaction_an_lr_alone_cannot():
    # The paper's claim in miniature: the trees find the combination (a pure XOR of two fields), the linear model
    # weighs it. LR on the fields alone stays at chance (tests/models/test_models.py).
    import torch

    from methods.base import ModelSpec, SearchRun
    from models.data import InMemoryData
    from models.embedding import EmbeddingConfig
    from models.registry import build_model
    from models.trainer import TrainConfig, fit
    from tests.models.test_models import FM_XOR, _split

    train, valid = _split()
    spec = ModelSpec("lr", {}, EmbeddingConfig(dim=4), 0)
    method = GBDTLeaves()
    state = method.search(
        SearchRun(FM_XOR, train, valid, TrainConfig(), spec, None, lambda n, by="gain": []), LeavesSettings(trees=5)
    ).state
    derived_map = method.derived_map(state, FM_XOR)
    train, valid = (
        InMemoryData({**d.columns, **method.derive(state, d.columns, None)}, d.label, derived_map, False) for d in (train, valid)
    )
    torch.manual_seed(0)
    model = build_model("lr", derived_map, EmbeddingConfig(dim=4, init_std=0.1))
    result = fit(model, train, valid, TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=8, patience=2))
    assert result.best_valid_auc > 0.7
