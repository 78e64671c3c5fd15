import numpy as np
import pytest
import torch

from featuremap import FeatureMap, FieldSpec
from models.batching import make_batch
from models.embedding import EmbeddingConfig, FeatureEmbedding

FM = FeatureMap(
    label="y",
    fields=(
        FieldSpec(name="user", kind="categorical", column="user", vocab_size=50),
        FieldSpec(name="price", kind="numeric", column="price", vocab_size=19, value_column="price__num"),
        FieldSpec(name="tags", kind="multi", column="tags", vocab_size=12, set_column="tags__set", set_vocab_size=30),
    ),
)


def _columns(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 4, rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return {
        "user": rng.integers(1, 50, rows).astype(np.int32),
        "price": rng.integers(2, 19, rows).astype(np.int32),
        "price__num": rng.normal(size=rows).astype(np.float32),
        "tags": (rng.integers(1, 12, offsets[-1]).astype(np.int32), offsets),
    }, (rng.random(rows) < 0.3).astype(np.int8)


def test_batch_layout_is_field_major():
    cols, y = _columns(5)
    batch = make_batch(cols, y, FM)
    assert batch.keys == ["user", "price", "tags"] and batch.rows == 5
    assert batch.lengths.tolist()[:10] == [1] * 10
    assert batch.lengths[10:].sum().item() == len(cols["tags"][0])
    assert batch.values[:5].tolist() == cols["user"].tolist() and batch.dense.shape == (5, 0)
    as_value = make_batch(cols, y, FM, numeric_as_value=True)
    assert as_value.keys == ["user", "tags"] and torch.equal(as_value.dense[:, 0], torch.from_numpy(cols["price__num"]))
    both = make_batch(cols, y, FM, numeric_as_value="both")  # the bucket id among the ids and the value beside them
    assert both.keys == batch.keys and torch.equal(both.values, batch.values) and torch.equal(both.dense, as_value.dense)


@pytest.mark.parametrize("numeric_as_value", [False, True, "both"])
def test_torch_and_torchrec_backends_compute_the_same(numeric_as_value):
    cols, y = _columns(64)
    batch = make_batch(cols, y, FM, numeric_as_value=numeric_as_value)
    plain = FeatureEmbedding(FM, EmbeddingConfig(dim=8, backend="torch", numeric_as_value=numeric_as_value, init_std=0.1))
    rec = FeatureEmbedding(FM, EmbeddingConfig(dim=8, backend="torchrec", numeric_as_value=numeric_as_value))
    rec.copy_weights_from(plain)
    a, b = plain(batch), rec(batch)
    assert a.shape == (64, 4 if numeric_as_value == "both" else 3, 8)
    torch.testing.assert_close(a, b)
    # multi-valued rows are the mean of their ids' rows
    table = plain.table_weights()["tags"]
    ids, offsets = cols["tags"]
    expected = table[torch.from_numpy(ids[offsets[0] : offsets[1]]).long()].mean(dim=0)
    torch.testing.assert_close(a[0, {False: 2, True: 1, "both": 2}[numeric_as_value]], expected)


def test_padding_row_is_zero_and_numeric_values_scale_a_vector():
    emb = FeatureEmbedding(FM, EmbeddingConfig(dim=4, numeric_as_value=True, init_std=0.5))
    assert torch.count_nonzero(emb.table_weights()["user"][0]) == 0
    cols, y = _columns(3)
    out = emb(make_batch(cols, y, FM, numeric_as_value=True))
    torch.testing.assert_close(out[:, 2], torch.from_numpy(cols["price__num"])[:, None] * emb.field_vectors[0])
    loss = out.sum()
    loss.backward()
    assert emb.table_weights()["user"].grad is not None


def test_both_embeds_a_numeric_field_by_its_bucket_and_by_its_value():
    emb = FeatureEmbedding(FM, EmbeddingConfig(dim=4, numeric_as_value="both", init_std=0.5))
    assert emb.num_fields == 4 and emb.keys == ["user", "price", "tags"]
    cols, y = _columns(3)
    out = emb(make_batch(cols, y, FM, numeric_as_value="both"))
    bucket_rows = emb.table_weights()["price"][torch.from_numpy(cols["price"]).long()]
    torch.testing.assert_close(out[:, 1], bucket_rows)  # the bucket id's row, in feature-map order
    torch.testing.assert_close(out[:, 3], torch.from_numpy(cols["price__num"])[:, None] * emb.field_vectors[0])  # then the value


def test_mismatched_batch_is_rejected():
    cols, y = _columns(3)
    emb = FeatureEmbedding(FM, EmbeddingConfig(dim=4))
    with pytest.raises(ValueError, match="do not match"):
        emb(make_batch(cols, y, FM, numeric_as_value=True))


def test_multiplexed_tables_budget_hashing_and_round_robin():
    from models.unified import SharedLayout

    cfg = EmbeddingConfig(dim=8, shared=SharedLayout(budget=3 * 100 * 4, tables=3, chunks=2), init_std=0.1)
    emb = FeatureEmbedding(FM, cfg)
    tables = emb.table_weights()
    assert len(tables) == 3 and all(w.shape == (100, 4) for w in tables.values())
    assert sum(w.numel() for w in tables.values()) == 1200
    assert emb.bags.assignment == [[0, 1], [2, 0], [1, 2]]  # chunks spread round-robin over the tables
    cols, y = _columns(32)
    out = emb(make_batch(cols, y, FM))
    assert out.shape == (32, 3, 8)
    # the same id in two fields hashes to different rows (salted per field and chunk)
    ids = torch.arange(3, 50)
    a0, b0 = emb.bags.salts[0, 0]
    a1, b1 = emb.bags.salts[1, 1]
    assert not torch.equal(((ids * a0 + b0) % (2**31 - 1)) % 100, ((ids * a1 + b1) % (2**31 - 1)) % 100)
    with pytest.raises(ValueError, match="divisible"):
        FeatureEmbedding(FM, EmbeddingConfig(dim=9, shared=SharedLayout(budget=1000, chunks=2)))


@pytest.mark.parametrize("backend", ["torch", "torchrec"])
def test_field_vectors_come_out_of_the_budget_and_tell_fields_apart(backend):
    from models.unified import SharedLayout

    fields, dim = 3, 8  # FM's three sparse-embedded fields
    multiplex = SharedLayout(budget=fields * dim + 2 * 50 * 4, tables=2, chunks=2, field_vectors=True)
    emb = FeatureEmbedding(FM, EmbeddingConfig(dim=dim, backend=backend, shared=multiplex, init_std=0.1))
    weights = emb.table_weights()
    # the field vectors are part of the budget (and of the regulariser's target), so the shared tables shrink
    assert weights["field_vectors"].shape == (fields, dim)
    assert all(w.shape == (50, 4) for name, w in weights.items() if name != "field_vectors")
    assert sum(w.numel() for w in weights.values()) == multiplex.budget
    # Make every (feature, chunk) hash land on the same row: without field vectors every field's embedding is the
    # same vector; with them each field's is that vector plus its own field vector.
    emb.bags.salts[..., 0] = 1
    emb.bags.salts[..., 1] = 0
    cols, y = _columns(16)
    for column in ("user", "price"):
        cols[column] = np.full(16, 7, dtype=np.int32)
    cols["price__num"] = np.ones(16, dtype=np.float32)
    cols["tags"] = (np.full(16, 7, dtype=np.int32), np.arange(17))
    batch = make_batch(cols, y, FM)
    with torch.no_grad():
        vectors = weights["field_vectors"].clone()
        weights["field_vectors"].zero_()
        same = emb(batch)
        weights["field_vectors"].copy_(vectors)
        out = emb(batch)
    torch.testing.assert_close(same[:, 0], same[:, 1])
    torch.testing.assert_close(same[:, 0], same[:, 2])
    for field in range(fields):
        torch.testing.assert_close(out[:, field], same[:, field] + vectors[field])


def test_multiplexed_tables_are_the_same_on_torchrec_and_torch():
    from models.unified import SharedLayout

    multiplex = SharedLayout(budget=2 * 50 * 4, tables=2, chunks=2, seed=3)
    plain = FeatureEmbedding(FM, EmbeddingConfig(dim=8, backend="torch", shared=multiplex, init_std=0.1))
    rec = FeatureEmbedding(FM, EmbeddingConfig(dim=8, backend="torchrec", shared=multiplex, init_std=0.1))
    assert set(rec.table_weights()) == {"shared_0", "shared_1"}
    rec.copy_weights_from(plain)
    cols, y = _columns(64)
    batch = make_batch(cols, y, FM)
    torch.testing.assert_close(rec(batch), plain(batch))
    # One table serves several (feature, chunk) keys, named so that chunk 10 never sorts before chunk 2.
    config = rec.bags.collection.embedding_bag_configs()[0]
    assert config.feature_names == ["user@0", "price@0", "tags@0"] and rec.bags.key(0, 10) == "user@10"


@pytest.mark.parametrize("backend", ["torch", "torchrec"])
def test_per_feature_chunk_counts_fill_the_front_and_keep_the_budget(backend):
    from models.unified import SharedLayout

    multiplex = SharedLayout(budget=2 * 60 * 2, tables=2, chunks=4, feature_chunks=(4, 1, 2), seed=5)
    emb = FeatureEmbedding(FM, EmbeddingConfig(dim=8, backend=backend, shared=multiplex, init_std=0.1))
    assert sum(w.numel() for w in emb.table_weights().values()) == multiplex.budget  # counts do not change the tables
    # the 7 (feature, chunk) lookups, in feature then chunk order, go round-robin over the 2 tables
    assert emb.bags.assignment == [[0, 1, 0, 1], [0], [1, 0]]
    cols, y = _columns(40)
    out = emb(make_batch(cols, y, FM))
    assert out.shape == (40, 3, 8)
    # user: all 4 chunks; price: 1 chunk (2 entries) then zeros; tags: 2 chunks (4 entries) then zeros
    assert (out[:, 0] != 0).all()
    assert (out[:, 1, :2] != 0).all() and (out[:, 1, 2:] == 0).all()
    assert (out[:, 2, :4] != 0).all() and (out[:, 2, 4:] == 0).all()
    for bad in ((4, 0, 2), (5, 1, 1), (4, 1)):
        with pytest.raises(ValueError, match="feature_chunks"):
            FeatureEmbedding(FM, EmbeddingConfig(dim=8, shared=SharedLayout(budget=1000, chunks=4, feature_chunks=bad)))


def test_chunk_count_rules():
    from models.unified import chunks_by_cardinality, chunks_by_rank

    # rank 1 gets every chunk and the last rank one, linearly in between
    assert chunks_by_rank({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}, 4) == {"a": 4, "b": 3, "c": 3, "d": 2, "e": 1}
    assert chunks_by_rank({"a": 1, "b": 2}, 1) == {"a": 1, "b": 1} and chunks_by_rank({"a": 1}, 3) == {"a": 3}
    # the largest vocabulary gets every chunk; a 2-value field one
    assert chunks_by_cardinality({"item": 4096, "user": 64, "flag": 2}, 4) == {"item": 4, "user": 2, "flag": 1}


def test_piecewise_linear_encoding_of_numeric_values():
    emb = FeatureEmbedding(FM, EmbeddingConfig(dim=3, numeric_as_value=True, piecewise_bins=4, init_std=0.5))
    assert emb.field_vectors.numel() == 0 and emb.piecewise_weight.shape == (1, 4, 3)
    # Edges from the train values' quantiles: 0, 1, 2, 3, 4 for values spread evenly over [0, 4].
    emb.fit_piecewise({"price__num": np.linspace(0.0, 4.0, 401)})
    torch.testing.assert_close(emb.piecewise_edges[0], torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))
    emb.fit_piecewise({"price__num": np.linspace(10.0, 20.0, 11)})  # fitted once: later calls keep the edges
    assert emb.piecewise_edges[0, -1].item() == 4.0
    cols, y = _columns(4)
    cols["price__num"] = np.array([-3.0, 0.5, 2.25, 9.0], dtype=np.float32)
    out = emb(make_batch(cols, y, FM, numeric_as_value=True))[:, 2]  # sparse fields first, then the dense one
    # 1 for each bin wholly below the value, the position inside the bin it falls in, 0 above; clamped to the train range.
    encoded = torch.tensor([[0, 0, 0, 0], [0.5, 0, 0, 0], [1, 1, 0.25, 0], [1, 1, 1, 1]], dtype=torch.float32)
    torch.testing.assert_close(out, encoded @ emb.piecewise_weight[0] + emb.piecewise_bias[0])
    out.sum().backward()
    assert emb.piecewise_weight.grad is not None


def test_embeddings_without_the_encoding_keep_their_weight_keys():
    # packages saved before the encoding existed load into today's modules
    keys = set(FeatureEmbedding(FM, EmbeddingConfig(dim=4, numeric_as_value=True)).state_dict())
    assert not any("piecewise" in k for k in keys) and "field_vectors" in keys


def test_piecewise_edges_travel_with_the_weights_and_between_backends():
    config = EmbeddingConfig(dim=4, numeric_as_value=True, piecewise_bins=8, init_std=0.1)
    trained = FeatureEmbedding(FM, config)
    cols, y = _columns(200)
    trained.fit_piecewise(cols)
    loaded = FeatureEmbedding(FM, config)  # as predict builds it: unfitted, then the saved state
    loaded.load_state_dict(trained.state_dict())
    assert bool(loaded.piecewise_fitted) and torch.equal(loaded.piecewise_edges, trained.piecewise_edges)
    loaded.fit_piecewise({"price__num": np.zeros(10)})
    batch = make_batch(cols, y, FM, numeric_as_value=True)
    torch.testing.assert_close(loaded(batch), trained(batch))
    rec = FeatureEmbedding(FM, EmbeddingConfig(dim=4, backend="torchrec", numeric_as_value=True, piecewise_bins=8))
    rec.copy_weights_from(trained)
    torch.testing.assert_close(rec(batch), trained(batch))
