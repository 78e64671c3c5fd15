from dataclasses import replace

import numpy as np
import pytest
import torch

from featuremap import FeatureMap, FieldSpec
from features.crosses import cross_vocabulary
from methods.optinter import OptInterSettings
from models.batching import make_batch
from models.data import InMemoryData
from models.embedding import EmbeddingConfig
from models.optinter import OptInter, OptInterConfig
from models.search.optinter import build_optinter, optinter
from models.trainer import TrainConfig, fit

FIELDS = {"a": 4, "b": 4, "c": 5, "d": 5}
FM = FeatureMap(label="y", fields=tuple(FieldSpec(name=n, kind="categorical", column=n, vocab_size=v + 3) for n, v in FIELDS.items()))


def _data(rows: int, seed: int):
    """Label from an XOR-like interaction of a and b; c and d are noise."""
    rng = np.random.default_rng(seed)
    cols = {n: rng.integers(0, v, rows) for n, v in FIELDS.items()}
    sign = np.array([1, -1, 1, -1])
    logit = 2.0 * sign[cols["a"]] * sign[cols["b"]]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return {n: c + 3 for n, c in cols.items()}, y


def test_cross_vocabulary_and_lookup_with_per_pair_oov():
    a, b = np.array([3, 3, 4, 5, 3]), np.array([4, 4, 4, 6, 4])
    keys = cross_vocabulary(a, b, 7, min_count=2)
    assert keys.tolist() == [3 * 7 + 4]  # only (3, 4) is seen twice
    model = OptInter(FM, EmbeddingConfig(dim=4), OptInterConfig(pairs=[("a", "b")], modes=["memorise"], cross_sizes=[1], hidden=[4]))
    model.set_cross_keys([torch.from_numpy(keys)])
    cols = {"a": np.array([3, 4]), "b": np.array([4, 4]), "c": np.array([3, 3]), "d": np.array([3, 3])}
    batch = make_batch(cols, np.zeros(2), FM)
    table = model.tables["0"].weight
    with torch.no_grad():
        table[0].fill_(0.0)
        table[1].fill_(1.0)
    captured = {}
    model.mlp.register_forward_hook(lambda m, i, o: captured.setdefault("x", i[0]))
    model(batch)
    x = captured["x"][:, -4:]
    assert torch.equal(x[0], torch.ones(4)) and torch.equal(x[1], torch.zeros(4))  # known cross, then the pair's OOV row
    assert model.memorised_rows() == 2


def test_regulariser_pulls_field_embeddings_and_cross_tables_not_the_factor_table():
    model = OptInter(FM, EmbeddingConfig(dim=4), OptInterConfig(pairs=[("a", "b")], modes=["search"], cross_sizes=[3], hidden=[4]))
    regularized = {id(w) for w in model.regularized_tables()}
    assert regularized == {id(w) for w in model.embedding.table_weights().values()} | {id(model.tables["0"].weight)}
    assert not regularized & {id(w) for w in model.factors.table_weights().values()}
    # the parameter count still counts every embedding table, the factors' included
    assert len(model.embedding_tables()) == 2 * len(FIELDS)


def test_factor_regulariser_is_its_own_l2_on_the_factor_table_and_the_trainer_applies_it():
    config = OptInterConfig(pairs=[("a", "b")], modes=["factorise"], cross_sizes=[0], hidden=[4])
    assert OptInter(FM, EmbeddingConfig(dim=4), config).penalty() == 0.0  # off by default
    model = OptInter(FM, EmbeddingConfig(dim=4, init_std=0.1), replace(config, factor_regularizer=0.5))
    factors = list(model.factors.table_weights().values())
    assert torch.allclose(model.penalty(), 0.25 * sum(w.pow(2).sum() for w in factors))
    cols, y = _data(1_024, 2)
    data = InMemoryData(cols, y, FM, False)
    before = sum(w.detach().norm() for w in factors)
    fit(model, data, data, TrainConfig(learning_rate=0.01, batch_size=256, max_epochs=2, precision="fp32"))
    # with the gradient of a 0.5 L2 the factor table shrinks; unregularised, it grows from its small initialisation
    unregularised = OptInter(FM, EmbeddingConfig(dim=4, init_std=0.1), config)
    start = sum(w.detach().norm() for w in unregularised.factors.table_weights().values())
    fit(unregularised, data, data, TrainConfig(learning_rate=0.01, batch_size=256, max_epochs=2, precision="fp32"))
    assert sum(w.detach().norm() for w in factors) < before
    assert sum(w.detach().norm() for w in unregularised.factors.table_weights().values()) > start
    assert OptInterSettings(factor_regularizer=0.5).mlp()["factor_regularizer"] == 0.5  # search and retrain build with it


@pytest.mark.parametrize("arch_split", ["train", "valid"])
def test_search_memorises_or_factorises_the_interacting_pair_and_beats_uniform_modes(arch_split):
    cols, y = _data(16_000, 0)
    cut = 12_800
    train = InMemoryData({k: v[:cut] for k, v in cols.items()}, y[:cut], FM, False)
    valid = InMemoryData({k: v[cut:] for k, v in cols.items()}, y[cut:], FM, False)
    pairs = [("a", "b"), ("c", "d"), ("a", "c")]
    keys = [cross_vocabulary(cols[p][:cut], cols[q][:cut], FM.fields[list(FIELDS).index(q)].vocab_size, 5) for p, q in pairs]
    config = TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=6, precision="fp32")
    settings = OptInterSettings(search_epochs=3, arch_lr=0.05, hidden=[16], compare=True, arch_split=arch_split)
    result = optinter(FM, EmbeddingConfig(dim=4, init_std=0.1), pairs, keys, train, valid, config, settings)
    assert result.modes[0] in ("memorise", "factorise"), result.weights
    assert result.modes[1] == "naive" or result.weights[1].max() < 0.5, result.weights
    assert result.retrain.best_valid_auc >= max(result.uniform.values()) - 0.005, (result.retrain.best_valid_auc, result.uniform)
    assert set(result.uniform) == {"memorise", "factorise", "naive"}


@pytest.mark.parametrize("arch_split", ["train", "valid"])
def test_alpha_waits_for_the_warm_up(arch_split):
    cols, y = _data(4_096, 1)
    train = InMemoryData({k: v[:3_072] for k, v in cols.items()}, y[:3_072], FM, False)
    valid = InMemoryData({k: v[3_072:] for k, v in cols.items()}, y[3_072:], FM, False)
    pairs = [("a", "b")]
    keys = [cross_vocabulary(cols["a"][:3_072], cols["b"][:3_072], FM.fields[1].vocab_size, 1)]
    config = TrainConfig(batch_size=512, max_epochs=1, precision="fp32")
    steps = {}
    for epochs, warmup in ((3, 0), (3, 2), (10, 3)):
        settings = OptInterSettings(search_epochs=epochs, warmup_epochs=warmup, hidden=[8], arch_split=arch_split)
        steps[epochs, warmup] = optinter(FM, EmbeddingConfig(dim=4), pairs, keys, train, valid, config, settings).arch_steps
    # 6 batches an epoch; alpha steps only after the warm-up epochs
    assert steps == {(3, 0): 3 * 6, (3, 2): 6, (10, 3): 7 * 6}
    with pytest.raises(ValueError, match="warmup_epochs must be below search_epochs"):
        optinter(
            FM,
            EmbeddingConfig(dim=4),
            pairs,
            keys,
            train,
            valid,
            config,
            OptInterSettings.model_construct(search_epochs=2, warmup_epochs=2),
        )


def test_bad_pairs_are_rejected():
    with pytest.raises(ValueError, match="not a sparse field"):
        build_optinter(FM, EmbeddingConfig(dim=4), [("a", "zz")], ["naive"], [np.zeros(0, dtype=np.int64)], {"hidden": [4]}, 0)
    with pytest.raises(ValueError, match="unknown pair mode"):
        build_optinter(FM, EmbeddingConfig(dim=4), [("a", "b")], ["cache"], [np.zeros(0, dtype=np.int64)], {"hidden": [4]}, 0)
