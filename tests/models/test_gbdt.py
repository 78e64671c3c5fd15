"""The LightGBM baseline: learns planted signal, early-stops on valid, same data and seed give the same model."""

import numpy as np

from models.gbdt import GBDTConfig, fit_lightgbm, metrics_of, predict_lightgbm


def _data(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 50, rows)  # a categorical field: ids 3..49, a few of them clicky
    value = rng.normal(size=rows)  # a numeric field
    noise = rng.integers(3, 1000, rows)
    logit = -1.0 + 1.5 * np.isin(ids, [5, 17, 31]) + 0.8 * value
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return np.column_stack([ids, value, noise]).astype(np.float32), label, logit


def test_lightgbm_learns_the_planted_signal_and_is_deterministic():
    from sklearn.metrics import roc_auc_score

    names, categorical = ["item", "price__num", "noise"], ["item", "noise"]
    (*train, _), (*valid, _), (*test, test_logit) = _data(20_000, 0), _data(5_000, 1), _data(5_000, 2)
    oracle = roc_auc_score(test[1], test_logit)  # the true click probability's AUC: the best any model can do
    config = GBDTConfig(seed=3)
    first = fit_lightgbm(train, valid, names, categorical, config)
    auc, _ = metrics_of(test[1], predict_lightgbm(first.booster, test[0]))
    assert auc > oracle - 0.01 and 1 <= first.best_iteration < config.max_rounds
    again = fit_lightgbm(train, valid, names, categorical, config)
    assert again.valid_auc == first.valid_auc and again.best_iteration == first.best_iteration


def test_catboost_learns_the_planted_signal_saves_and_loads(tmp_path):
    from sklearn.metrics import roc_auc_score

    from models.baselines import KINDS

    names, categorical = ["item", "price__num", "noise"], ["item", "noise"]
    (*train, _), (*valid, _), (*test, test_logit) = _data(8_000, 0), _data(3_000, 1), _data(3_000, 2)
    oracle = roc_auc_score(test[1], test_logit)
    kind = KINDS["catboost"]
    fitted = kind.fit(train, valid, names, categorical, GBDTConfig(seed=3, params={"iterations": 300}))
    probs = kind.predict(fitted.booster, test[0])
    assert metrics_of(test[1], probs)[0] > oracle - 0.02 and 1 <= fitted.best_iteration <= 300
    kind.save(fitted.booster, tmp_path / "m.cbm")
    loaded = kind.load(tmp_path / "m.cbm", names, categorical)
    np.testing.assert_allclose(kind.predict(loaded, test[0]), probs)


def test_lightgbm_saves_only_the_kept_trees_and_loads_them(tmp_path):
    from models.baselines import KINDS

    names, categorical = ["item", "price__num", "noise"], ["item", "noise"]
    (*train, _), (*valid, _), (*test, _) = _data(8_000, 0), _data(3_000, 1), _data(3_000, 2)
    kind = KINDS["lightgbm"]
    fitted = kind.fit(train, valid, names, categorical, GBDTConfig(seed=3))
    kind.save(fitted.booster, tmp_path / "m.txt")
    loaded = kind.load(tmp_path / "m.txt", names, categorical)
    assert loaded.num_trees() == fitted.best_iteration
    np.testing.assert_allclose(kind.predict(loaded, test[0]), kind.predict(fitted.booster, test[0]))
