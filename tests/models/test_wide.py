"""The wide baseline: one weight per field value and per value of each crossed pair, its L2 picked on valid."""

import numpy as np

from models.gbdt import GBDTConfig, metrics_of
from models.wide import Wide

NAMES = ["a", "b", "item", "x"]
CATEGORICAL = ["a", "b", "item"]


def _rows(n: int, seed: int):
    """A pure a × b interaction (each alone uninformative), a 500-value item effect and a step in numeric x."""
    rng = np.random.default_rng(seed)
    a, b, item = rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 500, n)
    x = rng.normal(size=n)
    item_effect = np.random.default_rng(99).normal(0, 0.8, 500)
    logit = 1.2 * np.where((a + b) % 2 == 0, 1.0, -1.0) + item_effect[item] + np.where(x > 0.5, 1.0, -0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    x[rng.random(n) < 0.05] = np.nan  # missing values get their own bin
    return np.column_stack([a, b, item, x]).astype(np.float32), y


def _fit(params):
    train, valid = _rows(40_000, 0), _rows(10_000, 1)
    return Wide().fit(train, valid, NAMES, CATEGORICAL, GBDTConfig(params=params)), _rows(10_000, 2)


def test_the_crossed_pair_carries_the_interaction_no_single_field_shows():
    crossed, test = _fit({"pairs": [["a", "b"]]})
    plain, _ = _fit({})
    model = crossed.booster
    auc_crossed = metrics_of(test[1], Wide().predict(model, test[0]))[0]
    auc_plain = metrics_of(test[1], Wide().predict(plain.booster, test[0]))[0]
    assert auc_crossed > auc_plain + 0.05 and crossed.valid_auc > plain.valid_auc + 0.05
    # The cross's weights follow the planted signs: equal parity up, odd parity down.
    start = sum(len(v) for v in model.vocab[:-1])
    keys, weights = model.vocab[-1], model.coef[start:]
    parity = ((keys >> 32) + (keys & 0xFFFFFFFF)) % 2 == 0
    assert weights[parity].min() > weights[~parity].max()
    assert crossed.params["crosses"] == "a × b" and crossed.params["C_chosen"] in crossed.params["C"]


def test_saved_and_loaded_it_scores_the_same_and_unseen_values_get_no_weight(tmp_path):
    result, test = _fit({"pairs": [["a", "b"]], "C": [0.3]})
    kind = Wide()
    kind.save(result.booster, tmp_path / "wide.npz")
    loaded = kind.load(tmp_path / "wide.npz", NAMES, CATEGORICAL)
    np.testing.assert_array_equal(kind.predict(loaded, test[0]), kind.predict(result.booster, test[0]))
    unseen = test[0][:5].copy()
    unseen[:, 2] = 10_000  # an item id that no train row had
    design = loaded.design(unseen)
    assert design.shape[0] == 5 and np.all(design.getnnz(axis=1) == len(loaded.blocks) - 1)


def test_the_strength_grid_stops_at_the_first_worse_validation_auc():
    result, _ = _fit({"pairs": [["a", "b"]], "C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]})
    # 0.001 is far too strong for 40 k rows: the search climbs, then stops at the first strength that does worse.
    grid, tried, chosen = result.params["C"], result.params["C_tried"], result.params["C_chosen"]
    assert 0.001 < chosen < 100.0 and tried == grid[: grid.index(chosen) + 2]


def test_scoring_gathers_the_weights_the_design_matrix_would_multiply():
    # predict sums each block's weight of the row's key (no sparse matrix: 4.2 M rows took 17.8 s through it); the
    # fit's design matrix times the weights must give the same logits to the bit, unseen values and crosses included.
    from scipy.special import expit

    fitted, (x, _) = _fit({"pairs": [["a", "b"], ["item", "x"]]})
    model = fitted.booster
    x = x.copy()
    x[:50, 2] = 10_000  # an item no train row had
    x[50:60, 0] = 7  # a value of `a` no train row had: a and its cross with b set no weight
    through_matrix = expit(model.design(x) @ model.coef + model.intercept)
    assert np.array_equal(Wide().predict(model, x), through_matrix)
    assert model.design(x[:60]).sum(axis=1).min() < len(model.blocks)  # the unseen keys did set no column


def test_the_design_built_as_csr_is_the_coordinate_form_entry_for_entry():
    # design() writes the CSR arrays itself; the coordinate form (row, column, 1) it replaced must give the same matrix,
    # in canonical form (sorted columns, no duplicates), unseen keys setting no entry.
    import scipy.sparse as sp

    fitted, (x, _) = _fit({"pairs": [["a", "b"], ["item", "x"]]})
    model = fitted.booster
    x = x.copy()
    x[:50, 2] = 10_000
    x[50:60, 0] = 7
    rows, cols = [], []
    for column, seen in model.columns(x):
        rows.append(np.flatnonzero(seen))
        cols.append(column[seen])
    r, c = np.concatenate(rows), np.concatenate(cols)
    expected = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(x), sum(len(v) for v in model.vocab)))
    built = model.design(x)
    assert built.has_canonical_format and built.shape == expected.shape and built.dtype == np.float64
    assert np.array_equal(built.indptr, expected.indptr) and np.array_equal(built.indices, expected.indices)
    assert np.array_equal(built.data, expected.data) and built.nnz < len(x) * len(model.blocks)
