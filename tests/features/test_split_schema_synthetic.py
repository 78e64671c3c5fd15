import polars as pl
import pytest

from featuremap.errors import InputError
from features import synthetic
from features.schema import SchemaOptions, infer_schema
from features.sources import RawSource
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
