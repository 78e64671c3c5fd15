"""The C++ per-head field attention (models/kernels/field_attention.cpp) against the formula, and its fallback."""

import logging

import pytest
import torch

from models import kernels, layers
from models.layers import MultiHeadSelfAttention


@pytest.fixture(scope="module")
def kernel():
    # Where the tools are there (Linux x86-64, a C++ compiler, ninja: CI and the dev hosts), the kernel must build:
    # a build error fails here instead of silently falling back to the batched-product path.
    missing = kernels._missing_tools()
    if missing:
        pytest.skip(f"the kernel cannot be built here: {missing}")
    module = kernels.field_attention()
    assert module is not None, "the CPU attention kernel failed to build (see the log above)"
    return module


def reference(layer: MultiHeadSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """AutoInt's layer written out per head, in float64: relu(softmax(q k^T [* d^-1/2]) v + residual)."""
    rows, fields, _ = x.shape
    heads = layer.heads
    q, k, v = layer.qkv(x).view(rows, fields, 3, heads, -1).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if layer.scale else 1.0)
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(rows, fields, -1)
    return torch.relu(out + (layer.residual(x) if layer.residual is not None else x))


@pytest.mark.parametrize(
    "fields, heads, head_dim",
    [(1, 1, 16), (3, 2, 32), (10, 4, 32), (16, 4, 32), (7, 3, 64), (10, 8, 16)],
    ids=["1 field", "3 fields", "Frappe: 10 x 4 x 32", "16 fields (the most)", "head dim 64", "8 heads (past the block path's 64)"],
)
@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("residual", ["identity", "projected"])
def test_kernel_matches_the_formula_forward_and_backward(kernel, fields, heads, head_dim, scale, residual, monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "field_attention", lambda: calls.append(1) or kernel)
    torch.manual_seed(fields * 100 + heads)
    width = heads * head_dim
    in_dim = width if residual == "identity" else 12
    layer = MultiHeadSelfAttention(in_dim, width, heads=heads, scale=scale)
    with torch.no_grad():  # scores of several units, so that the softmax is far from uniform
        layer.qkv.weight.mul_(3.0)
    x = torch.randn(45, fields, in_dim, requires_grad=True)  # 45 rows: uneven chunks for the threads
    got = layer(x)
    assert calls, "the kernel was not used for this shape"
    probe = torch.randn_like(got)
    got_grads = torch.autograd.grad((got * probe).sum(), [x, layer.qkv.weight])

    exact = layer.double()
    x64 = x.detach().double().requires_grad_()
    expected = reference(exact, x64)
    expected_grads = torch.autograd.grad((expected * probe.double()).sum(), [x64, exact.qkv.weight])
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    for a, b in zip(got_grads, expected_grads, strict=True):
        assert torch.allclose(a.double(), b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


def test_kernel_agrees_with_the_batched_product_path(kernel, monkeypatch):
    torch.manual_seed(0)
    layer = MultiHeadSelfAttention(128, 128, heads=4)
    x = torch.randn(300, 10, 128, requires_grad=True)
    probe = torch.randn(300, 10, 128)

    def run(use_kernel: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(layers, "CPU_KERNEL", use_kernel)
        out = layer(x)
        return [out, *torch.autograd.grad((out * probe).sum(), [x, layer.qkv.weight])]

    for a, b in zip(run(True), run(False), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


def test_kernel_results_do_not_depend_on_the_thread_count(kernel):
    torch.manual_seed(0)
    q, k, v, x, grad = (torch.randn(301, 10, 128) for _ in range(5))

    def run(threads: int) -> list[torch.Tensor]:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out, probs = kernel.forward(q, k, v, 4, 1.0, x)
            return [out, probs, *kernel.backward(grad, q, k, v, probs, 4, 1.0, out)]
        finally:
            torch.set_num_threads(before)

    for a, b in zip(run(1), run(2), strict=True):
        assert torch.equal(a, b)  # each row's blocks in a fixed order, whatever the split over threads


def test_kernel_takes_q_k_v_as_slices_of_one_tensor_and_checks_its_inputs(kernel):
    torch.manual_seed(0)
    qkv, grad = torch.randn(33, 10, 3 * 64), torch.randn(33, 10, 64)
    views = qkv.split(64, dim=-1)  # fields at a stride of 192
    copies = [t.contiguous() for t in views]
    sliced, contiguous = kernel.forward(*views, 2, 0.25), kernel.forward(*copies, 2, 0.25)
    assert all(torch.equal(a, b) for a, b in zip(sliced, contiguous, strict=True))
    dqkv, masked = kernel.backward(grad, *views, sliced[1], 2, 0.25)
    assert torch.equal(dqkv, kernel.backward(grad, *copies, sliced[1], 2, 0.25)[0])
    assert dqkv.shape == (33, 10, 192) and masked.numel() == 0  # no out given: no ReLU to go through
    with pytest.raises(RuntimeError, match="q: a float32 CPU tensor"):
        kernel.forward(qkv.transpose(0, 1)[..., :64], *copies[1:], 2, 0.25)
    with pytest.raises(RuntimeError, match="residual: shape"):
        kernel.forward(*copies, 2, 0.25, torch.randn(33, 10, 32))
    with pytest.raises(RuntimeError, match="outside the kernel's range"):
        kernel.forward(*(t[:, :, :24].contiguous() for t in copies), 2, 0.25)


def test_kernel_is_not_used_where_it_does_not_apply(kernel, monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "field_attention", lambda: calls.append(1) or kernel)
    layer = MultiHeadSelfAttention(32, 32, heads=2)
    layer(torch.randn(4, 17, 32))  # 17 fields: above the 16 it is compiled for
    MultiHeadSelfAttention(24, 24, heads=2)(torch.randn(4, 5, 24))  # head dim 12
    layer.double()(torch.randn(4, 5, 32, dtype=torch.float64))  # float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 autocast keeps its own path
        layer.float()(torch.randn(4, 5, 32))
    assert calls == []
    layer(torch.randn(4, 5, 32))
    assert calls  # used for a shape it is compiled for


def test_kernel_off_by_environment_and_a_failed_build_falls_back_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PIPELINE_CPU_KERNELS", "0")
    assert kernels.field_attention.__wrapped__() is None
    monkeypatch.delenv("PIPELINE_CPU_KERNELS")
    if kernels._missing_tools():
        pytest.skip("no C++ toolchain here: the build failure path cannot run")
    broken = tmp_path / "field_attention.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(kernels, "SOURCE", broken)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="models.kernels"):
        assert kernels.field_attention.__wrapped__() is None
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["CPU attention kernel failed to build"]
    # ... and the layer then runs its batched-product path.
    monkeypatch.setattr(kernels, "field_attention", lambda: None)
    torch.manual_seed(0)
    layer = MultiHeadSelfAttention(32, 32, heads=2)
    x = torch.randn(6, 5, 32, dtype=torch.float64)
    assert torch.allclose(layer.double()(x), reference(layer, x))


def test_training_on_the_cpu_builds_the_kernel_first_and_keeps_freed_memory(monkeypatch):
    from featuremap import FeatureMap, FieldSpec
    from models.data import InMemoryData
    from models.embedding import EmbeddingConfig
    from models.registry import build_model
    from models.trainer import TrainConfig, fit

    events = []
    monkeypatch.setattr(kernels, "field_attention", lambda: events.append("kernel") or None)
    monkeypatch.setattr(kernels, "retain_freed_memory", lambda: events.append("memory") or True)
    rng = torch.Generator().manual_seed(0)
    names = [f"f{i}" for i in range(3)]
    feature_map = FeatureMap(label="y", fields=tuple(FieldSpec(name=n, kind="categorical", column=n, vocab_size=5) for n in names))
    x = torch.randint(0, 5, (64, 3), generator=rng).numpy()
    y = (x[:, 0] > 2).astype("int8")
    data = InMemoryData({n: x[:, i] for i, n in enumerate(names)}, y, feature_map, False)
    model = build_model("autoint", feature_map, EmbeddingConfig(dim=16), {"layers": 1, "heads": 1, "attention_dim": 16})
    original_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda batch: events.append("step") or original_forward(batch))
    fit(model, data, data, TrainConfig(max_epochs=1, batch_size=32, precision="fp32", device="cpu"))
    assert events[:2] == ["memory", "kernel"] and "step" in events  # before the first step (and its timing)
    events.clear()
    fit(build_model("fm", feature_map, EmbeddingConfig(dim=4)), data, data, TrainConfig(max_epochs=1, batch_size=32, device="cpu"))
    assert events == ["memory"]  # no attention layer: nothing to build


def test_retain_freed_memory_is_set_once_where_glibc_is():
    import platform

    first = kernels.retain_freed_memory()
    assert kernels.retain_freed_memory() is first
    if platform.libc_ver()[0] == "glibc":
        assert first is True
