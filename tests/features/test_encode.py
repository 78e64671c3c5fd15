import numpy as np
import polars as pl
import pytest

from featuremap import FIRST_VALUE_ID, MISSING_ID, OOV_ID
from featuremap.errors import InputError
from features import encode
from features.encode import Encoder, EncoderParams, NumericScan
from features.schema import Schema


def _schema(**kinds):
    return Schema(label="y", kinds=kinds)


def test_vocabulary_by_frequency_fit_on_train_only():
    train = pl.LazyFrame({"y": [0, 1, 0, 1, 0], "c": ["a", "b", "b", None, "b"]})
    enc = Encoder(_schema(c="categorical"), EncoderParams(min_count=1)).fit(train)
    test = pl.LazyFrame({"y": [1, 0, 0], "c": ["b", "a", "zzz"]})
    out = enc.transform(test).collect()
    assert out["c"].to_list() == [FIRST_VALUE_ID, FIRST_VALUE_ID + 1, OOV_ID]  # b most frequent, unseen -> OOV
    assert enc.transform(train).collect()["c"].to_list()[3] == MISSING_ID
    assert out["y"].dtype == pl.Int8 and out["c"].dtype == pl.Int32
    spec = enc.field_specs()[0]
    assert spec.vocab_size == FIRST_VALUE_ID + 2


@pytest.mark.parametrize("lookup", ["enum", "dense", "join"])
def test_every_vocabulary_lookup_gives_the_ids_of_a_join(monkeypatch, tmp_path, lookup):
    # Strings up to ENUM_MAX_VALUES are an Enum cast, integers over a small span a table, the rest a join: each must
    # give what a plain join gives, unseen and mistyped values OOV, missing ones MISSING, also after save and load.
    rng = np.random.default_rng(0)
    ints = rng.zipf(1.3, 5_000) * (1 if lookup == "dense" else 1_000_003)
    train = pl.LazyFrame({"y": rng.integers(0, 2, 5_000), "s": [f"v{i % 300}" for i in ints], "i": ints})
    if lookup == "join":
        monkeypatch.setattr(encode, "ENUM_MAX_VALUES", 0)
    enc = Encoder(_schema(s="categorical", i="categorical"), EncoderParams(min_count=2)).fit(train)
    new = pl.LazyFrame({"y": [0] * 5, "s": ["v1", "unseen", None, "v2", "v3"], "i": [ints[0], -7, None, 10**12, ints[1]]})
    frame = pl.concat([train.collect(), new.collect()]).lazy()
    enc.save(tmp_path)
    for fitted in (enc, Encoder.load(tmp_path)):
        got = fitted.transform(frame).collect()
        for name in ("s", "i"):
            vocab = fitted.vocabs[name].select(pl.col("value").alias(name), "id")
            want = frame.collect().join(vocab, on=name, how="left", maintain_order="left")["id"].fill_null(OOV_ID)
            want = pl.select(pl.when(frame.collect()[name].is_null()).then(MISSING_ID).otherwise(want)).to_series()
            assert got[name].to_list() == want.to_list()
        assert got["s"].tail(5).to_list()[1:3] == [OOV_ID, MISSING_ID] and got["i"].tail(5).to_list()[1:4] == [OOV_ID, MISSING_ID, OOV_ID]
    dense = enc.vocabs["i"]["value"].max() - enc.vocabs["i"]["value"].min() < encode.DENSE_MIN_SPAN
    assert dense == (lookup == "dense")


def test_min_count_sends_rare_values_to_oov():
    train = pl.LazyFrame({"y": [0, 1] * 3, "c": ["a", "a", "a", "b", "b", "c"]})
    enc = Encoder(_schema(c="categorical"), EncoderParams(min_count=2)).fit(train)
    assert enc.transform(train).collect()["c"].to_list() == [3, 3, 3, 4, 4, OOV_ID]


def test_log_bucketing_keeps_small_and_large_values_apart():
    train = pl.LazyFrame({"y": [0, 1, 0, 1, 0, 1], "n": [1, 3, 2, 100, None, -1]})
    enc = Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing="log")).fit(train)
    codes = enc.transform(train).collect()["n"].to_list()
    assert codes[0] != codes[1]  # the usual Criteo recipe maps 1 and 3 to the same token
    assert codes[4] == MISSING_ID and len(set(codes)) == 6


def test_quantile_bins_and_standardised_values():
    values = list(range(1000))
    train = pl.LazyFrame({"y": [i % 2 for i in values], "n": [float(v) for v in values]})
    enc = Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing="quantile", numeric_bins=4)).fit(train)
    out = enc.transform(train).collect()
    counts = out["n"].value_counts().sort("n")["count"].to_list()
    assert len(counts) == 4 and max(counts) - min(counts) <= 2
    assert abs(out["n__num"].mean()) < 1e-6 and abs(out["n__num"].std() - 1) < 1e-3


@pytest.mark.parametrize("dtype", [pl.Int32, pl.Int64, pl.UInt64, pl.Float64])
def test_integer_quantile_buckets_from_a_table_count_the_edges_below(monkeypatch, tmp_path, dtype):
    # An integer field over a small span takes its bucket from a table; it must be the comparisons' count for values
    # inside the train span, on edges, below and above it, and missing; wide spans and other types keep comparing.
    rng = np.random.default_rng(1)
    values = rng.zipf(1.5, 20_000).clip(max=5_000) + 10
    train = pl.LazyFrame({"y": rng.integers(0, 2, values.size), "n": values}, schema={"y": pl.Int64, "n": dtype})
    enc = Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing="quantile", numeric_bins=8)).fit(train)
    edges = np.asarray(enc.edges["n"])
    probes = [0, 9, 10, *edges.astype(int).tolist(), *(edges.astype(int) + 1).tolist(), 5_010, 5_011, 10**9, None]
    frame = pl.LazyFrame({"y": [0] * len(probes), "n": probes}, schema={"y": pl.Int64, "n": dtype})
    enc.save(tmp_path)
    for fitted in (enc, Encoder.load(tmp_path)):
        got = fitted.transform(frame).collect()["n"].to_list()
        want = [MISSING_ID if v is None else FIRST_VALUE_ID + int((edges < v).sum()) for v in probes]
        assert got == want
    compared = []
    monkeypatch.setattr(encode.pl, "sum_horizontal", lambda exprs: compared.append(1) or exprs[0])
    enc.transform(frame)
    assert bool(compared) == (dtype in (pl.UInt64, pl.Float64))  # the table for signed integers over a small span
    monkeypatch.setattr(encode, "DENSE_BUCKET_SPAN", 100)
    compared.clear()
    enc.transform(frame)
    assert compared  # a span wider than the table's limit compares


def test_integer_rows_scored_on_float_trained_edges_count_the_edges_below():
    # Trained on floats (min -3.7), scored on integers: the table spans the floor and ceiling of the train range.
    train = pl.LazyFrame({"y": [0, 1] * 50, "n": [*np.linspace(-3.7, -3.05, 40).tolist(), *[float(v) for v in range(60)]]})
    enc = Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing="quantile", numeric_bins=8)).fit(train)
    edges = np.asarray(enc.edges["n"])
    assert edges.min() < -3  # an edge inside the train range's fractional start
    probes = [-10, -4, -3, 0, 50, 59, 60, 1000]
    got = enc.transform(pl.LazyFrame({"y": [0] * len(probes), "n": probes})).collect()["n"].to_list()
    assert got == [FIRST_VALUE_ID + int((edges < v).sum()) for v in probes]


def test_multi_valued_field_lists_and_set_ids(tmp_path):
    train = pl.LazyFrame({"y": [1, 0, 1, 0], "g": ["a|b", "b", "b|a", None]})
    enc = Encoder(Schema(label="y", kinds={"g": "multi"}), EncoderParams()).fit(train)
    out = enc.transform(train).collect()
    b, a = FIRST_VALUE_ID, FIRST_VALUE_ID + 1
    assert out["g"].to_list() == [[a, b], [b], [b, a], [MISSING_ID]]
    sets = out["g__set"].to_list()
    assert sets[0] == sets[2] != sets[1] and sets[3] == MISSING_ID
    enc.save(tmp_path)
    again = Encoder.load(tmp_path).transform(train).collect()
    assert again.equals(out)


def test_labels_minus_one_one_and_threshold():
    frame = pl.LazyFrame({"y": [-1, 1, -1, 1], "c": [1, 2, 1, 2]})
    enc = Encoder(_schema(c="categorical"), EncoderParams()).fit(frame)
    assert enc.transform(frame).collect()["y"].to_list() == [0, 1, 0, 1]
    rated = pl.LazyFrame({"r": [4.5, 3.0, 4.0, 1.0], "c": [1, 2, 1, 2]})
    enc = Encoder(Schema(label="r", kinds={"c": "categorical"}, label_threshold=4), EncoderParams()).fit(rated)
    assert enc.transform(rated).collect()["r"].to_list() == [1, 0, 1, 0]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"y": [0, 1, 2], "c": [1, 2, 3]}, "not binary"),
        ({"y": [1, 1, 1], "c": [1, 2, 3]}, "single class"),
        ({"y": [0, 1, 0], "c": [None, None, None]}, "no values"),
    ],
)
def test_bad_labels_and_empty_columns(frame, message):
    with pytest.raises(InputError, match=message):
        Encoder(_schema(c="categorical"), EncoderParams()).fit(pl.LazyFrame(frame, schema_overrides={"c": pl.Int64}))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, float("inf"), 2.0, None], "has infinite values"),
        ([1.0, None, float("-inf"), 2.0], "has infinite values"),
        ([None, float("nan"), None, float("nan")], "has no values"),  # NaN is missing
    ],
)
@pytest.mark.parametrize("bucketing", ["quantile", "log"])
def test_a_numeric_field_with_an_infinity_or_no_values_is_an_input_error(values, message, bucketing):
    train = pl.LazyFrame({"y": [0, 1, 0, 1], "n": values}, schema={"y": pl.Int64, "n": pl.Float64})
    with pytest.raises(InputError, match=f"column 'n' {message}"):
        Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing=bucketing)).fit(train)


def test_names_that_make_long_or_odd_file_names_save_and_load(tmp_path):
    # 36 CJK characters quote to 324 bytes, past a file name's 255: the vocabulary's file keeps a prefix and a hash; a
    # name that fits keeps its quoted file name (as saved before).
    long, odd, fits = "广告位置名称" * 6, "site/id %", "c" * 200
    train = pl.LazyFrame({"y": [0, 1, 0, 1], long: ["a", "b", "a", "c"], odd: [5, 6, 5, 7], fits: [1, 1, 2, 2]})
    enc = Encoder(_schema(**{long: "categorical", odd: "categorical", fits: "categorical"})).fit(train)
    enc.save(tmp_path)
    names = sorted((p.name for p in (tmp_path / "vocab").iterdir()), key=len)
    assert names[0] == "site%2Fid%20%25.parquet" and len(names[1]) == 80 + 1 + 16 + len(".parquet") and names[2] == f"{fits}.parquet"
    assert Encoder.load(tmp_path).transform(train).collect().equals(enc.transform(train).collect())


def test_a_log_bucket_never_fails_to_cast():
    # Below Int64's least a value takes the least (its own bucket, counted like any); at scoring, +inf has no bucket
    # (out of vocabulary) and NaN is missing.
    train = pl.LazyFrame({"y": [0, 1, 0, 1, 0, 1], "n": [1.0, -1e19, 5.0, -1e300, 5.0, 1.0]})
    enc = Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing="log")).fit(train)
    ids = enc.transform(train).collect()["n"].to_list()
    assert ids[1] == ids[3] >= FIRST_VALUE_ID and len(set(ids)) == 3
    probes = pl.LazyFrame({"y": [0, 0, 0], "n": [float("inf"), float("nan"), -1e19]})
    assert enc.transform(probes).collect()["n"].to_list() == [OOV_ID, MISSING_ID, ids[1]]


@pytest.mark.parametrize("bins", [4, 127, 128, 300])
def test_float_quantile_buckets_count_the_edges_below_at_any_number_of_bins(bins):
    # The comparisons add up in one byte below 128 edges and in four from there: the count must not wrap.
    rng = np.random.default_rng(2)
    values = rng.normal(size=5_000)
    train = pl.LazyFrame({"y": rng.integers(0, 2, values.size), "n": values})
    enc = Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing="quantile", numeric_bins=bins)).fit(train)
    edges = np.asarray(enc.edges["n"])
    probes = [-9.0, *edges.tolist(), *(edges + 1e-9).tolist(), 9.0, None, float("nan")]
    got = enc.transform(pl.LazyFrame({"y": [0] * len(probes), "n": probes})).collect()["n"].to_list()
    assert len(edges) == bins - 1
    assert got == [MISSING_ID if v is None or v != v else FIRST_VALUE_ID + int((edges < v).sum()) for v in probes]


@pytest.mark.parametrize("bucketing", ["quantile", "log"])
def test_mean_and_sd_come_from_every_kth_train_row(bucketing):
    # Past quantile_sample_rows train rows the scaling is the sample's (every k-th row, k rounded up); the range,
    # coverage and vocabularies still count every row; missing values stay out of the mean.
    rng = np.random.default_rng(3)
    values = rng.lognormal(2.0, 1.0, 10_500)
    values[::7] = np.nan
    train = pl.LazyFrame({"y": rng.integers(0, 2, values.size), "n": values})
    enc = Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing=bucketing, quantile_sample_rows=1_000)).fit(train)
    kept = values[::11]  # k = ceil(10,500 / 1,000)
    kept = kept[~np.isnan(kept)]
    stats = enc.stats["n"]
    assert (stats["mean"], stats["std"]) == (float(kept.mean()), float(kept.std(ddof=1)))
    assert (stats["min"], stats["max"]) == (np.nanmin(values), np.nanmax(values))
    assert stats["coverage"] == pytest.approx(1 - 1_500 / 10_500)
    assert (bucketing == "quantile") == ("n" in enc.edges)
    scaled = enc.transform(train).collect()["n__num"].to_numpy()
    np.testing.assert_allclose(scaled[~np.isnan(values)], ((values - kept.mean()) / kept.std(ddof=1))[~np.isnan(values)], rtol=1e-6)
    assert (scaled[np.isnan(values)] == 0).all()


def test_a_sparse_numeric_field_is_sampled_by_its_own_values_the_same_whole_or_in_parts():
    # A field with values in few rows would get almost none of every k-th row: it takes every k-th of its own values
    # (k from its count of values), numbered across parts as in the whole split, so parts give the whole's sample.
    rng = np.random.default_rng(4)
    rows = 60_000
    sparse = np.full(rows, np.nan)
    at = rng.choice(rows, 4_500, replace=False)
    sparse[at] = rng.normal(5_000, 100, at.size)
    rare = np.full(rows, np.nan)
    rare[rng.choice(rows, 150, replace=False)] = rng.normal(-3, 2, 150)
    dense = rng.normal(size=rows)
    train = pl.DataFrame({"y": rng.integers(0, 2, rows), "s": sparse, "r": rare, "d": dense})
    enc = Encoder(_schema(s="numeric", r="numeric", d="numeric"), EncoderParams(numeric_bucketing="quantile", quantile_sample_rows=1_000))
    enc.fit(train.lazy())
    assert enc.sample_every == 60 and enc.own_samples == {"s": 5, "r": 1}
    values = sparse[~np.isnan(sparse)][::5]
    assert (enc.stats["s"]["mean"], enc.stats["s"]["std"]) == (float(values.mean()), float(values.std(ddof=1)))
    assert enc.stats["r"]["mean"] == float(np.nanmean(rare))  # all 150 values (every 60th row would hold 2 or 3)
    assert enc.stats["d"]["mean"] == float(dense[::60].mean())
    whole = enc.scan(train.lazy()).sample | enc.sample_own(train.lazy())
    scans, own, first_values = [], [], {"s": 0, "r": 0}
    for start, end in ((0, 7_777), (7_777, 31_001), (31_001, rows)):
        part = train.slice(start, end - start)
        scans.append(enc.scan(part.lazy(), start))
        own.append(enc.sample_own(part.lazy(), first_values))
        first_values = {n: c + scans[-1].present[n] for n, c in first_values.items()}
    scan = NumericScan.join(scans)
    joined = scan.sample | Encoder.join_samples(own)
    assert set(joined) == set(whole) == {"s", "r", "d"}
    assert all(joined[n].equals(whole[n]) for n in whole)
    assert scan.present == {"s": 4_500, "r": 150, "d": rows}
    assert scan.ranges["s"] == (float(np.nanmin(sparse)), float(np.nanmax(sparse))) and scan.ranges["d"] == (dense.min(), dense.max())


def test_a_dense_lookup_at_the_ends_of_int64():
    # The table's offset is taken from the least value: at Int64's minimum, one below it does not fit in Int64.
    least, most = -(2**63), 2**63 - 1
    for values in ([least, least + 1, least + 1, least + 5], [most - 5, most, most, most - 1]):
        train = pl.LazyFrame({"y": [0, 1, 0, 1], "i": values}, schema={"y": pl.Int64, "i": pl.Int64})
        enc = Encoder(_schema(i="categorical")).fit(train)
        probes = pl.LazyFrame({"y": [0] * 5, "i": [values[0], values[1], values[3], None, 0]}, schema={"y": pl.Int64, "i": pl.Int64})
        vocab = dict(zip(enc.vocabs["i"]["value"].to_list(), enc.vocabs["i"]["id"].to_list(), strict=True))
        want = [vocab[values[0]], vocab[values[1]], vocab[values[3]], MISSING_ID, OOV_ID]
        assert enc.transform(probes).collect()["i"].to_list() == want


def test_mean_and_sd_of_values_near_the_largest_float():
    # Their sum passes the largest float: the scaling must still be finite (values are divided by the largest first).
    train = pl.LazyFrame({"y": [0, 1, 0], "n": [1.7e308, 1.7e308, 1.5e308]})
    enc = Encoder(_schema(n="numeric"), EncoderParams(numeric_bucketing="quantile")).fit(train)
    assert enc.stats["n"]["mean"] == pytest.approx(1.6333333333333333e308, rel=1e-12)
    assert enc.stats["n"]["std"] == pytest.approx(1.1547005383792516e307, rel=1e-12)
    assert np.isfinite(enc.transform(train).collect()["n__num"].to_numpy()).all()
