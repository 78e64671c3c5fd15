import numpy as np
import pytest

from featuremap import FeatureMap, FieldSpec
from featuremap.errors import InputError
from features import synthetic
from features.ranking import ContingencyCounter, RankParams, choose_pairs, field_stats, mrmr_order, pair_stats, rank_features

PLANTED = {"inf_c2", "inf_c5", "inf_c10", "inf_zipf20k", "num_signal"}


def _batches(train, feature_map, rows=1 << 16):
    columns = [spec.rank_column for spec in feature_map.fields]
    arrays = {c: train[c].to_numpy() for c in columns}
    label = train[feature_map.label].to_numpy()
    for start in range(0, label.size, rows):
        yield {c: a[start : start + rows] for c, a in arrays.items()}, label[start : start + rows]


@pytest.mark.parametrize("score", ["expected", "permutation", "shifted", "chi2"])
def test_corrected_scores_put_planted_features_on_top(synthetic_encoded, score):
    train, fm = synthetic_encoded
    result = rank_features(_batches(train, fm), fm, RankParams(score=score, pair_budget=0))
    top = set(result.ranking["feature"].head(len(PLANTED)).to_list())
    assert top == PLANTED, result.ranking.select("feature", "score").head(8)


def test_plain_mi_is_fooled_by_cardinality(synthetic_encoded):
    train, fm = synthetic_encoded
    result = rank_features(_batches(train, fm), fm, RankParams(score="plain", pair_budget=0))
    top = result.ranking["feature"].head(len(PLANTED)).to_list()
    assert "noise_zipf1m" in top  # the bias the corrections remove


def test_pure_interactions_found_by_pairs_not_singles(synthetic_encoded):
    train, fm = synthetic_encoded
    result = rank_features(_batches(train, fm), fm, RankParams())
    ranking = dict(zip(result.ranking["feature"], result.ranking["adjusted_mi"], strict=True))
    for a, b in synthetic.INTERACTIONS:
        assert abs(ranking[a]) < 1e-4 and abs(ranking[b]) < 1e-4
    top_pairs = {frozenset(p) for p in result.pairs.select("feature_a", "feature_b").head(2).rows()}
    assert top_pairs == {frozenset(p) for p in synthetic.INTERACTIONS}
    assert (result.pairs["gain"].head(2) > 0.01).all()


def test_counts_merged_across_shards_equal_one_pass(synthetic_encoded):
    train, fm = synthetic_encoded
    sizes = {s.rank_column: s.rank_cardinality for s in fm.fields}
    whole = ContingencyCounter(sizes)
    for batch, label in _batches(train, fm, rows=train.height):
        whole.update(batch, label)
    merged = ContingencyCounter(sizes)
    for batch, label in _batches(train, fm, rows=37_000):
        shard = ContingencyCounter(sizes)
        shard.update(batch, label)
        merged.merge(shard)
    for name in sizes:
        np.testing.assert_array_equal(whole.tables[name], merged.tables[name])
    # ...so the ranking scored from the merged counts is the one-pass ranking (every statistic, same order).
    kinds = {s.rank_column: s.kind for s in fm.fields}
    for score in ("standardized", "expected", "chi2"):
        one_pass, sharded = field_stats(whole, kinds, score), field_stats(merged, kinds, score)
        assert [s.feature for s in sorted(one_pass, key=lambda s: -s.score)] == [s.feature for s in sorted(sharded, key=lambda s: -s.score)]
        for a, b in zip(one_pass, sharded, strict=True):
            assert (a.mi, a.expected_mi, a.null_sd, a.chi2_p, a.score) == (b.mi, b.expected_mi, b.null_sd, b.chi2_p, b.score)


def test_redundant_copy_is_demoted_by_3mr():
    rng = np.random.default_rng(3)
    n = 60_000
    strong = rng.integers(0, 8, n)
    weak = rng.integers(0, 4, n)
    logit = np.array([-2, -1, 0, 1, 2, 1, 0, -1.0])[strong] + np.array([-0.5, 0.5, -0.5, 0.5])[weak]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    codes = {"strong": strong + 3, "copy": strong + 3, "weak": weak + 3, "noise": rng.integers(0, 50, n) + 3}
    fm = FeatureMap(
        label="y",
        fields=tuple(FieldSpec(name=k, kind="categorical", column=k, vocab_size=int(v.max()) + 1) for k, v in codes.items()),
        splits={"train": {"rows": n}},
    )
    result = rank_features(iter([(codes, y)]), fm, RankParams())
    by_score = result.ranking["feature"].to_list()
    order = dict(zip(result.ranking["feature"], result.ranking["order_3mr"], strict=True))
    assert set(by_score[:2]) == {"strong", "copy"}
    assert order["weak"] < max(order["strong"], order["copy"])  # the second copy waits behind a new signal
    redundancy = {frozenset((a, b)): r for a, b, r in result.pairs.select("feature_a", "feature_b", "redundancy_norm").rows()}
    assert redundancy[frozenset(("strong", "copy"))] > 0.99
    assert redundancy[frozenset(("strong", "noise"))] < 0.01


def test_pair_budget_and_choice():
    names = [f"f{i}" for i in range(10)]
    assert len(choose_pairs(names, 1000)) == 45
    chosen = choose_pairs(names, 10)
    assert len(chosen) <= 10 and all(a in names[:5] and b in names[:5] for a, b in chosen)
    assert choose_pairs(names, 0) == []


def test_id_beyond_vocabulary_is_a_user_error():
    counter = ContingencyCounter({"f": 4})
    with pytest.raises(InputError, match="does not match"):
        counter.update({"f": np.array([1, 9])}, np.array([0, 1], dtype=np.int8))


def test_pair_stats_gain_sign():
    rng = np.random.default_rng(5)
    n = 40_000
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    y = ((a ^ b) & (rng.random(n) < 0.9)).astype(np.int8)
    (xor,) = pair_stats({"a": a + 3, "b": b + 3}, y, [("a", "b")], 1024)
    assert xor.gain > 0.1
    (dup,) = pair_stats({"a": a + 3, "c": a + 3}, (a & (rng.random(n) < 0.9)).astype(np.int8), [("a", "c")], 1024)
    assert dup.gain < 0 and dup.redundancy_norm > 0.99


def test_mrmr_with_no_pairs_is_relevance_order():
    assert mrmr_order({"a": 0.1, "b": 0.3, "c": 0.2}, [], 1.0, 1.0) == ["b", "c", "a"]


def test_pair_stats_from_nonzero_cells_equal_the_dense_tables(monkeypatch):
    """Crosses whose id space outgrows the sample are counted from their nonzero cells: the same figures as dense tables."""
    import features.pairs as pairs_module

    rng = np.random.default_rng(3)
    n = 3000  # two ~600-value fields: 360k cross ids > 4 × 3000 rows, so the sparse path runs
    sample = {name: rng.zipf(1.3, n).clip(max=600) + 2 for name in ("a", "b", "c")}
    y = ((sample["a"] % 7 == sample["b"] % 7) ^ (rng.random(n) < 0.2)).astype(np.int8)
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    sparse = pair_stats(sample, y, pairs, 1024)
    monkeypatch.setattr(pairs_module, "_value_counts", lambda codes, size: np.bincount(codes, minlength=size))
    dense = pair_stats(sample, y, pairs, 1024)
    for s, d in zip(sparse, dense, strict=True):
        for key, value in vars(d).items():
            assert vars(s)[key] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12, abs=1e-15)), key
    assert sparse[0].gain > 0.01 > abs(sparse[1].gain)  # the planted cross, and an unrelated pair
