"""Adding a method is a module and one registry line: a toy method goes through search, train, package, predict and report."""

import json

import polars as pl

from methods import METHODS
from pipeline.cli import main
from tests.methods_toy import Toy


def test_a_toy_method_runs_through_every_stage_and_predict(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "toy", Toy())  # the one registry line
    config = tmp_path / "c.yaml"
    config.write_text("data: {synthetic_rows: 8000}\ntrain: {max_epochs: 1, backend: torch}\n")
    out = tmp_path / "out"
    args = ["run", "--config", str(config), "--search", "toy", "--stages", "ingest,search,train,report", "--out", str(out)]
    assert main([*args, "--no-tracking"]) == 0
    summary = json.loads((out / "search" / "toy.json").read_text())
    assert summary["scale"] == 0.5 and (out / "search" / "toy.state.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["toy_scaled"] is True and metrics["search"]["toy"]["scale"] == 0.5
    spec = json.loads((out / "train" / "package" / "model.json").read_text())
    assert spec["methods"] == {"toy": {"scale": 0.5}}
    assert "Toy scaled the logits by 0.5" in (out / "report" / "report.html").read_text()
    raw = tmp_path / "raw.parquet"
    from features import synthetic

    synthetic.generate(500, 11).write_parquet(raw)
    target = tmp_path / "p.parquet"
    assert main(["predict", "--model", str(out), "--data", str(raw), "--out", str(target)]) == 0
    assert pl.read_parquet(target).height == 500
    # Without the method's restore, the packaged weights (its buffer) do not load: predict really went through it.
    monkeypatch.setattr(Toy, "restore", lambda self, model, entry, spec, feature_map: model)
    assert main(["predict", "--model", str(out), "--data", str(raw), "--out", str(tmp_path / "q.parquet")]) != 0


def test_a_package_naming_an_unknown_method_is_a_one_line_error():
    import pytest

    from featuremap.errors import InputError
    from methods.base import ModelSpec
    from models.embedding import EmbeddingConfig
    from pipeline.assemble import assemble
    from tests.models.test_models import FM_XOR

    with pytest.raises(InputError, match="search method\\(s\\) nosuchmethod that this version does not have"):
        assemble(FM_XOR, ModelSpec("fm", {}, EmbeddingConfig(dim=4), 0), packaged={"nosuchmethod": {}})


def test_optinter_reads_a_search_output_written_before_it_kept_its_own_state(tmp_path):
    import numpy as np

    from methods.optinter import KEYS, SUMMARY, OptInterMethod

    np.savez(tmp_path / KEYS, np.array([1, 2]), np.array([3]))
    summary = {"pairs": [{"a": "x", "b": "y", "mode": "memorise"}, {"a": "x", "b": "z", "mode": "naive"}]}
    (tmp_path / SUMMARY).write_text(json.dumps(summary))
    state = OptInterMethod().load(tmp_path)
    assert state["pairs"] == [("x", "y"), ("x", "z")] and state["modes"] == ["memorise", "naive"] and len(state["keys"]) == 2


def test_packages_written_before_the_methods_section_map_to_method_entries():
    from pipeline.package import _packaged_methods

    old = {"model": "deepfm", "params": {}, "value_gates": {"init": 0.5}, "dimension_mask": {"freq_blocks": 4}}
    assert _packaged_methods(old) == {"optfs": {"init": 0.5}, "dnis": {"freq_blocks": 4}}
    interactions = {"model": "optinter", "params": {"pairs": [["a", "b"]], "modes": ["memorise"]}}
    assert _packaged_methods(interactions) == {"optinter": interactions["params"]}
    assert _packaged_methods({"model": "fm", "params": {}, "methods": {}}) == {}
