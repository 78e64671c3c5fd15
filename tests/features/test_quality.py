import numpy as np
import pytest

from featuremap import OOV_ID, FeatureMap, FieldSpec
from features.quality import QualityParams, population_stability_index, quality_report
from features.ranking import ContingencyCounter, RankParams, rank_features


def test_flags_constant_near_unique_leakage_drift_and_coverage():
    rng = np.random.default_rng(0)
    n = 20_000
    y = (rng.random(n) < 0.3).astype(np.int8)
    train = {
        "leak": y.astype(np.int64) + 3,
        "const": np.full(n, 3),
        "row_id": np.arange(n) + 3,
        "shifty": rng.integers(3, 8, n),
        "sparse": np.where(rng.random(n) < 0.98, 2, 3),  # id 2 = missing
        "fine": rng.integers(3, 13, n),
    }
    fm = FeatureMap(
        label="y",
        fields=tuple(FieldSpec(name=k, kind="categorical", column=k, vocab_size=int(v.max()) + 1) for k, v in train.items()),
        splits={"train": {"rows": n}},
    )
    result = rank_features(iter([(train, y)]), fm, RankParams(pair_budget=0))
    test = {k: v[:5000].copy() for k, v in train.items()}
    test["shifty"] = np.full(5000, 7)
    test["row_id"] = np.full(5000, OOV_ID)  # a test split's row ids are values train never saw: out of its vocabulary
    test_counter = ContingencyCounter({f.column: f.vocab_size for f in fm.fields})
    test_counter.update(test, y[:5000])
    counts = {"test": {col: table.sum(axis=1) for col, table in test_counter.tables.items()}}
    adjusted = dict(zip(result.ranking["feature"], result.ranking["adjusted_mi"], strict=True))
    report = quality_report(fm, result.counter.tables, adjusted, result.label_entropy, counts, QualityParams())
    flags = report["flags"]
    assert flags["label_leakage"] == ["leak"]
    assert flags["constant"] == ["const"]
    assert flags["near_unique"] == ["row_id"]
    assert flags["drift"] == ["shifty"]
    assert flags["low_coverage"] == ["sparse"]
    fine = report["features"]["fine"]
    assert fine["cardinality"] == 10 and fine["coverage"] == 1.0 and fine["psi_test"] < 0.01
    assert 0.09 < fine["top_value_share"] < 0.12 and fine["rare_value_share"] == 0.0
    assert report["features"]["row_id"]["rare_value_share"] == 1.0


def test_psi_is_zero_for_same_distribution_and_grows_with_shift():
    base = np.array([0, 0, 0, 500, 300, 200])
    assert population_stability_index(base, base * 3, 20) == pytest.approx(0.0, abs=1e-9)
    assert population_stability_index(base, np.array([0, 0, 0, 200, 300, 500]), 20) > 0.25
