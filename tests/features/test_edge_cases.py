"""Regression tests for input edge cases found in review."""

import math

import numpy as np
import polars as pl
import pytest

from featuremap import MISSING_ID
from featuremap.errors import InputError
from features.encode import Encoder, EncoderParams
from features.ingest import IngestParams, RawInput, ingest, load_raw
from features.ranking import RankParams, rank_features
from features.schema import Schema, SchemaOptions, infer_schema
from features.sources import RawSource, SourceOptions, open_source
from features.split import SplitParams, time_split


def test_nan_is_missing_not_a_value():
    values = [float(i) for i in range(200)] + [float("nan")]
    frame = pl.LazyFrame({"y": [i % 2 for i in range(201)], "x": values})
    enc = Encoder(Schema(label="y", kinds={"x": "numeric"}), EncoderParams(numeric_bucketing="quantile")).fit(frame)
    assert all(math.isfinite(v) for v in enc.stats["x"].values()) and all(math.isfinite(e) for e in enc.edges["x"])
    out = enc.transform(frame).collect()
    assert out["x"][-1] == MISSING_ID and out["x__num"][-1] == 0.0 and out["x__num"].is_nan().sum() == 0
    assert out["x"].n_unique() > 10


def test_missing_thresholded_label_is_an_error():
    frame = pl.LazyFrame({"r": [4.0, None, 2.0, 5.0], "c": [1, 2, 1, 2]})
    with pytest.raises(InputError, match="missing or non-numeric"):
        Encoder(Schema(label="r", kinds={"c": "categorical"}, label_threshold=4), EncoderParams()).fit(frame)


def _split_dir(tmp_path, test_rows: str, test_header: str = "label,a"):
    (tmp_path / "train.csv").write_text("label,a\n" + "1,x\n0,y\n" * 20)
    (tmp_path / "test.csv").write_text(f"{test_header}\n{test_rows}")
    params = IngestParams(source=SourceOptions(format=""), split=SplitParams(valid=0.0, test=0.1))
    return ingest(load_raw(tmp_path, params, 0, 0), params)


def test_labels_of_every_split_are_checked(tmp_path):
    with pytest.raises(InputError, match=r"\(test split\).*not binary"):
        _split_dir(tmp_path, "0,x\n5,y\n")


def test_split_files_must_share_columns(tmp_path):
    with pytest.raises(InputError, match="test split lacks column"):
        _split_dir(tmp_path, "1\n0\n", test_header="label")


def test_time_split_keeps_every_row():
    frame = pl.LazyFrame({"t": [*range(1, 11), None]})
    parts = {
        k: v.collect()["t"].to_list()
        for k, v in time_split(frame, SplitParams(method="time", time_column="t", valid=0.1, test=0.0)).items()
    }
    assert sorted(parts) == ["train", "valid"]
    assert sum(len(v) for v in parts.values()) == 11 and None in parts["train"] and 10 in parts["valid"]
    parts = time_split(frame, SplitParams(method="time", time_column="t", valid=0.0, test=0.2))
    assert sum(v.collect().height for v in parts.values()) == 11


def test_id_names_need_a_real_id_suffix():
    n = 100
    frame = pl.LazyFrame({"y": [0, 1] * 50, "paid": range(n), "valid": range(n), "userId": range(n), "shop_id": range(n), "ID": range(n)})
    kinds = infer_schema(RawSource(frame, None), SchemaOptions(label="y"), "t").kinds
    assert kinds == {"paid": "numeric", "valid": "numeric", "userId": "categorical", "shop_id": "categorical", "ID": "categorical"}


def test_a_decimal_column_is_numeric_unless_it_holds_integers():
    from decimal import Decimal

    prices = [Decimal(f"{i % 97}.{i % 10}5") for i in range(200)]
    ids = [Decimal(i % 150) for i in range(200)]  # Decimal(38, 0), a database's integer: the integers' rules
    frame = pl.LazyFrame(
        {"y": [0, 1] * 100, "price": prices, "user_id": ids}, schema_overrides={"price": pl.Decimal(10, 2), "user_id": pl.Decimal(38, 0)}
    )
    assert infer_schema(RawSource(frame, None), SchemaOptions(label="y"), "t").kinds == {"price": "numeric", "user_id": "categorical"}


def test_column_names_that_are_not_file_names(tmp_path):
    frame = pl.LazyFrame({"y": [0, 1, 0, 1], "site/page": ["a", "b", "a", "c"]})
    enc = Encoder(Schema(label="y", kinds={"site/page": "categorical"}), EncoderParams()).fit(frame)
    enc.save(tmp_path)
    assert Encoder.load(tmp_path).transform(frame).collect().equals(enc.transform(frame).collect())


def test_csv_with_a_quoted_newline_is_valid(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('label,text,n\n1,"hello\nworld",3\n0,plain,4\n')
    assert open_source([path], SourceOptions(format="csv")).frame.collect().height == 2


def test_libsvm_with_runs_of_whitespace(tmp_path):
    path = tmp_path / "d.libsvm"
    path.write_text("1 1:1  5:1\n0\t2:1 6:1 \n")
    frame = open_source([path], SourceOptions(format="libsvm")).frame.collect()
    assert frame["f0"].to_list() == [1, 2] and frame["f1"].to_list() == [5, 6]


def test_directory_of_pq_shards(tmp_path):
    for i in range(2):
        pl.DataFrame({"label": [0, 1], "a": [i, i]}).write_parquet(tmp_path / f"part-{i}.pq")
    assert open_source([tmp_path], SourceOptions(format="parquet")).frame.collect().height == 4


def test_cardinality_counts_real_values_only():
    from featuremap import FeatureMap, FieldSpec

    codes = np.array([2, 3, 4, 5, 3, 1] * 100)  # missing, three values, OOV
    y = np.array([0, 1] * 300, dtype=np.int8)
    fm = FeatureMap(label="y", fields=(FieldSpec(name="f", kind="categorical", column="f", vocab_size=6),), splits={"train": {"rows": 600}})
    result = rank_features(iter([({"f": codes}, y)]), fm, RankParams(pair_budget=0))
    assert result.ranking["cardinality"][0] == 3


def test_raw_input_is_plain_data():
    raw = RawInput({"all": RawSource(pl.LazyFrame({"label": [0, 1] * 5, "a": list("abcdeabcde")}), "label")}, "mem", "csv")
    result = ingest(raw, IngestParams(source=SourceOptions(format="csv"), split=SplitParams(valid=0.0, test=0.0)))
    assert set(result.splits) == {"train"}
