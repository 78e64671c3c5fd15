import numpy as np
import pytest
import torch

from methods.optfs import OptFSSettings
from models.embedding import EmbeddingConfig, FeatureEmbedding
from models.registry import build_model
from models.search.optfs import ValueGates, attach_value_gates, optfs
from models.trainer import TrainConfig, fit
from models.unified import SharedLayout, shared_model
from tests.models.test_models import FM_XOR, _split


def test_gates_scale_each_value_embedding_on_both_backends():
    from models.batching import make_batch

    cols = {"a": np.array([3, 4, 5]), "b": np.array([3, 3, 6]), "noise": np.array([10, 11, 12])}
    batch = make_batch(cols, np.zeros(3), FM_XOR)
    for backend in ("torch", "torchrec"):
        emb = FeatureEmbedding(FM_XOR, EmbeddingConfig(dim=4, backend=backend, init_std=0.5))
        plain = emb(batch)
        gates = ValueGates([7, 7, 53], init=0.5)
        with torch.no_grad():
            gates.logits[4] = -1.0  # field a, id 4: closed under hard gates
        gates.hard = True
        emb.attach("gates", gates)
        gated = emb(batch)
        scale = 1 / torch.sigmoid(torch.tensor(0.5))
        torch.testing.assert_close(gated[0], plain[0] * scale)
        torch.testing.assert_close(gated[1, 0], torch.zeros(4))  # the closed value
        torch.testing.assert_close(gated[1, 1:], plain[1, 1:] * scale)


def test_optfs_drops_noise_values_and_keeps_the_auc():
    train, valid = _split()
    config = TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=8, precision="fp32")
    torch.manual_seed(0)
    baseline = fit(build_model("deepfm", FM_XOR, EmbeddingConfig(dim=4, init_std=0.1), {"hidden": [16]}), train, valid, config)
    torch.manual_seed(0)
    model = build_model("deepfm", FM_XOR, EmbeddingConfig(dim=4, init_std=0.1), {"hidden": [16]})
    # lambda is large here because this table has 67 values, not millions.
    result = optfs(model, train, valid, config, OptFSSettings(epochs=5, gamma=100.0, l1=3e-3))
    assert result.retrain.best_valid_auc >= baseline.best_valid_auc - 0.01
    noise_kept = result.kept["noise"][3:].float().mean()
    assert result.kept["a"][3:].all() and result.kept["b"][3:].all()  # the interacting fields keep every value
    assert noise_kept < 0.5, result.kept["noise"]
    assert 0 < result.kept_values < result.total_values


def test_default_gate_learning_rate_lets_gates_close_where_the_models_cannot():
    # ~95 search steps. Adam moves a gate by about its learning rate per step, from 0.5: at the model's 1e-3 (the old
    # default, gate_lr null) no gate can close, whatever λ; at the default gate_lr the search closes values.
    train, valid = _split(6_000)
    config = TrainConfig(learning_rate=1e-3, batch_size=256, max_epochs=2, precision="fp32")
    results = {}
    for gate_lr in (None, OptFSSettings().gate_lr):
        torch.manual_seed(0)
        model = build_model("deepfm", FM_XOR, EmbeddingConfig(dim=4, init_std=0.1), {"hidden": [16]})
        results[gate_lr] = optfs(model, train, valid, config, OptFSSettings(gate_lr=gate_lr))
    assert results[None].kept_values == results[None].total_values
    default = results[OptFSSettings().gate_lr]
    assert 0 < default.kept_values < default.total_values
    assert default.kept["b"][3:].all()  # an XOR field keeps its values


def test_gates_refuse_shared_hashed_tables():
    model = shared_model("autoint", FM_XOR, EmbeddingConfig(dim=4), SharedLayout(budget=64), {"layers": 1, "heads": 1, "attention_dim": 4})
    with pytest.raises(ValueError, match="one table per field"):
        attach_value_gates(model, 0.5)
