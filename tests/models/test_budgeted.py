"""The baselines of the Unified Embedding sweep: the hashing trick and frequency-capped vocabularies (models/budgeted.py)."""

import numpy as np
import pytest
import torch

from featuremap import FIRST_VALUE_ID, OOV_ID
from models.batching import make_batch
from models.budgeted import PerFieldLayout, capped_rows, hashed_rows
from models.embedding import EmbeddingConfig, FeatureEmbedding
from tests.models.test_embedding import FM, _columns


def test_water_filling_keeps_small_fields_whole_and_splits_the_rest_evenly():
    assert hashed_rows([5, 100, 1000, 1000], 305) == (5, 100, 100, 100)
    assert hashed_rows([5, 100, 1000], 305) == (5, 100, 200)  # 100 fits under the level: the big field takes the rest
    assert hashed_rows([5, 1000, 1000], 306) == (5, 151, 150)  # the row left from rounding goes to a cut field
    rows = hashed_rows([7, 40, 40, 900, 5000], 301)
    assert sum(rows) == 301 and rows[0] == 7 and rows[3] - rows[4] in (0, -1) and max(rows[1:3]) == 40
    assert hashed_rows([5, 100], 10_000) == (5, 100)  # room for everything: nothing hashed
    with pytest.raises(ValueError, match="cannot give each of 3 fields a row"):
        hashed_rows([5, 100, 1000], 2)


def test_the_cap_keeps_the_globally_most_frequent_values_as_a_min_count_would():
    rng = np.random.default_rng(0)
    counts = []
    for size in (50, 400, 3000):  # ids numbered most frequent first, as the encoder numbers them
        values = np.sort(rng.zipf(1.6, size))[::-1]
        counts.append(np.concatenate([[0, rng.integers(0, 9), rng.integers(0, 9)], values]))
    vocab = [c.size for c in counts]
    for min_count in (2, 3, 5, 20):
        kept = [int((c[FIRST_VALUE_ID:] >= min_count).sum()) for c in counts]
        rows, chosen = capped_rows(vocab, counts, sum(kept) + FIRST_VALUE_ID * 3)
        assert rows == tuple(FIRST_VALUE_ID + k for k in kept)  # exactly what min_count at ingest would have kept
        assert chosen >= min_count and all((c[FIRST_VALUE_ID:r] >= chosen).all() for c, r in zip(counts, rows, strict=True))
    # a budget between two counts splits the tie by field then id, and fills the budget exactly
    rows, _ = capped_rows(vocab, counts, 700)
    assert sum(rows) == 700
    # a field left whole (quantile bins) keeps every row; enough room keeps everything, min count 0
    rows, _ = capped_rows([*vocab, 12], [*counts, None], 300)
    assert rows[-1] == 12 and sum(rows) == 300
    assert capped_rows(vocab, counts, sum(vocab)) == (tuple(vocab), 0)
    with pytest.raises(ValueError, match="cannot hold"):
        capped_rows(vocab, counts, 5)


@pytest.mark.parametrize("backend", ["torch", "torchrec"])
def test_hashed_tables_keep_collisions_inside_a_field_and_small_fields_unhashed(backend):
    cols, y = _columns(256)
    batch = make_batch(cols, y, FM)
    layout = PerFieldLayout("hash", rows=(10, 19, 5), vocab=(50, 19, 12), seed=3)
    emb = FeatureEmbedding(FM, EmbeddingConfig(dim=4, backend=backend, shared=layout, init_std=0.5))
    weights = emb.table_weights()
    assert [tuple(w.shape) for w in weights.values()] == [(10, 4), (19, 4), (5, 4)]
    out = emb(batch)
    tables = emb.bags
    users = torch.from_numpy(cols["user"]).long()
    rows = tables.remap(0, users)
    assert rows.min() >= 0 and rows.max() < 10 and len(set(rows.tolist())) > 5
    torch.testing.assert_close(out[:, 0], weights["user"][rows])  # a user's vector is its hashed row of its own table
    price = torch.from_numpy(cols["price"]).long()
    torch.testing.assert_close(out[:, 1], weights["price"][price])  # a table as large as the field: ids kept as they are
    # another seed hashes differently
    other = PerFieldLayout("hash", rows=(10, 19, 5), vocab=(50, 19, 12), seed=4).tables_for(["user", "price", "tags"], 4, "mean", "torch")
    assert not torch.equal(other.remap(0, users), rows)


def test_capped_tables_send_rare_ids_to_the_out_of_vocabulary_row():
    cols, y = _columns(256)
    batch = make_batch(cols, y, FM)
    layout = PerFieldLayout("cap", rows=(20, 19, 6), vocab=(50, 19, 12))
    emb = FeatureEmbedding(FM, EmbeddingConfig(dim=4, backend="torch", shared=layout, init_std=0.5))
    out, table = emb(batch), emb.table_weights()["user"]
    users = torch.from_numpy(cols["user"]).long()
    expected = table[torch.where(users < 20, users, torch.full_like(users, OOV_ID))]
    torch.testing.assert_close(out[:, 0], expected)
    assert (users >= 20).any() and (users < 20).any()


@pytest.mark.parametrize("rule", ["hash", "cap"])
def test_budgeted_models_count_their_parameters_and_train(rule):
    from tests.models.test_models import _train

    layout = PerFieldLayout(rule, rows=(7, 7, 20), vocab=(7, 7, 53), seed=1)
    model, result, _ = _train("deepfm", {"hidden": [16]}, shared=layout)
    assert sum(w.numel() for w in model.embedding_tables()) == 34 * 4 + 34  # the tables and the first-order weights
    assert result.best_valid_auc > 0.8  # the sign product of a and b is learnt (Bayes AUC 0.818): cutting the noise field costs nothing
