import numpy as np
import pytest
import torch

from common.errors import UserError
from common.featuremap import FeatureMap, FieldSpec
from models.data import InMemoryData, _take_list
from models.embedding import EmbeddingConfig
from models.registry import MODELS, build_model
from models.trainer import TrainConfig, evaluate, fit, resolve_device


def _xor_data(rows: int, seed: int):
    """Two uniform 4-value fields whose label depends only on their product of signs, plus a noise field."""
    rng = np.random.default_rng(seed)
    a, b, noise = rng.integers(0, 4, rows), rng.integers(0, 4, rows), rng.integers(0, 50, rows)
    sign = np.array([1, -1, 1, -1])
    logit = 1.5 * sign[a] * sign[b]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return {"a": a + 3, "b": b + 3, "noise": noise + 3}, y


FM_XOR = FeatureMap(
    label="y", fields=tuple(FieldSpec(name=n, kind="categorical", column=n, vocab_size=v) for n, v in (("a", 7), ("b", 7), ("noise", 53)))
)


def _split(rows=12_000):
    cols, y = _xor_data(rows, 0)
    cut = int(rows * 0.8)
    return (
        InMemoryData({k: v[:cut] for k, v in cols.items()}, y[:cut], FM_XOR, False),
        InMemoryData({k: v[cut:] for k, v in cols.items()}, y[cut:], FM_XOR, False),
    )


def _train(name, params=None, epochs=8):
    torch.manual_seed(0)
    train, valid = _split()
    model = build_model(name, FM_XOR, EmbeddingConfig(dim=4, init_std=0.1), params)
    result = fit(model, train, valid, TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=epochs, patience=2))
    return model, result, valid


def test_lr_cannot_learn_a_pure_interaction_but_fm_can():
    _, lr, _ = _train("lr")
    _, fm, _ = _train("fm")
    assert lr.best_valid_auc < 0.55
    assert fm.best_valid_auc > 0.7


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("deepfm", {"hidden": [32, 32]}),
        ("autoint", {"layers": 2, "heads": 2, "attention_dim": 16}),
        ("autoint+", {"layers": 1, "attention_dim": 8, "heads": 2, "dnn_hidden": [16]}),
    ],
)
def test_deep_models_learn_the_interaction(name, params):
    _, result, _ = _train(name, params)
    assert result.best_valid_auc > 0.7, result.history


def test_best_epoch_weights_are_restored_and_lr_decays():
    model, result, valid = _train("fm", epochs=30)
    auc, _ = evaluate(model, valid, 4096, torch.device("cpu"))
    assert auc == pytest.approx(result.best_valid_auc, abs=1e-9)
    assert len(result.history) < 30  # early stopping
    decayed = [r.learning_rate for r in result.history]
    assert decayed[-1] < decayed[0]


def test_registry_errors():
    with pytest.raises(UserError, match="unknown model"):
        build_model("xgboost", FM_XOR, EmbeddingConfig())
    with pytest.raises(UserError, match="unknown setting"):
        build_model("autoint", FM_XOR, EmbeddingConfig(), {"depth": 3})
    assert set(MODELS) == {"lr", "fm", "deepfm", "autoint", "autoint+", "unified"}
    with pytest.raises(UserError, match="unified embedding: budget"):
        build_model("unified", FM_XOR, EmbeddingConfig(dim=4), {"budget": 2})


def test_empty_validation_and_missing_gpu_are_user_errors():
    train, _ = _split(1000)
    empty = InMemoryData({k: v[:0] for k, v in train.columns.items()}, train.label[:0], FM_XOR, False)
    with pytest.raises(UserError, match="validation split is empty"):
        fit(build_model("lr", FM_XOR, EmbeddingConfig()), train, empty, TrainConfig(max_epochs=1))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_take_list_gathers_rows_of_a_list_column():
    flat = np.array([10, 11, 20, 30, 31, 32])
    offsets = np.array([0, 2, 3, 6])
    got_flat, got_offsets = _take_list((flat, offsets), np.array([2, 0]))
    assert got_flat.tolist() == [30, 31, 32, 10, 11] and got_offsets.tolist() == [0, 3, 5]


def test_unified_embedding_learns_with_shared_tables():
    # 67 ids over three fields share 2 tables of 16 rows x 2 columns: a quarter-size budget.
    _, result, _ = _train("unified", {"budget": 64, "tables": 2, "chunks": 2, "layers": 1, "heads": 1, "attention_dim": 8})
    assert result.best_valid_auc > 0.7
