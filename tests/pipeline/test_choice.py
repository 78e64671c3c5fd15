"""The run's chosen model: candidates, the blend's weight and cross-fitted figures, and the choice."""

import numpy as np
import pytest

from pipeline.stages.baselines import Fitted
from pipeline.stages.choice import choose


def _scores(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(a + 0.5 * b)))).astype(np.int8)
    return 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b)), y


def _run(setting, deep_strength=1.0):
    p_deep, p_gbdt, y = _scores(4000, 0)
    t_deep, t_gbdt, t_y = _scores(4000, 1)
    if deep_strength != 1.0:  # a weaker deep model: its probabilities mixed with noise
        noise = np.random.default_rng(2).random(len(y))
        p_deep = deep_strength * p_deep + (1 - deep_strength) * noise
    baseline = {"kind": "gbdt", "params": {}, "seconds": 1.0}
    from models.gbdt import metrics_of

    baseline |= dict(zip(("valid_auc", "valid_logloss"), metrics_of(y, p_gbdt), strict=True))
    baseline |= dict(zip(("test_auc", "test_logloss"), metrics_of(t_y, t_gbdt), strict=True))
    fitted = {"lightgbm": Fitted(None, None, (p_gbdt, y), (t_gbdt, t_y))}
    info = {"params": {}, "seconds": 2.0}
    return choose(setting, "fm", (p_deep, y), (t_deep, t_y), info, {"lightgbm": baseline}, fitted)


def test_the_blend_of_two_complementary_models_wins_and_is_cross_fitted():
    choice = _run("best")
    assert set(choice.candidates) == {"fm", "lightgbm", "blend"}
    assert choice.name == "blend" and choice.kind == "blend" and choice.baseline is None
    assert set(choice.weights) == {"deep", "lightgbm"} and 0.5 < choice.weights["deep"] < 1
    assert abs(sum(choice.weights.values()) - 1) < 1e-9
    blend = choice.candidates["blend"]
    assert blend["valid_auc"] > max(choice.candidates[n]["valid_auc"] for n in ("fm", "lightgbm"))
    assert blend["params"]["parts"] == ["fm", "lightgbm"] and blend["seconds"] == 3.0
    assert blend["params"]["weights"] == [choice.weights["deep"], choice.weights["lightgbm"]]
    assert choice.entry() == {"name": "blend", "kind": "blend", "gbdt": None, "weights": choice.weights}


def test_a_setting_forces_a_candidate_and_an_unknown_one_is_an_error():
    assert _run("deep").name == "fm" and _run("deep").weights is None
    gbdt = _run("lightgbm")
    assert gbdt.kind == "gbdt" and gbdt.baseline == "lightgbm" and gbdt.weights is None
    with pytest.raises(ValueError, match="not a candidate"):
        _run("catboost")


def test_the_blend_takes_every_baseline_and_drops_a_useless_one():
    p_deep, p_gbdt, y = _scores(4000, 0)
    t_deep, t_gbdt, t_y = _scores(4000, 1)
    noise, t_noise = np.random.default_rng(3).random(len(y)), np.random.default_rng(4).random(len(t_y))
    from models.gbdt import metrics_of

    baselines, fitted = {}, {}
    for name, kind, (valid, test) in [("lightgbm", "gbdt", (p_gbdt, t_gbdt)), ("wide", "linear", (noise, t_noise))]:
        figures = dict(zip(("valid_auc", "valid_logloss"), metrics_of(y, valid), strict=True))
        figures |= dict(zip(("test_auc", "test_logloss"), metrics_of(t_y, test), strict=True))
        baselines[name] = {"kind": kind, "params": {}, "seconds": 1.0, **figures}
        fitted[name] = Fitted(None, None, (valid, y), (test, t_y))
    choice = choose("best", "fm", (p_deep, y), (t_deep, t_y), {"params": {}, "seconds": 2.0}, baselines, fitted)
    assert choice.name == "blend" and choice.candidates["wide"]["kind"] == "linear"
    assert choice.candidates["blend"]["params"]["parts"] == ["fm", "lightgbm", "wide"]
    assert choice.weights["wide"] < 0.02 and choice.candidates["blend"]["seconds"] == 4.0


def test_without_baselines_the_deep_model_is_the_only_candidate():
    p, _, y = _scores(1000, 0)
    choice = choose("best", "fm", (p, y), None, {"params": {}, "seconds": 1.0}, {}, {})
    assert choice.name == "fm" and list(choice.candidates) == ["fm"] and choice.candidates["fm"]["test_auc"] is None


def test_a_package_written_before_k_part_blends_still_reads_as_its_two_parts():
    from pipeline.package import DEEP, blend_weights

    assert blend_weights({"kind": "blend", "gbdt": "lightgbm", "weight": 0.3}) == {DEEP: 0.3, "lightgbm": 0.7}
    assert blend_weights({"kind": "blend", "gbdt": None, "weights": {DEEP: 0.1, "wide": 0.9}}) == {DEEP: 0.1, "wide": 0.9}
    assert blend_weights({"kind": "gbdt", "gbdt": "lightgbm", "weights": None}) == {}


def test_a_weak_choice_is_said():
    # 4,000 valid rows at ~50 % clicks: no warning; a badly calibrated winner (its probabilities pushed to the extremes)
    # against a constant at the train click rate; and a valid split of a dozen clicks.
    p_deep, _, y = _scores(4000, 0)
    info = {"params": {}, "seconds": 1.0}
    assert choose("best", "fm", (p_deep, y), None, info, {}, {}, train_rate=float(y.mean())).warnings == []
    overconfident = np.clip(np.where(p_deep > 0.5, 0.999, 0.001), 0, 1)
    said = choose("best", "fm", (overconfident, y), None, info, {}, {}, train_rate=float(y.mean())).warnings
    assert len(said) == 1 and "valid logloss" in said[0] and "worse than a constant at the train click rate" in said[0]
    rare = np.zeros(4000, dtype=np.int8)
    rare[:12] = 1
    said = choose("best", "fm", (p_deep, rare), None, info, {}, {}).warnings
    assert said == ["the valid split holds 12 clicks: too few for its AUCs to tell the candidates apart"]
