from pathlib import Path

import pytest

from featuremap.errors import InputError
from pipeline import catalog
from pipeline.config import load_config


def test_defaults_and_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("rank:\n  score: permutation\nsplit:\n  seed: 5\n")
    cfg = load_config(cfg_file, {"rank": {"pair_budget": 3}, "out": str(tmp_path / "o")})
    assert cfg.rank.score == "permutation" and cfg.rank.pair_budget == 3 and cfg.split.seed == 5
    assert cfg.out == tmp_path / "o" and cfg.stages == ["ingest", "rank", "search", "train", "promote", "report"]
    # The search stage runs when a method is named: the default names encodings; [] skips it.
    from pipeline.runner import plan

    assert cfg.search.methods == ["encodings"] and plan(cfg) == ["ingest", "rank", "search", "train", "promote", "report"]
    assert plan(load_config(None, {"search": {"methods": []}})) == ["ingest", "rank", "train", "promote", "report"]
    # promote needs the registry: no tracking, no model registered or promote off, no promote stage
    for off in ({"tracking": {"enabled": False}}, {"tracking": {"register_model": False}}, {"promote": {"enabled": False}}):
        assert plan(load_config(None, off)) == ["ingest", "rank", "search", "train", "report"]
    # the wide model's C: a number is a grid of one
    assert load_config(None, {"train": {"baseline_params": {"wide": {"C": 2}}}}).train.baseline_params["wide"]["C"] == [2.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rank:\n  scor: expected\n", "rank.scor: unknown key"),
        ("rank:\n  pair_budget: lots\n", "rank.pair_budget: Input should be a valid integer"),
        ("split:\n  valid: 0.6\n  test: 0.5\n", "must be below 1"),
        ("- a\n- b\n", "must be a mapping"),
        ("rank: [unclosed\n", "not valid YAML"),
        ("train:\n  piecewise_bins: 16\n  numeric_as_value: false\n", "numeric_as_value: false feeds none"),
        ("train:\n  numeric_as_value: maybe\n", "train.numeric_as_value: true \\(values\\), false \\(bucket ids\\), both or auto"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, text, message):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_config(cfg_file, {})
    assert "\n" not in str(info.value)


def test_staging_commits_atomically_and_cleans_up_on_error(tmp_path):
    with catalog.staging(tmp_path, "rank") as work:
        (work / "a.txt").write_text("v1")
    assert (tmp_path / "rank" / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError), catalog.staging(tmp_path, "rank") as work:
        (work / "a.txt").write_text("half")
        raise RuntimeError("disk full")
    assert (tmp_path / "rank" / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank"]
    with catalog.staging(tmp_path, "rank") as work:
        (work / "b.txt").write_text("v2")
    assert [p.name for p in (tmp_path / "rank").iterdir()] == ["b.txt"]


def test_missing_feature_map(tmp_path):
    with pytest.raises(InputError, match="run the ingest stage first"):
        catalog.load_feature_map(Path(tmp_path))


def test_numeric_auto_feeds_values_beside_buckets_from_ten_thousand_train_rows():
    from featuremap import FeatureMap
    from pipeline.assemble import VALUES_MIN_ROWS, model_spec, resolved

    def decided(rows: int, setting: object = "auto") -> object:
        fm = FeatureMap(label="y", fields=(), splits={"train": {"rows": rows}})
        return model_spec(resolved(load_config(None, {"train": {"numeric_as_value": setting}}), fm)).embedding.numeric_as_value

    assert load_config(None, {}).train.numeric_as_value == "auto"
    assert decided(VALUES_MIN_ROWS) == "both" and decided(VALUES_MIN_ROWS - 1) is False
    assert decided(10**6, False) is False and decided(100, True) is True and decided(100, "both") == "both"
