import pytest
import torch

from methods.dnis import DNISSettings
from models.embedding import EmbeddingConfig
from models.registry import build_model
from models.search.dnis import dnis
from models.trainer import TrainConfig, fit
from models.unified import SharedLayout, shared_model
from tests.models.test_models import FM_XOR, _split


def _model():
    torch.manual_seed(0)
    return build_model("deepfm", FM_XOR, EmbeddingConfig(dim=8, init_std=0.1), {"hidden": [16]})


@pytest.mark.parametrize("rewind", [True, False, "auto"], ids=["rewind", "fine-tune", "auto"])
def test_dnis_halves_embedding_parameters_keeps_auc_and_favours_informative_fields(rewind):
    train, valid = _split()
    config = TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=8, precision="fp32")
    baseline = fit(_model(), train, valid, config)
    model = _model()
    initial = model.embedding.table_weights()["a"].detach().clone()
    settings = DNISSettings(freq_blocks=2, warmup_epochs=1, search_epochs=2, prune_ratio=0.5, rewind=rewind)
    result = dnis(model, train, valid, config, 8, settings)
    # The retrain starts from the initial weights (masked) when rewinding, from the searched ones otherwise.
    start = result.start["embedding.bags.a.weight"]  # field a's rows come first in the mask
    assert torch.equal(start.cpu(), initial * result.mask[: initial.shape[0]].cpu()) == result.rewound  # trained on a GPU if any
    if rewind != "auto":
        assert result.rewound == rewind
    assert result.kept_params == pytest.approx(result.full_params / 2, abs=8)
    assert result.retrain.best_valid_auc >= baseline.best_valid_auc - 0.01, (result.retrain.best_valid_auc, baseline.best_valid_auc)
    mean_dim = {name: dims[3:].float().mean().item() for name, dims in result.dims.items()}
    assert min(mean_dim["a"], mean_dim["b"]) > mean_dim["noise"], mean_dim
    # Pruned entries stay zero through the retrain (the mask is re-applied after every step).
    weights = torch.cat(list(model.embedding.table_weights().values()))
    assert torch.count_nonzero(weights[~result.mask]) == 0


def test_auto_retrains_both_ways_and_keeps_the_better_on_validation():
    train, valid = _split()
    config = TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=4, precision="fp32")
    settings = DNISSettings(freq_blocks=2, warmup_epochs=1, search_epochs=2, prune_ratio=0.5, rewind="auto")
    epochs = []
    result = dnis(_model(), train, valid, config, 8, settings, on_epoch=epochs.append)
    # A study sees the fine-tune retrain's epochs, then the rewind's, numbered on.
    assert [r.epoch for r in epochs] == list(range(1, len(epochs) + 1))
    first = len(dnis(_model(), train, valid, config, 8, settings.model_copy(update={"rewind": False})).retrain.history)
    fine, rewound = epochs[:first], epochs[first:]
    assert fine and rewound
    best = {False: max(r.valid_auc for r in fine), True: max(r.valid_auc for r in rewound)}
    assert result.rewound == (best[True] > best[False]) and result.retrain.best_valid_auc == best[result.rewound]


def test_dnis_rejects_a_bad_ratio_and_shared_tables():
    train, valid = _split(1000)
    with pytest.raises(ValueError, match="prune_ratio"):
        dnis(
            _model(), train, valid, TrainConfig(max_epochs=1), 8, DNISSettings.model_construct(prune_ratio=1.0)
        )  # past the settings' own check
    with pytest.raises(ValueError, match="rewind"):
        dnis(_model(), train, valid, TrainConfig(max_epochs=1), 8, DNISSettings.model_construct(rewind="sometimes"))
    unified = shared_model(
        "autoint", FM_XOR, EmbeddingConfig(dim=8), SharedLayout(budget=64), {"layers": 1, "heads": 1, "attention_dim": 8}
    )
    with pytest.raises(ValueError, match="one table per field"):
        dnis(unified, train, valid, TrainConfig(max_epochs=1), 8, DNISSettings())


def test_the_alpha_step_scores_its_validation_batch_as_the_model_is_scored():
    # In eval mode: no dropout, and the validation rows do not move batch-norm's running statistics. A gradient-enabled
    # forward in eval mode is an alpha step (training steps run in train mode, scoring without gradients).
    train, valid = _split()
    torch.manual_seed(0)
    model = build_model("deepfm", FM_XOR, EmbeddingConfig(dim=8, init_std=0.1), {"hidden": [16], "batch_norm": True, "dropout": 0.2})
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append((module.training, torch.is_grad_enabled())))
    config = TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=2, precision="fp32")
    dnis(model, train, valid, config, 8, DNISSettings(warmup_epochs=0, search_epochs=1, prune_ratio=0.5, rewind=True))
    assert (False, True) in seen  # the alpha steps
    assert seen.count((True, True)) > 0  # the training steps, still in train mode after them
