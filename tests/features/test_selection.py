"""Selection from the ranking: Benjamini-Hochberg on calibrated p-values, quality flags, pair fields, the fallback."""

import numpy as np
import polars as pl

from featuremap import FeatureMap, FieldSpec
from features.ranking import rank_features
from features.selection import benjamini_hochberg, select_features
from features.settings import RankParams, SelectParams


def test_benjamini_hochberg_rejects_up_to_the_largest_p_under_its_line():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 against 0.01, 0.02, 0.03, 0.04, 0.05: the 4th is the last under its line
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True, True, True, False]
    assert benjamini_hochberg(np.array([0.02, 0.9]), 0.01).tolist() == [False, False]
    assert benjamini_hochberg(np.array([]), 0.05).size == 0


def _ranked(rows: int, seed: int):
    """signal (10 values) drives the label; a and b only through their XOR; noise is a 5,000-value id; flat is constant."""
    rng = np.random.default_rng(seed)
    cols = {
        "signal": rng.integers(3, 13, rows),
        "a": rng.integers(3, 5, rows),
        "b": rng.integers(3, 5, rows),
        "noise": rng.integers(3, 5003, rows),
    }
    logit = 0.4 * (cols["signal"] - 8) + 1.2 * ((cols["a"] == 3) ^ (cols["b"] == 3)) - 0.6
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    fields = tuple(FieldSpec(name, "categorical", name, int(col.max()) + 1) for name, col in cols.items())
    fm = FeatureMap(label="y", fields=fields, splits={"train": {"rows": rows}})
    result = rank_features(iter([({f.rank_column: cols[f.name] for f in fields}, label)]), fm, RankParams())
    return result


def test_noise_is_dropped_signal_kept_and_a_pure_interaction_kept_through_its_pair():
    result = _ranked(40_000, 0)
    ranking = result.ranking
    # The p-values are calibrated: the 5,000-value noise id is not significant, though the G-test calls it so.
    noise = ranking.filter(pl.col("feature") == "noise")
    assert noise["p_value"][0] > 0.01 and noise["chi2_p"][0] < 0.05
    chosen = select_features(ranking, result.pairs, {}, SelectParams())
    table = dict(zip(chosen.ranking["feature"], chosen.ranking["selected"], strict=True))
    assert table == {"signal": True, "a": True, "b": True, "noise": False} and chosen.significant
    reasons = dict(zip(chosen.ranking["feature"], chosen.ranking["reason"], strict=True))
    assert reasons["a"].startswith("field of the significant pair") and reasons["noise"].startswith("dropped: not significant")
    # Without pair fields the interaction's fields go; a quality flag drops even a significant feature.
    alone = select_features(ranking, result.pairs, {}, SelectParams(keep_pair_fields=False))
    assert alone.kept == ["signal"]
    flagged = select_features(ranking, result.pairs, {"label_leakage": ["signal"]}, SelectParams())
    assert (
        "signal" not in flagged.kept
        and "quality flag label_leakage" in dict(zip(flagged.ranking["feature"], flagged.ranking["reason"], strict=True))["signal"]
    )


def test_nothing_significant_keeps_every_unflagged_feature_and_says_so():
    rng = np.random.default_rng(1)
    rows = 20_000
    cols = {"x": rng.integers(3, 50, rows), "z": rng.integers(3, 9, rows)}
    label = (rng.random(rows) < 0.3).astype(np.int8)
    fields = tuple(FieldSpec(name, "categorical", name, int(col.max()) + 1) for name, col in cols.items())
    fm = FeatureMap(label="y", fields=fields, splits={"train": {"rows": rows}})
    result = rank_features(iter([({f.rank_column: cols[f.name] for f in fields}, label)]), fm, RankParams())
    chosen = select_features(result.ranking, result.pairs, {"constant": ["z"]}, SelectParams())
    assert not chosen.significant and chosen.kept == ["x"]
    assert "nothing was significant" in dict(zip(chosen.ranking["feature"], chosen.ranking["reason"], strict=True))["x"]
    # every feature flagged: none is kept, not every one (a leak or an id would go on); the stages after rank say so
    everything = select_features(result.ranking, result.pairs, {"constant": ["z"], "label_leakage": ["x"]}, SelectParams())
    assert everything.kept == [] and not everything.significant


def test_a_selection_of_nothing_stops_the_stages_after_rank_with_one_line(tmp_path):
    import pytest

    from pipeline import catalog
    from pipeline.config import load_config
    from pipeline.errors import UserError
    from pipeline.upstream import selected_features

    fm = FeatureMap(label="y", fields=(FieldSpec("a", "categorical", "a", 5),), splits={"train": {"rows": 10}})
    ranking = catalog.RANKING.at(tmp_path)
    ranking.parent.mkdir(parents=True)
    pl.DataFrame({"feature": ["a"], "rank": [1], "selected": [False], "reason": ["dropped: quality flag label_leakage"]}).write_csv(ranking)
    with pytest.raises(UserError, match=r"every feature is dropped by a quality flag: a \(label_leakage\)"):
        selected_features(tmp_path, fm, load_config(None, {}))


def test_pure_noise_is_rarely_significant():
    """20 seeds of 4 noise fields (80 tests at 5% FDR, ids from 2 to 3,000 values): at most 2 false selections in all."""
    false = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        rows = 5_000
        cols = {f"n{k}": rng.integers(3, 3 + v, rows) for k, v in enumerate((2, 20, 500, 3000))}
        label = (rng.random(rows) < 0.2).astype(np.int8)
        fields = tuple(FieldSpec(name, "categorical", name, int(col.max()) + 1) for name, col in cols.items())
        fm = FeatureMap(label="y", fields=fields, splits={"train": {"rows": rows}})
        result = rank_features(iter([({f.rank_column: cols[f.name] for f in fields}, label)]), fm, RankParams(pair_budget=0))
        false += int(benjamini_hochberg(result.ranking["p_value"].to_numpy(), 0.05).sum())
    assert false <= 2


def test_p_values_of_noise_are_uniform_for_few_and_many_values():
    """The gamma tail matched to the null's exact moments: about 5% of pure-noise draws under 0.05, at 2 or 500 values
    (a normal tail gave a binary field's noise p < 0.01 several times too often)."""
    from features.information import mutual_information, null_moments, null_upper_tail

    rng = np.random.default_rng(0)
    for values in (2, 500):
        p = []
        for _ in range(600):
            x, y = rng.integers(0, values, 5_000), (rng.random(5_000) < 0.2).astype(np.int64)
            table = np.bincount(x * 2 + y, minlength=2 * values).reshape(-1, 2)
            mean, sd = null_moments(table.sum(axis=1), table.sum(axis=0))
            p.append(null_upper_tail(mutual_information(table), mean, sd))
        p = np.array(p)
        assert 0.025 < (p < 0.05).mean() < 0.08 and (p < 0.01).mean() < 0.025, (values, (p < 0.05).mean(), (p < 0.01).mean())
