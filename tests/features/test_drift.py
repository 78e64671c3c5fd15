"""Data checks between two fitted ingests: PSI, mean shift, click rate, schema changes."""

import json

import numpy as np
import polars as pl
import pytest

from features.drift import FittedData, compare, vocabulary_psi
from features.encode import vocab_path
from features.quality import population_stability_index


def _counts(shares, total=100_000, offset=0):
    return pl.DataFrame({"value": np.arange(len(shares), dtype=np.int32) + offset, "count": (np.asarray(shares) * total).astype(np.uint32)})


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    shares = np.array([0.5, 0.3, 0.15, 0.05])
    assert population_stability_index(shares * 1000, shares * 10, shares.size) == pytest.approx(0.0, abs=1e-12)
    mild = vocabulary_psi(_counts(shares), _counts([0.45, 0.32, 0.17, 0.06]))
    major = vocabulary_psi(_counts(shares), _counts([0.05, 0.15, 0.3, 0.5]))
    assert 0 < mild < 0.1 < 0.25 < major
    # every value new: all of today's rows fall in the "other" bucket, which the champion never saw
    assert vocabulary_psi(_counts(shares), _counts(shares, offset=10)) > 5


def _fitted(tmp_path, name, kinds, rate, numeric, vocabs):
    directory = tmp_path / name
    (directory / "vocab").mkdir(parents=True)
    fields = [{"name": n, "kind": k} for n, k in kinds.items()]
    (directory / "feature_map.json").write_text(json.dumps({"fields": fields, "splits": {"train": {"positive_rate": rate}}}))
    stats = {n: {"mean": m, "std": s} for n, (m, s) in numeric.items()}
    (directory / "encoder.json").write_text(json.dumps({"stats": stats}))
    for field, frame in vocabs.items():
        frame.write_parquet(vocab_path(directory, field))  # where ingest writes it
    return FittedData.load(directory)


def test_compare_reports_schema_changes_click_rate_and_drift_and_the_failures_name_them(tmp_path):
    shares = [0.6, 0.3, 0.1]
    champion = _fitted(
        tmp_path, "champion", {"a": "categorical", "b/site": "categorical", "x": "numeric", "gone": "categorical"}, 0.20,
        {"x": (10.0, 2.0)}, {"a": _counts(shares), "b/site": _counts(shares), "gone": _counts(shares)},
    )  # fmt: skip
    same = compare(champion, champion)
    assert same.schema_changes == [] and same.click_rate_change == 0 and max(same.drift.values()) == pytest.approx(0, abs=1e-9)
    assert same.failures(0.5, 0.25, 0.5) == []
    today = _fitted(
        tmp_path, "today", {"a": "categorical", "b/site": "categorical", "x": "numeric", "new": "numeric"}, 0.35,
        {"x": (13.0, 2.0), "new": (0.0, 1.0)}, {"a": _counts(shares), "b/site": _counts([0.1, 0.3, 0.6])},
    )  # fmt: skip
    checks = compare(champion, today)
    assert checks.schema_changes == ["new field(s) new", "missing field(s) gone"]
    assert checks.click_rate_change == pytest.approx(0.75)
    # "b/site": a name that its vocabulary's file name quotes
    assert checks.drift["a"] == pytest.approx(0, abs=1e-9) and checks.drift["b/site"] > 0.25 and checks.drift["x"] == pytest.approx(1.5)
    failures = checks.failures(0.5, 0.25, 0.5)
    assert len(failures) == 3
    assert failures[0].startswith("schema changed: new field(s) new; missing field(s) gone")
    assert "train click rate 0.3500 against the champion's 0.2000 (+75%" in failures[1]
    assert "x (mean shift 1.500)" in failures[2] and "b/site (PSI" in failures[2] and "a (" not in failures[2]
    assert compare(champion, today).failures(1.0, 10.0, 2.0) == failures[:1]  # looser limits: only the schema change


def test_an_influx_of_new_values_drifts_beyond_the_rate_the_long_tail_predicts():
    # A flat long tail (the top 100 of 200,000 values hold ~4 % of rows): another sample of the same law does not drift,
    # its values all replaced by new ones does (in one "rest" bucket with the tail, PSI was 0.27 for that), and the
    # same counts again (no new value: fewer than the tail predicts) do not.
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 200_001) ** 0.6

    def sample(offset=0):
        values, counts = np.unique(rng.choice(200_000, 200_000, p=weights / weights.sum()) + offset, return_counts=True)
        return pl.DataFrame({"value": values, "count": counts})

    champion = sample()
    assert vocabulary_psi(champion, sample()) < 0.05
    assert vocabulary_psi(champion, champion) == pytest.approx(0.0, abs=1e-9)
    replaced = sample(offset=10**8)
    assert vocabulary_psi(champion, replaced) > 1.0 > 0.3 > vocabulary_psi(champion, replaced, new_bucket=False)


def test_the_oov_share_of_a_split_is_its_own_bucket():
    # Encoded ids (0 missing, 1 OOV, then values): a valid split whose every value is out of the train vocabulary.
    train = np.concatenate([[0, 0], np.full(5_000, 3)])  # 5,000 ids each seen 3 times, no OOV in train
    valid = np.zeros_like(train)
    valid[1] = 1_000
    assert population_stability_index(train, valid, 20, unseen=1) > 5
    assert population_stability_index(train, train, 20, unseen=1) == pytest.approx(0.0, abs=1e-9)
