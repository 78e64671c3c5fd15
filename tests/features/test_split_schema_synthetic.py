from pathlib import Path

import numpy as np
import polars as pl
import pytest

from featuremap.errors import InputError
from features import synthetic
from features.schema import SchemaOptions, infer_schema
from features.sources import RawSource, SourceOptions
from features.split import SplitParams, complete_splits, split_frame


def test_random_split_is_seeded_disjoint_and_complete():
    frame = pl.LazyFrame({"i": range(20_000)})
    parts = {k: v.collect()["i"] for k, v in split_frame(frame, SplitParams(valid=0.1, test=0.2, seed=1)).items()}
    again = {k: v.collect()["i"] for k, v in split_frame(frame, SplitParams(valid=0.1, test=0.2, seed=1)).items()}
    other = split_frame(frame, SplitParams(valid=0.1, test=0.2, seed=2))["test"].collect()["i"]
    assert all(parts[k].equals(again[k]) for k in parts)
    assert not parts["test"].equals(other)
    assert sum(len(p) for p in parts.values()) == 20_000
    assert len(set().union(*[set(p) for p in parts.values()])) == 20_000
    assert abs(len(parts["test"]) / 20_000 - 0.2) < 0.02 and abs(len(parts["valid"]) / 20_000 - 0.1) < 0.02


def test_time_split_orders_by_time():
    frame = pl.LazyFrame({"t": list(range(1000))[::-1]})
    parts = {k: v.collect()["t"] for k, v in split_frame(frame, SplitParams(method="time", time_column="t")).items()}
    assert parts["train"].max() < parts["valid"].min() <= parts["valid"].max() < parts["test"].min()
    with pytest.raises(InputError, match="time_column"):
        split_frame(frame, SplitParams(method="time"))
    # a float timestamp's NaN is a missing time, as null is: train, and no part of the cuts (NaN sorts above all)
    times = [float(t) for t in range(1000)] + [float("nan")] * 50 + [None] * 50
    parts = {k: v.collect()["t"] for k, v in split_frame(pl.LazyFrame({"t": times}), SplitParams(method="time", time_column="t")).items()}
    assert parts["valid"].is_nan().sum() == parts["test"].is_nan().sum() == 0 and parts["test"].max() == 999.0
    assert parts["train"].is_nan().sum() == 50 and parts["train"].null_count() == 50 and parts["test"].min() == 899.0  # cut on times alone


def test_missing_valid_split_is_carved_from_train():
    given = {"train": pl.LazyFrame({"i": range(1000)}), "test": pl.LazyFrame({"i": [-1]})}
    parts = complete_splits(given, SplitParams(valid=0.2))
    assert set(parts) == {"train", "valid", "test"}
    assert parts["test"].collect()["i"].to_list() == [-1]
    assert parts["train"].collect().height + parts["valid"].collect().height == 1000


def test_schema_inference_rules():
    frame = pl.LazyFrame(
        {
            "click": [0, 1] * 50,
            "userId": list(range(100)),
            "price": [float(i) / 3 for i in range(100)],
            "age": [20 + i % 5 for i in range(100)],
            "views": list(range(100, 200)),
            "tags": ["a|b", "c"] * 50,
            "city": ["x", "y"] * 50,
        }
    )
    schema = infer_schema(RawSource(frame, None), SchemaOptions(drop=("views",)), "t")
    assert schema.label == "click"
    assert schema.kinds == {"userId": "categorical", "price": "numeric", "age": "categorical", "tags": "multi", "city": "categorical"}
    forced = infer_schema(RawSource(frame, None), SchemaOptions(label="click", numeric=("age",)), "t")
    assert forced.kinds["age"] == "numeric" and forced.kinds["views"] == "numeric"
    with pytest.raises(InputError, match="label column 'nope' not found"):
        infer_schema(RawSource(frame, None), SchemaOptions(label="nope"), "t")
    with pytest.raises(InputError, match="unknown column"):
        infer_schema(RawSource(frame, None), SchemaOptions(drop=("zzz",)), "t")


def test_synthetic_is_deterministic_and_shard_size_free(tmp_path):
    a = synthetic.generate(5000, seed=3)
    assert a.equals(synthetic.generate(5000, seed=3))
    assert not a.equals(synthetic.generate(5000, seed=4))
    synthetic.write_parquet_shards(tmp_path / "s1", 5000, seed=3, shard_rows=1000)
    shards = pl.read_parquet(tmp_path / "s1")
    assert shards.equals(a)
    assert a.height == 5000 and set(synthetic.KINDS) | {"label"} == set(a.columns)
    assert a["noise_zipf1m"].max() < 1_000_000 and a["inf_c10"].null_count() > 0


@pytest.mark.parametrize(
    "files, split",
    [
        (("data",), SplitParams(valid=0.1, test=0.2, seed=3)),
        (("data",), SplitParams(valid=0.0, test=0.2, seed=3)),
        (("data",), SplitParams(valid=0.00001, test=0.2, seed=3)),
        (("data",), SplitParams(method="time", time_column="t", valid=0.1, test=0.1)),
        (("train", "test"), SplitParams(valid=0.2, test=0.1, seed=3)),
        (("train",), SplitParams(valid=0.1, test=0.1, seed=3)),
        (("train", "valid", "test"), SplitParams()),
    ],
    ids=["random", "random, no valid", "random, valid empty", "time, missing times", "valid carved from train", "both carved", "all given"],
)
@pytest.mark.parametrize("sink", [None, "partitioned", "partitioned, relative scratch"])
def test_valid_and_test_staged_in_one_read_are_the_rows_split_directly(tmp_path, monkeypatch, files, split, sink):
    # With a scratch directory, ingest writes the rows carved out of an input for valid and test once and reads them
    # from there: the encoded splits and raw holdouts must be those of splitting the input directly, row for row.
    # With a sink (and no join) the carved rows are written as one holdout file per split, also for a split that
    # gets no rows (the partitioned sink writes no file for it); without, as one tagged file. A relative scratch
    # directory (`make run`'s) once sent the files to scratch/carved-all/scratch/carved-all/ and left the splits empty.
    from features.ingest import IngestParams, ingest, load_raw

    rng = np.random.default_rng(0)
    n = 3_000
    frame = pl.DataFrame(
        {
            "y": rng.integers(0, 2, n),
            "c": rng.choice(["a", "b", "c", "d"], n),
            "x": rng.normal(size=n),
            "t": pl.Series(rng.integers(0, 500, n)).scatter(rng.integers(0, n, 50), None),
        }
    )
    data = tmp_path / "in"
    data.mkdir()
    for i, name in enumerate(files):  # given split files take consecutive slices
        frame.slice(i * n // len(files), n // len(files)).write_csv(data / f"{name}.csv")
    params = IngestParams(source=SourceOptions(format="csv"), split=split)
    direct = ingest(load_raw(data if files != ("data",) else data / "data.csv", params, 0, 0), params)
    scratch = tmp_path / "scratch"
    if sink == "partitioned, relative scratch":
        monkeypatch.chdir(tmp_path)
        scratch = Path("scratch")
    write = (lambda frame, target: frame.sink_parquet(target, row_group_size=500)) if sink else None
    staged = ingest(load_raw(data if files != ("data",) else data / "data.csv", params, 0, 0), params, scratch, write)
    assert set(staged.splits) == set(direct.splits) and set(staged.holdout) == set(direct.holdout)
    for ours, theirs in ((staged.splits, direct.splits), (staged.holdout, direct.holdout)):
        for name in theirs:
            assert ours[name].collect().equals(theirs[name].collect()), name
    source = "all" if files == ("data",) else "train"
    carved_names = [] if files == ("train", "valid", "test") else [n for n in ("valid", "test") if n not in files and getattr(split, n) > 0]
    if sink:
        assert staged.holdout_files == {n: scratch / f"carved-{source}" / f"{n}.parquet" for n in carved_names}
        assert sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*.parquet")) == sorted(
            f"carved-{source}/{n}.parquet" for n in carved_names
        )
        for name, path in staged.holdout_files.items():
            assert pl.read_parquet(path).equals(direct.holdout[name].collect()), name
        assert not list(scratch.glob("carved-*.parquet"))
    else:
        assert staged.holdout_files == {}
        assert sorted(p.name for p in scratch.glob("carved-*.parquet")) == ([f"carved-{source}.parquet"] if carved_names else [])
    if split.valid == 0.00001:
        assert staged.splits["valid"].collect().height == 0 and staged.splits["test"].collect().height > 0


def test_a_numeric_positive_value_matches_the_number_in_any_file():
    # data.positive: ['5'] on a rating read as integers in train: a later file read as floats (5.0), or as text, matches
    # it too (it was compared as text: "5.0" is not "5", so every test label read 0); 2.5 matches no 2.
    train = pl.LazyFrame({"rating": [5, 3, 5, 1] * 10, "a": ["x", "y"] * 20})
    schema = infer_schema(RawSource(train, None, {}), SchemaOptions(label="rating", positive=("5",)), "t")
    for later in (pl.DataFrame({"rating": [5.0, 3.0, 4.5]}), pl.DataFrame({"rating": ["5", "3", "4.5"]})):
        assert later.select(schema.label_expr())["rating"].to_list() == [1, 0, 0]
    halves = infer_schema(RawSource(train, None, {}), SchemaOptions(label="rating", positive=("2.5",)), "t")
    assert pl.DataFrame({"rating": [2, 3]}).select(halves.label_expr())["rating"].to_list() == [0, 0]
