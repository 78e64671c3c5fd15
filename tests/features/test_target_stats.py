"""Statistical encodings: no train row's encoding uses its own label; scored rows use the whole train table."""

import numpy as np
import pytest

from features.target_stats import (
    MAX_STRENGTH,
    KeyTable,
    empirical_bayes_strength,
    fit_encoding,
    fold_of,
    forward_select,
    standardised_logit,
)


def _data(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(3, 40, rows), rng.integers(3, 6, rows)
    label = (rng.random(rows) < 0.2 + 0.5 * (a % 2 == b % 2)).astype(np.int8)
    return {"a": a, "b": b}, label


def test_a_train_rows_encoding_never_uses_its_own_label():
    columns, label = _data(3_000, 0)
    fold = fold_of(len(label), 5, 0)
    encoding, _ = fit_encoding("te__a_x_b", ("a", "b"), (40, 6), columns, label, 20.0, 16, fold)
    before = encoding.transform_train(columns, label, fold)
    for row in (0, 17, 2_999):
        flipped = label.copy()
        flipped[row] = 1 - flipped[row]
        after = encoding.transform_train(columns, flipped, fold)
        # the row's own statistic and count are unchanged; rows of other folds with its key move
        assert after["te__a_x_b__num"][row] == before["te__a_x_b__num"][row]
        assert after["cnt__a_x_b__num"][row] == before["cnt__a_x_b__num"][row]
        same_key = (columns["a"] == columns["a"][row]) & (columns["b"] == columns["b"][row]) & (fold != fold[row])
        assert np.any(after["te__a_x_b__num"][same_key] != before["te__a_x_b__num"][same_key])


def test_scored_rows_use_the_whole_train_table_smoothed_toward_the_prior():
    columns, label = _data(5_000, 1)
    fold = fold_of(len(label), 5, 0)
    encoding, train_values = fit_encoding("te__a", ("a",), (40,), columns, label, 20.0, 16, fold)
    table = KeyTable.fit(columns["a"].astype(np.int64), label.astype(np.float64))
    new = {"a": np.array([5, 6, 999])}  # 999: never seen in train
    out = encoding.transform(new)
    counts, positives = table.lookup(np.array([5, 6, 999]))
    expected = (positives + 20 * label.mean()) / (counts + 20)
    np.testing.assert_allclose(out["te__a__num"], ((expected - encoding.mean) / encoding.std).astype(np.float32), rtol=1e-6)
    assert counts[2] == 0 and expected[2] == pytest.approx(label.mean())  # an unseen key gets the prior
    assert out["te__a"].min() >= 3 and out["te__a"].max() < encoding.specs()[0].vocab_size  # bucket ids past the reserved 0-2
    assert abs(train_values.mean() - label.mean()) < 0.02  # out-of-fold values are centred on the click rate


def test_the_encoding_carries_signal_a_model_can_use():
    from sklearn.metrics import roc_auc_score

    columns, label = _data(20_000, 2)
    fold = fold_of(len(label), 5, 0)
    encoding, train_values = fit_encoding("te__a_x_b", ("a", "b"), (40, 6), columns, label, 20.0, 16, fold)
    valid_columns, valid_label = _data(5_000, 3)
    scored = encoding.transform(valid_columns)["te__a_x_b__num"]
    assert roc_auc_score(label, train_values) > 0.7 and roc_auc_score(valid_label, scored) > 0.7


@pytest.mark.parametrize(
    ("strength", "keys", "fewest", "most"), [(3.0, 2_000, 20, 400), (30.0, 2_000, 20, 400), (300.0, 2_000, 20, 400), (10.0, 30_000, 2, 5)]
)
def test_the_estimated_prior_strength_recovers_a_beta_prior(strength, keys, fewest, most):
    # keys' true rates drawn from Beta(mean 0.2, strength a): the method of moments finds a, also when keys have 2-4 rows
    # each (K/N about 1/3, where leaving out the (1 - K/N) correction would overstate a)
    rng = np.random.default_rng(int(strength))
    rates = rng.beta(0.2 * strength, 0.8 * strength, keys)
    counts = rng.integers(fewest, most, keys)
    key = np.repeat(np.arange(keys), counts)
    label = (rng.random(key.size) < rates[key]).astype(np.float64)
    estimated = empirical_bayes_strength(KeyTable.fit(key, label))
    assert estimated == pytest.approx(strength, rel=0.25)


def test_no_spread_beyond_noise_means_full_shrinkage():
    rng = np.random.default_rng(0)
    label = (rng.random(50_000) < 0.1).astype(np.float64)
    alike = KeyTable.fit(rng.integers(0, 50, label.size), label)  # every key has the same true rate
    once = KeyTable.fit(np.arange(label.size), label)  # each key seen once: its rate is pure noise
    assert empirical_bayes_strength(alike) > 1_000 and empirical_bayes_strength(once) == MAX_STRENGTH


def test_auto_smoothing_is_estimated_per_encoding_and_shrinks_the_noisy_one_more():
    columns, label = _data(20_000, 4)
    columns["noise"] = np.random.default_rng(5).integers(3, 40, label.size)
    fold = fold_of(len(label), 5, 0)
    signal, _ = fit_encoding("te__a_x_b", ("a", "b"), (40, 6), columns, label, None, 16, fold)
    noise, _ = fit_encoding("te__noise", ("noise",), (40,), columns, label, None, 16, fold)
    assert signal.smoothing < 10 < noise.smoothing  # a strong cross keeps its rates; a noise field goes to the prior
    table = signal.table
    counts, positives = table.lookup(signal.key({"a": np.array([5]), "b": np.array([4])}))
    expected = (positives + signal.smoothing * label.mean()) / (counts + signal.smoothing)
    assert signal.transform({"a": np.array([5]), "b": np.array([4])})["te__a_x_b__num"][0] == pytest.approx(
        (expected[0] - signal.mean) / signal.std, rel=1e-5
    )


def test_forward_selection_takes_what_a_pair_adds_not_what_repeats_a_pair_already_taken():
    """A strong memorised pair (user × item), a copy of it under another field's name, a weaker pair of its own
    (user × context) and a noise pair: greedy takes the strong pair, then the weaker one, never the copy (where
    ordering the candidates by their score alone would take the copy second), and stops before the noise."""
    rng = np.random.default_rng(0)
    rows = 40_000
    user, item, context = rng.integers(0, 50, rows), rng.integers(0, 40, rows), rng.integers(0, 4, rows)
    logit = -1.0 + 1.5 * rng.choice([-1.0, 1.0], (50, 40))[user, item] + 0.8 * rng.choice([-1.0, 1.0], (50, 4))[user, context]
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    columns = {"user": user, "user_copy": user.copy(), "item": item, "context": context}
    cards = {"user": 50, "user_copy": 50, "item": 40, "context": 4}
    fold = fold_of(rows, 5, 0)

    def statistic(sources):
        return standardised_logit(fit_encoding("", sources, tuple(cards[s] for s in sources), columns, label, None, 2, fold)[1])

    base = [statistic((name,)) for name in ("user", "item", "context")]
    candidates = {pair: statistic(pair) for pair in [("user", "item"), ("user_copy", "item"), ("user", "context"), ("item", "context")]}
    picks = forward_select(base, candidates, label, 4)
    assert {picks[0].sources} < {("user", "item"), ("user_copy", "item")}
    assert picks[1].sources == ("user", "context")
    assert len(picks) == 2  # then it stops: the copy repeats the first pick and item × context is noise
    assert picks[0].logloss_drop > picks[1].logloss_drop > 0
    # Without the refit between steps the copy would come second: alone it scores above user × context.
    first = forward_select(base, candidates, label, 1)[0].logloss_drop
    copy = ("user_copy", "item") if picks[0].sources == ("user", "item") else ("user", "item")
    assert forward_select(base, {copy: candidates[copy]}, label, 1)[0].logloss_drop > 0.9 * first
    assert forward_select(base, {("user", "context"): candidates[("user", "context")]}, label, 1)[0].logloss_drop < 0.5 * first
