"""Ingest in parts, as the Ray engine runs it, gives the local engine's files byte for byte.

The tasks run in this process here (a stand-in for `ray` that calls them in turn): the parts, the offsets, the merge
of counts and the writing of each split from its part files are the engine's own. `test_ray_engine.py` runs the same
inputs on a real 2-worker Ray cluster.
"""

from __future__ import annotations

import pytest

from pipeline import ray_engine
from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.stages.ingest import run_ingest
from tests.pipeline import ray_inputs


class _InProcess:
    """What `ray_engine` calls of `ray`, run in this process."""

    class _Remote:
        def __init__(self, function):
            self.function = function

        def remote(self, *args):
            return self.function(*args)

    put = staticmethod(lambda value: value)
    get = staticmethod(lambda values: list(values))
    remote = _Remote


def _ingest(tmp_path, name, paths, overrides, engine):
    out = tmp_path / f"{name}-{engine}"
    cfg = load_config(None, overrides | {"data": {**overrides.get("data", {}), "path": [str(p) for p in paths]}, "out": str(out)})
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"kind": engine})})
    workdir = out / "ingest"
    workdir.mkdir(parents=True)
    run_ingest(cfg, workdir, out)
    return workdir


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return ray_inputs.write(tmp_path_factory.mktemp("inputs"))


@pytest.mark.parametrize("case", ["window", "time", "given"])
def test_ingest_in_parts_writes_the_local_engines_files(tmp_path, monkeypatch, inputs, case):
    monkeypatch.setattr(ray_engine, "_ray", lambda engine: _InProcess())
    paths, overrides = inputs[case]
    local = ray_inputs.files(_ingest(tmp_path, case, paths, overrides, "local"))
    parts = ray_inputs.files(_ingest(tmp_path, case, paths, overrides, "ray"))
    assert {"train.parquet", "valid.parquet", "test.parquet", "encoder.json", "holdout/valid.parquet"} <= set(local)
    assert sorted(parts) == sorted(local)
    assert [n for n in local if parts[n] != local[n]] == []
    assert not any(".parts" in n for n in parts)
    if case == "window":
        assert b'"shelf"' in local["encoder.json"]  # the side table's column, joined in every part


def test_parts_cover_every_row_once_in_order(inputs):
    from features.ingest import IngestParams, load_raw
    from features.sources import SourceOptions

    days, _ = inputs["window"]
    raw = load_raw(days, IngestParams(SourceOptions(format="parquet")), 0, 0)
    parts = ray_engine.input_parts(raw, 5)
    assert len(parts) >= 5
    assert [p.first_row for p in parts] == [sum(q.rows for q in parts[:i]) for i in range(len(parts))]
    assert sum(p.rows for p in parts) == 12_000


def test_the_ray_engine_without_ray_says_so(tmp_path, monkeypatch, inputs):
    def missing(engine):
        raise ImportError("no ray")

    monkeypatch.setattr(ray_engine, "_connect", missing)
    paths, overrides = inputs["window"]
    with pytest.raises(UserError, match=r"engine\.kind ray needs the ray package"):
        _ingest(tmp_path, "noray", paths, overrides, "ray")


def test_text_input_is_ingested_here_with_a_note(tmp_path, monkeypatch, capsys, inputs):
    def unexpected(engine):
        raise AssertionError("text input must not reach Ray")

    monkeypatch.setattr(ray_engine, "_ray", unexpected)
    csv = tmp_path / "rows.csv"
    ray_inputs.frame(2_000, 3).write_csv(csv)
    workdir = _ingest(tmp_path, "csv", [csv], {}, "ray")
    assert (workdir / "train.parquet").is_file()
    assert "ingest: engine ray reads parquet files in parts; this input (csv) is ingested here" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("train_fault", "expected"),
    [
        (None, "(test split): label column 'click' is not binary"),
        # A fault the numeric scan finds in train comes first on either engine, before the test split's labels.
        ("infinity", "(train split): column 'x' has infinite values"),
        ("no values", "(train split): column 'bid' has no values"),
    ],
)
def test_bad_labels_in_a_part_fail_with_the_local_engines_message(tmp_path, monkeypatch, train_fault, expected):
    import polars as pl

    from featuremap.errors import InputError

    monkeypatch.setattr(ray_engine, "_ray", lambda engine: _InProcess())
    given = tmp_path / "given"
    given.mkdir()
    train = ray_inputs.frame(3_000, 1)
    if train_fault == "infinity":
        train = train.with_columns(pl.when(pl.int_range(pl.len()) == 2_100).then(float("inf")).otherwise(pl.col("x")).alias("x"))
    elif train_fault == "no values":
        train = train.with_columns(pl.lit(None, pl.Float64).alias("bid"))
    train.write_parquet(given / "train.parquet", row_group_size=500)
    test = ray_inputs.frame(1_000, 2).with_columns(pl.when(pl.int_range(pl.len()) == 700).then(5).otherwise(pl.col("click")).alias("click"))
    test.write_parquet(given / "test.parquet", row_group_size=300)
    overrides = {"engine": {"shards": 4}} | ({"schema": {"numeric": ["bid"]}} if train_fault == "no values" else {})
    messages = []
    for engine in ("local", "ray"):
        with pytest.raises(InputError) as caught:
            _ingest(tmp_path, engine, [given], overrides, engine)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and expected in messages[0]
