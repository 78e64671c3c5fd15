import math

import numpy as np
import pytest
import torch

from featuremap import FeatureMap, FieldSpec
from featuremap.errors import InputError
from models import layers, trainer
from models.data import InMemoryData, _take_list
from models.deepfm import DeepFM
from models.embedding import EmbeddingConfig
from models.fgcnn import FeatureGenerator, FGCNNConfig, inner_products
from models.layers import MultiHeadSelfAttention
from models.registry import MODELS, build_model
from models.trainer import TrainConfig, evaluate, fit, resolve_device, resolve_precision
from models.unified import SharedLayout, shared_model


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


def _train(name, params=None, epochs=8, shared=None):
    torch.manual_seed(0)
    train, valid = _split()
    embedding = EmbeddingConfig(dim=4, init_std=0.1)
    model = build_model(name, FM_XOR, embedding, params) if shared is None else shared_model(name, FM_XOR, embedding, shared, params)
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
        ("dnn", {"hidden": [32, 32]}),
        ("autoint", {"layers": 2, "heads": 2, "attention_dim": 16}),
        ("autoint+", {"layers": 1, "attention_dim": 8, "heads": 2, "dnn_hidden": [16]}),
        (
            "fgcnn",
            {"channels": [4, 4], "kernel_heights": [3, 3], "pooling_sizes": [2, 2], "recombined_channels": [2, 2], "dnn_hidden": [32]},
        ),
    ],
)
def test_deep_models_learn_the_interaction(name, params):
    _, result, _ = _train(name, params)
    assert result.best_valid_auc > 0.7, result.history


def test_best_epoch_weights_are_restored_and_lr_decays():
    model, result, valid = _train("fm", epochs=30)
    device = resolve_device("auto")  # where fit trained and scored it (a GPU when there is one), in its precision
    auc, _ = evaluate(model, valid, 4096, device, resolve_precision("auto", device))
    assert auc == pytest.approx(result.best_valid_auc, abs=1e-9)
    assert len(result.history) < 30  # early stopping
    decayed = [r.learning_rate for r in result.history]
    assert decayed[-1] < decayed[0]


def test_a_gain_below_min_delta_is_a_miss_but_its_weights_are_kept():
    """Valid AUCs scripted by an evaluator: 0.70, then gains of 1e-3, 1e-6 and 1e-6. With min_delta 1e-5 the two tiny
    gains are misses (the lr decays twice and training stops at patience 2), yet the best epoch is the last one; with
    min_delta 0 every gain resets patience and all five epochs run."""
    train, valid = _split(2000)
    aucs = [0.70, 0.701, 0.701001, 0.701002, 0.70]

    def run(min_delta):
        scripted = iter(aucs)
        model = build_model("lr", FM_XOR, EmbeddingConfig(dim=4))
        config = TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=5, patience=2, min_delta=min_delta)
        return fit(model, train, valid, config, evaluator=lambda _: (next(scripted), 0.5))

    strict = run(1e-5)
    assert [r.valid_auc for r in strict.history] == aucs[:4] and strict.best_epoch == 4
    assert [r.learning_rate for r in strict.history] == pytest.approx([0.01, 0.01, 0.01, 0.001])
    plain = run(0.0)
    assert len(plain.history) == 5 and plain.best_epoch == 4


def test_registry_errors():
    with pytest.raises(InputError, match="unknown model"):
        build_model("xgboost", FM_XOR, EmbeddingConfig())
    with pytest.raises(InputError, match="unknown setting"):
        build_model("autoint", FM_XOR, EmbeddingConfig(), {"depth": 3})
    assert set(MODELS) == {"lr", "fm", "deepfm", "dnn", "dcnv2", "autoint", "autoint+", "fgcnn"}
    with pytest.raises(ValueError, match="budget 2 is too small"):
        shared_model("autoint", FM_XOR, EmbeddingConfig(dim=4), SharedLayout(budget=2), {})
    with pytest.raises(ValueError, match="model 'fgcnn' cannot take shared tables"):
        shared_model("fgcnn", FM_XOR, EmbeddingConfig(dim=4), SharedLayout(budget=64), {})


def test_empty_validation_and_missing_gpu_are_user_errors():
    train, _ = _split(1000)
    empty = InMemoryData({k: v[:0] for k, v in train.columns.items()}, train.label[:0], FM_XOR, False)
    with pytest.raises(InputError, match="validation split is empty"):
        fit(build_model("lr", FM_XOR, EmbeddingConfig()), train, empty, TrainConfig(max_epochs=1))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_take_list_gathers_rows_of_a_list_column():
    flat = np.array([10, 11, 20, 30, 31, 32])
    offsets = np.array([0, 2, 3, 6])
    got_flat, got_offsets = _take_list((flat, offsets), np.array([2, 0]))
    assert got_flat.tolist() == [30, 31, 32, 10, 11] and got_offsets.tolist() == [0, 3, 5]


def test_unified_embedding_learns_with_shared_tables():
    # 67 ids over three fields share 2 tables of 16 rows x 2 columns: a quarter-size budget.
    _, result, _ = _train("autoint", {"layers": 1, "heads": 1, "attention_dim": 8}, shared=SharedLayout(budget=64, tables=2, chunks=2))
    assert result.best_valid_auc > 0.7


def test_unified_embedding_under_deepfm_uses_only_the_budget():
    model, result, _ = _train("deepfm", {"hidden": [16]}, shared=SharedLayout(budget=64, tables=2, chunks=2))
    assert isinstance(model, DeepFM) and result.best_valid_auc > 0.7
    assert sum(w.numel() for w in model.embedding.table_weights().values()) == 64  # 2 tables x 16 rows x 2 columns (d 4)
    assert sum(w.numel() for w in model.embedding_tables()) == 64 + 64 // 4  # the first-order weights: budget / dim


def test_dnn_over_shared_tables_has_only_the_budget_and_no_first_order_weights():
    model, result, _ = _train("dnn", {"hidden": [16]}, shared=SharedLayout(budget=64, tables=2, chunks=2))
    assert result.best_valid_auc > 0.7
    assert sum(w.numel() for w in model.embedding_tables()) == 64  # no first-order table beside the shared ones


def test_training_config_names_every_registered_model():
    from typing import get_args

    from pipeline.config import TrainSection

    assert set(get_args(TrainSection.model_fields["model"].annotation)) == set(MODELS)


def test_precision_choice():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if trainer.cpu_bf16_pays() else None)
    with pytest.raises(InputError, match="needs a CUDA GPU"):
        resolve_precision("fp16", cpu)


def test_auto_precision_follows_the_cpu_flags_and_never_a_timing(monkeypatch):
    cpu, rule = torch.device("cpu"), trainer.cpu_bf16_pays.__wrapped__
    hosts = (  # (AMX, AVX-512 BF16, vendor) -> bf16?
        ((True, True, "GenuineIntel"), True),  # Sapphire Rapids and later: AMX
        ((False, True, "AuthenticAMD"), True),  # AMD Zen 4
        ((False, True, "GenuineIntel"), False),  # a Xeon with AVX-512 BF16 but no AMX: about fp32's rate
        ((False, False, "AuthenticAMD"), False),  # no bf16 instructions: emulated
        ((False, True, ""), False),  # nothing to read the vendor from
    )
    for (amx, avx512_bf16, vendor), pays in hosts:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda flag=avx512_bf16: flag)
        monkeypatch.setattr(trainer, "_cpu_vendor", lambda vendor=vendor: vendor)
        assert rule() is pays
        monkeypatch.setattr(trainer, "cpu_bf16_pays", lambda pays=pays: pays)
        assert resolve_precision("auto", cpu) == (torch.bfloat16 if pays else None)
        assert resolve_precision("fp32", cpu) is None
    # Nothing is timed: the answer under a loaded host is the answer on an idle one.
    monkeypatch.setattr(torch, "matmul", lambda *a, **k: pytest.fail("auto precision timed a product"))
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda *a, **k: pytest.fail("auto precision timed a product"))
    rule()


def test_bf16_autocast_training_learns():
    torch.manual_seed(0)
    train, valid = _split()
    model = build_model("autoint", FM_XOR, EmbeddingConfig(dim=4, init_std=0.1), {"layers": 2, "heads": 2, "attention_dim": 16})
    config = TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=6, precision="bf16")
    result = fit(model, train, valid, config)
    assert result.best_valid_auc > 0.7
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32 under autocast


class _Interrupting(InMemoryData):
    """Raises KeyboardInterrupt after `after` batches in total (a killed run), then behaves normally."""

    def __init__(self, data: InMemoryData, after: int) -> None:
        super().__init__(data.columns, data.label, data.feature_map, data.numeric_as_value)
        self.left = after

    def batches(self, *args, **kwargs):
        for batch in super().batches(*args, **kwargs):
            if self.left == 0:
                raise KeyboardInterrupt
            self.left -= 1
            yield batch


# 19 batches per epoch here: an epoch boundary and mid-epoch; lazy Adam's second optimizer is saved and restored too,
# and an annealed rate resumes at the step it had reached
@pytest.mark.parametrize(
    ("interrupt_after", "optimizer", "schedule"),
    [(19, "adam", "constant"), (26, "adam", "constant"), (26, "lazy_adam", "cosine"), (45, "adam", "linear")],
)
def test_interrupted_training_resumes_to_the_same_result(tmp_path, interrupt_after, optimizer, schedule):
    train, valid = _split()
    config = TrainConfig(
        learning_rate=0.01,
        batch_size=512,
        max_epochs=4,
        precision="fp32",
        checkpoint_seconds=1e-9,
        embedding_optimizer=optimizer,
        lr_schedule=schedule,
    )
    params = {"hidden": [16], "dropout": 0.2}  # dropout: the resumed run must also restore the RNG

    def new_model():
        torch.manual_seed(0)
        return build_model("deepfm", FM_XOR, EmbeddingConfig(dim=4, init_std=0.1), params)

    straight = new_model()
    expected = fit(straight, train, valid, config)
    checkpoint = tmp_path / "train.ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(new_model(), _Interrupting(train, interrupt_after), valid, config, checkpoint=checkpoint, fingerprint="a")
    assert checkpoint.is_file()
    resumed_model = new_model()
    resumed = fit(resumed_model, train, valid, config, checkpoint=checkpoint, fingerprint="a")
    assert [r.valid_auc for r in resumed.history] == pytest.approx([r.valid_auc for r in expected.history], abs=1e-6)
    assert [r.train_loss for r in resumed.history] == pytest.approx([r.train_loss for r in expected.history], abs=1e-6)
    for mine, theirs in zip(resumed_model.state_dict().values(), straight.state_dict().values(), strict=True):
        assert torch.allclose(mine.float(), theirs.float(), atol=1e-6)
    # A checkpoint written for other settings is ignored: training starts afresh.
    fresh = fit(new_model(), train, valid, config.model_copy(update={"max_epochs": 1}), checkpoint=checkpoint, fingerprint="other")
    assert len(fresh.history) == 1


class _Recording(InMemoryData):
    """Remembers the last training batch it gave."""

    def batches(self, *args, **kwargs):
        for batch in super().batches(*args, **kwargs):
            self.last = batch
            yield batch


def _wide_field(rows: int, seed: int, vocab: int = 5003):
    """One field of ~5,000 uniform values and a label on the value's parity: a batch of 64 looks up ~1% of the rows."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, rows)
    y = (rng.random(rows) < np.where(ids % 2 == 0, 0.8, 0.2)).astype(np.int8)
    fmap = FeatureMap(label="y", fields=(FieldSpec(name="wide", kind="categorical", column="wide", vocab_size=vocab),))
    return _Recording({"wide": ids}, y, fmap, False)


@pytest.mark.parametrize("backend", ["torch", "torchrec"])
@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_lazy_adam_moves_only_the_rows_a_batch_looks_up(optimizer, backend):
    train, valid = _wide_field(3000, 0), _wide_field(1000, 1)
    torch.manual_seed(0)
    model = build_model("deepfm", train.feature_map, EmbeddingConfig(dim=4, init_std=0.1, backend=backend), {"hidden": [8]})
    tables = [m.weight for m in model.modules() if isinstance(m, torch.nn.EmbeddingBag)]
    assert len(tables) == 2  # the field's embedding and its first-order weights
    before = [w.detach().clone() for w in tables]
    elsewhere: list[int] = []  # per step and table, rows that moved though the step's batch did not look them up

    def after_step() -> None:
        looked_up = torch.zeros(tables[0].shape[0], dtype=torch.bool)
        looked_up[train.last.values] = True
        for i, w in enumerate(tables):
            moved = (w.detach() != before[i]).any(dim=1)
            elsewhere.append(int((moved & ~looked_up).sum()))
            before[i] = w.detach().clone()

    config = TrainConfig(learning_rate=0.01, batch_size=64, max_epochs=1, precision="fp32", embedding_optimizer=optimizer)
    fit(model, train, valid, config, hooks=trainer.TrainHooks(after_step=after_step))
    assert len(elsewhere) == 2 * 47  # 3,000 rows in batches of 64, both tables each step
    if optimizer == "lazy_adam":
        assert sum(elsewhere) == 0
        assert all(w.grad is None or w.grad.is_sparse for w in tables)
    else:  # Adam's moments keep moving every row a batch once looked up
        assert sum(elsewhere[20:]) > 1000


def test_lazy_adam_learns_an_interaction():
    train, valid = _split()
    torch.manual_seed(0)
    model = build_model("fm", FM_XOR, EmbeddingConfig(dim=4, init_std=0.1), None)
    result = fit(model, train, valid, TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=8, embedding_optimizer="lazy_adam"))
    assert result.best_valid_auc > 0.7


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_schedule_anneals_every_step_under_the_missed_epochs_decay(schedule, monkeypatch):
    train, valid = _split(2000)  # 4 batches of 512 an epoch
    steps, lr = 4, 0.01

    def factor(step: int) -> float:  # the published curves over 3 epochs' steps
        t = step / (3 * steps)
        return 0.5 * (1 + math.cos(math.pi * t)) if schedule == "cosine" else 1 - t

    seen: list[float] = []  # the lazy tables' rate at each step (their own optimizer is scheduled too)
    step = torch.optim.SparseAdam.step
    monkeypatch.setattr(
        torch.optim.SparseAdam, "step", lambda self, *a, **k: (seen.append(self.param_groups[0]["lr"]), step(self, *a, **k))[1]
    )
    torch.manual_seed(0)
    model = build_model("deepfm", FM_XOR, EmbeddingConfig(dim=4, init_std=0.1), {"hidden": [8]})
    # min_delta 0.99: every epoch after the first (which beats no epoch) is a miss, and the rate halves after it
    config = TrainConfig(
        learning_rate=lr,
        batch_size=512,
        max_epochs=3,
        patience=3,
        min_delta=0.99,
        lr_decay=0.5,
        lr_schedule=schedule,
        embedding_optimizer="lazy_adam",
    )
    # an optimizer applied inside backward (torchrec's fused tables in distributed training) is handed each step's rate
    fused = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    handed: list[float] = []
    monkeypatch.setattr(fused, "step", lambda: handed.append(fused.param_groups[0]["lr"]))
    result = fit(model, train, valid, config, fused_optimizer=fused)
    expected = [lr * 0.5 ** max(g // steps - 1, 0) * factor(g) for g in range(3 * steps)]
    assert seen == pytest.approx(expected, rel=1e-9)
    # every step's rate, then after the two missed epochs the halved one
    assert handed == pytest.approx([*expected[:8], expected[7] / 2, *expected[8:], expected[11] / 2], rel=1e-9)
    assert seen[-1] < 0.05 * lr  # annealed to near 0 by the last step
    # the dense Adam's rate, recorded after each epoch's last step
    assert [r.learning_rate for r in result.history] == pytest.approx([expected[e * steps + steps - 1] for e in range(3)], rel=1e-9)
    # constant: no annealing, only the missed epochs' decay
    seen.clear()
    fit(model, train, valid, config.model_copy(update={"lr_schedule": "constant"}))
    assert seen == pytest.approx([lr * 0.5 ** max(g // steps - 1, 0) for g in range(3 * steps)], rel=1e-9)


def test_lazy_adam_refuses_a_penalty_over_whole_tables():
    train, valid = _split(2000)
    model = build_model("deepfm", FM_XOR, EmbeddingConfig(dim=4), {"hidden": [8]})
    model.penalty = lambda: 1e-3 * sum(w.pow(2).sum() for w in model.embedding_tables())  # a dense gradient on every row
    with pytest.raises(InputError, match="embedding_optimizer lazy_adam"):
        fit(model, train, valid, TrainConfig(max_epochs=1, embedding_optimizer="lazy_adam"))
    with pytest.raises(ValueError, match="embedding_regularizer 0"):
        TrainConfig(embedding_optimizer="lazy_adam", embedding_regularizer=0.05)


@pytest.mark.parametrize(
    "block, fused",
    [(True, True), (True, False), (False, False)],
    ids=["one masked product, hand-written backward", "one masked product, autograd", "per-head einsums"],
)
def test_attention_matches_the_reference_formula_forward_and_backward(block, fused, monkeypatch):
    monkeypatch.setattr(layers, "BLOCK_ATTENTION_MAX", 64 if block else 0)
    monkeypatch.setattr(layers, "FUSED_ATTENTION", fused)
    monkeypatch.setattr(layers, "CPU_KERNEL", False)  # the C++ kernel has its own tests (test_field_attention_kernel.py)
    torch.manual_seed(0)
    # A projected residual, the identity one (folded into the fused function), and LayerNorm.
    for scale, in_dim, layer_norm in ((False, 12, False), (True, 12, False), (False, 16, False), (True, 16, False), (False, 16, True)):
        layer = MultiHeadSelfAttention(in_dim, 16, heads=4, residual=True, layer_norm=layer_norm, scale=scale)
        x = torch.randn(5, 7, in_dim, requires_grad=True)
        q, k, v = layer.qkv(x).view(5, 7, 3, 4, 4).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / (2.0 if scale else 1.0), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(5, 7, 16) + (layer.residual(x) if layer.residual is not None else x)
        expected = torch.relu(layer.norm(out) if layer_norm else out)
        probe = torch.randn_like(expected)
        grads = torch.autograd.grad((expected * probe).sum(), [x, layer.qkv.weight])
        got = layer(x)
        assert torch.allclose(got, expected, atol=1e-5)
        for a, b in zip(torch.autograd.grad((got * probe).sum(), [x, layer.qkv.weight]), grads, strict=True):
            assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("fold", [False, True], ids=["attention alone", "with residual and ReLU"])
def test_fused_attention_backward_passes_gradcheck(scale, fold):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3 * 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: layers._FusedBlockAttention.apply(a, w, 2, scale, fold), (x, weight))


@pytest.mark.parametrize(
    "residual_width, x_dtype",
    [(16, torch.bfloat16), (16, torch.float32), (12, torch.float32)],
    ids=["identity residual, bf16 input (folded: later layers)", "identity residual, fp32 input", "projected residual"],
)
def test_fused_attention_under_bf16_autocast_matches_autocasts_own_path(residual_width, x_dtype, monkeypatch):
    calls = []
    original = layers._FusedBlockAttention.apply
    monkeypatch.setattr(layers._FusedBlockAttention, "apply", lambda *a: calls.append(a[-1]) or original(*a))
    torch.manual_seed(0)
    layer = MultiHeadSelfAttention(residual_width, 16, heads=4)
    x = torch.randn(64, 5, residual_width, dtype=x_dtype, requires_grad=True)
    probe = torch.randn(64, 5, 16)

    def run(fused: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(layers, "FUSED_ATTENTION", fused)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
        return [out, *torch.autograd.grad((out.float() * probe).sum(), [x, layer.qkv.weight])]

    reference, fused = run(False), run(True)
    assert calls == [torch.bfloat16]  # the fused function ran once, in bf16; autocast's own path did not call it
    assert fused[0].dtype == reference[0].dtype  # bf16, or float32 where autocast adds a float32 input (the first layer)
    assert fused[1].dtype == x.dtype and fused[2].dtype == layer.qkv.weight.dtype  # gradients in the leaves' dtype
    for a, b in zip(fused, reference, strict=True):  # the same bf16 arithmetic, in another order
        assert torch.allclose(a.float(), b.float(), rtol=0.05, atol=0.05 * b.float().abs().max().item())
    with torch.no_grad():
        plain = layer(x.float())
    assert torch.allclose(plain, fused[0].float(), atol=0.1)
    with torch.autocast("cpu", dtype=torch.float16):  # other autocast dtypes keep autograd's path
        layer(x.float())
    assert calls == [torch.bfloat16, None]  # ... and the fp32 call above


def test_attention_projections_start_as_fuxictrs_separate_xavier_layers():
    torch.manual_seed(0)
    model = build_model("autoint", FM_XOR, EmbeddingConfig(dim=16), {"layers": 2, "heads": 2, "attention_dim": 64})
    first, second = (layer.qkv.weight for layer in model.attention)
    # FuxiCTR's W_q, W_k and W_v are separate Linear(in, 64) layers: Xavier std sqrt(2 / (in + 64)) for each.
    for weight, in_dim in ((first, 16), (second, 64)):  # one Linear(in, 192) would give sqrt(2 / (in + 192))
        for block in weight.chunk(3):
            assert float(block.detach().std()) == pytest.approx((2 / (in_dim + 64)) ** 0.5, rel=0.1)


def test_fgcnn_generates_the_expected_feature_maps_and_inner_products():
    config = FGCNNConfig()  # channels 14-20, kernel 7, pool 2, 3 recombined maps
    generator = FeatureGenerator(10, 6, config)
    # Field heights 10 -> 5 -> 3 -> 2 -> 1 after each pool; 3 new maps per remaining field at each layer.
    assert generator.new_fields == 3 * (5 + 3 + 2 + 1)
    assert generator(torch.randn(8, 10, 6)).shape == (8, 33, 6)
    e = torch.randn(4, 5, 3)
    pairs = inner_products(e)
    expected = torch.stack([(e[:, i] * e[:, j]).sum(-1) for i in range(5) for j in range(i + 1, 5)], dim=1)
    assert torch.allclose(pairs, expected, atol=1e-6)
    model = build_model("fgcnn", FM_XOR, EmbeddingConfig(dim=4))
    assert len(model.embedding_tables()) == 6  # two embeddings (generation, classifier) of three fields


def test_piecewise_encoding_learns_a_non_monotone_effect_that_a_value_times_a_vector_cannot():
    # One numeric field; the label depends on |x| only, so any function linear in x scores AUC ~0.5. LR (first-order
    # weights only) learns it through the piecewise-linear encoding, fitted by the trainer on the train rows.
    feature_map = FeatureMap(label="y", fields=(FieldSpec(name="x", kind="numeric", column="x", vocab_size=20, value_column="x__num"),))
    rng = np.random.default_rng(0)
    x = rng.normal(size=12_000).astype(np.float32)
    y = (rng.random(x.size) < 1 / (1 + np.exp(-(2.0 * np.abs(x) - 1.6)))).astype(np.int8)
    cols = {"x": np.zeros(x.size, dtype=np.int32), "x__num": x}
    train = InMemoryData({k: v[:9600] for k, v in cols.items()}, y[:9600], feature_map, True)
    valid = InMemoryData({k: v[9600:] for k, v in cols.items()}, y[9600:], feature_map, True)
    auc = {}
    for bins in (0, 16):
        torch.manual_seed(0)
        model = build_model("lr", feature_map, EmbeddingConfig(dim=4, numeric_as_value=True, piecewise_bins=bins, init_std=0.1))
        auc[bins] = fit(model, train, valid, TrainConfig(learning_rate=0.05, batch_size=512, max_epochs=6, patience=2)).best_valid_auc
    assert auc[0] < 0.56 and auc[16] > 0.68, auc
