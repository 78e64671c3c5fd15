"""DCN-V2: the cross layer's formula, the polynomial degree the paper claims for L layers, the structures, the
low-rank mixture, and learning an interaction with or without an MLP."""

import numpy as np
import pytest
import torch

from featuremap import FeatureMap, FieldSpec
from featuremap.errors import InputError
from models.dcnv2 import CrossNetMix, CrossNetV2, DCNv2, DCNv2Config
from models.embedding import EmbeddingConfig
from models.registry import build_model
from tests.models.test_models import FM_XOR, _train


def _random_crossnet(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    return net.double()


def test_cross_layer_is_the_papers_formula():
    net = _random_crossnet(CrossNetV2(6, 2))
    x0 = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = x0
    for layer in net.layers:  # x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, written out
        x = x0 * (x @ layer.weight.T + layer.bias) + x
    torch.testing.assert_close(net(x0), x)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_l_cross_layers_give_a_polynomial_of_degree_l_plus_one(layers):
    # f(t) = crossnet(t * x0) along a ray: its (L + 2)-th finite difference vanishes (degree <= L + 1) and its
    # (L + 1)-th does not (degree exactly L + 1 for generic weights): the paper's bounded-degree claim.
    net = _random_crossnet(CrossNetV2(4, layers), seed=layers)
    x0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        values = torch.stack([net(t * x0) for t in torch.arange(layers + 3, dtype=torch.float64)]).numpy()  # [points, rows, dim]
    top = np.diff(values, n=layers + 2, axis=0)
    below = np.diff(values, n=layers + 1, axis=0)
    assert np.abs(top).max() < 1e-8 * np.abs(values).max()
    assert np.abs(below).max() > 1e-3


def test_low_rank_mixture_is_the_papers_formula():
    net = _random_crossnet(CrossNetMix(6, 2, rank=3, experts=2), seed=4)
    x0 = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = x0
    for v, c, u, b in zip(net.v, net.c, net.u, net.bias, strict=True):
        outs, logits = [], []
        for i, gate in enumerate(net.gates):
            inner = torch.tanh(torch.tanh(x @ v[i]) @ c[i])
            outs.append(x0 * (inner @ u[i] + b))
            logits.append(gate(x))
        weights = torch.softmax(torch.cat(logits, dim=1), dim=1)
        x = sum(weights[:, i : i + 1] * outs[i] for i in range(len(outs))) + x
    torch.testing.assert_close(net(x0), x)


@pytest.mark.parametrize(
    "params",
    [
        {"structure": "crossnet_only", "cross_layers": 2, "hidden": []},
        {"structure": "parallel", "cross_layers": 1, "hidden": [16]},
        {"structure": "stacked", "cross_layers": 1, "hidden": [16]},
        {"structure": "parallel", "cross_layers": 2, "low_rank": 4, "experts": 2, "hidden": [16]},
    ],
)
def test_dcnv2_learns_the_interaction(params):
    # The label is a product of two fields' signs: LR cannot learn it (test_models), one cross layer can.
    _, result, _ = _train("dcnv2", params)
    assert result.best_valid_auc > 0.7, result.history


def test_structures_read_what_the_paper_says():
    fmap = FeatureMap(label="y", fields=tuple(FieldSpec(name=n, kind="categorical", column=n, vocab_size=9) for n in "abc"))
    emb = EmbeddingConfig(dim=4)
    parallel = build_model("dcnv2", fmap, emb, {"hidden": [8, 5]})
    assert parallel.fc.in_features == 12 + 5  # the cross network's 3 x 4 outputs beside the MLP's last layer
    stacked = build_model("dcnv2", fmap, emb, {"structure": "stacked", "hidden": [8, 5]})
    assert stacked.fc.in_features == 5 and stacked.dnn[0].in_features == 12
    alone = build_model("dcnv2", fmap, emb, {"structure": "crossnet_only", "hidden": []})
    assert alone.dnn is None and alone.fc.in_features == 12
    assert isinstance(DCNv2(fmap, emb).crossnet, CrossNetV2)
    assert isinstance(build_model("dcnv2", fmap, emb, {"low_rank": 2}).crossnet, CrossNetMix)


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="structure 'wide'"):
        DCNv2Config(structure="wide")
    with pytest.raises(ValueError, match="needs hidden layers"):
        DCNv2Config(structure="stacked", hidden=[])
    with pytest.raises(ValueError, match="at least 1"):
        DCNv2Config(cross_layers=0)
    with pytest.raises(InputError, match="unknown setting"):
        build_model("dcnv2", FM_XOR, EmbeddingConfig(), {"num_cross_layers": 3})
    with pytest.raises(InputError, match="model settings: structure: Input should be"):  # one line from the CLI, no traceback
        build_model("dcnv2", FM_XOR, EmbeddingConfig(), {"structure": "wide"})
    with pytest.raises(InputError, match="needs hidden layers"):
        build_model("dcnv2", FM_XOR, EmbeddingConfig(), {"structure": "stacked", "hidden": []})


def test_dcnv2_over_unified_embedding_has_only_the_budget():
    from models.unified import SharedLayout

    model, result, _ = _train("dcnv2", {"hidden": [16], "cross_layers": 1}, shared=SharedLayout(budget=64, tables=2, chunks=2))
    assert result.best_valid_auc > 0.7
    assert sum(w.numel() for w in model.embedding_tables()) == 64  # no first-order table beside the shared ones


def test_each_experts_matrix_is_xavier_initialised_on_its_own_fans():
    torch.manual_seed(0)
    net = CrossNetMix(400, 1, rank=32, experts=4)
    for matrices, (fan_a, fan_b) in ((net.v[0], (400, 32)), (net.c[0], (32, 32)), (net.u[0], (32, 400))):
        expected = (2 / (fan_a + fan_b)) ** 0.5
        for expert in matrices:
            assert expert.std().item() == pytest.approx(expected, rel=0.1)
