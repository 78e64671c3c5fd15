"""Layers shared by the models."""

from __future__ import annotations

import functools

import torch
from torch import nn

from models import kernels


class MLP(nn.Sequential):
    """Linear -> [BatchNorm] -> ReLU -> [Dropout] per hidden layer; `out_dim` adds a final linear layer."""

    def __init__(self, in_dim: int, hidden: list[int], dropout: float = 0.0, batch_norm: bool = False, out_dim: int | None = None) -> None:
        layers: list[nn.Module] = []
        for width in hidden:
            layers.append(nn.Linear(in_dim, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        if out_dim is not None:
            layers.append(nn.Linear(in_dim, out_dim))
        super().__init__(*layers)


def fm_interaction(embeddings: torch.Tensor) -> torch.Tensor:
    """Sum over field pairs of <e_i, e_j>: 0.5 * ((sum e)^2 - sum e^2), for [rows, fields, dim] -> [rows]."""
    square_of_sum = embeddings.sum(dim=1).pow(2)
    sum_of_square = embeddings.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


class MultiHeadSelfAttention(nn.Module):
    """AutoInt's interacting layer: self-attention over fields, residual projection, optional LayerNorm, ReLU.

    `scale` divides the attention scores by sqrt(head dim) (FuxiCTR's use_scale).
    """

    def __init__(
        self, in_dim: int, attention_dim: int, heads: int, residual: bool = True, layer_norm: bool = False, scale: bool = False
    ) -> None:
        super().__init__()
        self.scale = scale
        if attention_dim % heads:
            raise ValueError(f"attention_dim {attention_dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(in_dim, 3 * attention_dim, bias=False)
        self.use_residual = residual
        # The residual is projected only where the width changes (FuxiCTR's choice; identity otherwise).
        self.residual = nn.Linear(in_dim, attention_dim, bias=False) if residual and in_dim != attention_dim else None
        self.norm = nn.LayerNorm(attention_dim) if layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, fields, _ = x.shape
        device = x.device.type
        compute = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        # softmax(QK^T [/ sqrt(d_h)]) V per head; unscaled is the paper's and FuxiCTR's default.
        kernel = FUSED_ATTENTION and compute is None and _cpu_kernel(x, self.qkv.weight, self.heads) is not None
        if fields * self.heads <= BLOCK_ATTENTION_MAX or kernel:
            if FUSED_ATTENTION and compute in (None, torch.bfloat16):
                # Identity residual and no LayerNorm: the residual add and the ReLU run inside the fused function too
                # (under autocast only for a bf16 input: autocast adds a float32 one in float32, below).
                fold = self.use_residual and self.residual is None and self.norm is None and compute in (None, x.dtype)
                with torch.autocast(device, enabled=False):  # under bf16 autocast the function casts once itself
                    out = _FusedBlockAttention.apply(x, self.qkv.weight, self.heads, self.scale, fold, compute)
                if fold:
                    return out
            else:
                out = _block_forward(x, self.qkv.weight, self.heads, self.scale)[-1]
        else:
            q, k, v = self.qkv(x).view(rows, fields, 3, self.heads, -1).unbind(2)  # each [rows, fields, heads, d_h]
            scores = torch.einsum("bihd,bjhd->bhij", q, k)
            if self.scale:
                scores = scores * q.shape[-1] ** -0.5
            out = torch.einsum("bhij,bjhd->bihd", torch.softmax(scores, dim=-1), v).reshape(rows, fields, -1)
        if self.use_residual:  # not in place: `out` is a view, and autograd would copy its whole gradient back
            out = out + (self.residual(x) if self.residual is not None else x)
        if self.norm is not None:  # LayerNorm before the ReLU, as FuxiCTR's layer
            out = self.norm(out)
        return torch.relu(out)


def _block_forward(x: torch.Tensor, weight: torch.Tensor, heads: int, scale: bool) -> tuple[torch.Tensor, ...]:
    """All heads in one batched product, for few fields: no head-major copies. Returns q, k, v (each [rows,
    fields * heads, d_h]), the probabilities and the output [rows, fields, heads * d_h]; differentiable by autograd
    (the path under autocast), and the forward of `_FusedBlockAttention`.

    Q, K and V come from three products (views of the one qkv weight), each [rows, fields, heads * d_h], which is
    already [rows, fields * heads, d_h]: one bmm scores every (field, head) against every (field, head), a fixed -inf
    mask keeps each head's own block, and the softmax over the row is the per-head softmax. Heads x the score work
    (small for a handful of fields), and no permute, einsum copy or unbind concatenation in the backward pass:
    measured 1.5x faster per layer, forward + backward, at 4096 rows x 10 fields x 4 heads x 128.
    """
    rows, fields, in_dim = x.shape
    flat = x.reshape(rows * fields, in_dim)
    q, k, v = (torch.mm(flat, w.t()).view(rows, fields * heads, -1) for w in weight.chunk(3))
    scores = torch.bmm(q, k.transpose(1, 2))
    # In place on the product's own output (its backward reads only q and k); baddbmm's copy of the expanded mask
    # into its output was 10x slower than this broadcast add.
    if scale:
        scores.mul_(q.shape[-1] ** -0.5)
    probs = torch.softmax(scores.add_(_head_mask(fields, heads, x.device, scores.dtype)), dim=-1)
    return q, k, v, probs, torch.bmm(probs, v).view(rows, fields, -1)


BLOCK_ATTENTION_MAX = 64  # fields x heads up to which attention runs as one masked product (scores cost heads x more)
FUSED_ATTENTION = True  # the block path as one autograd function with a hand-written backward (fp32, or bf16 autocast)
CPU_KERNEL = True  # in that function, fp32 on the CPU: the per-head C++ kernel where it builds (models/kernels)
KERNEL_FIELDS, KERNEL_HEAD_DIMS = 16, (16, 32, 64)  # the shapes it is compiled for


def _cpu_kernel(x: torch.Tensor, weight: torch.Tensor, heads: int):
    """The C++ field attention module when it applies to these tensors (fp32 on the CPU, its shapes), else None."""
    if not CPU_KERNEL or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return None
    if x.shape[1] > KERNEL_FIELDS or (weight.shape[0] // 3) // heads not in KERNEL_HEAD_DIMS or (weight.shape[0] // 3) % heads:
        return None
    return kernels.field_attention()


def _scale_factor(head_dim: int, scale: bool) -> float:
    return head_dim**-0.5 if scale else 1.0


class _FusedBlockAttention(torch.autograd.Function):
    """The block attention of `MultiHeadSelfAttention`, forward and backward written out: relu(attention(x) + x) when
    `fold` (identity residual, no LayerNorm), attention(x) alone otherwise.

    What it saves against autograd's graph of the same ops (measured 1.10-1.12x AutoInt training samples/s in fp32 on a
    2-core CPU, 10 fields x 4 heads): the key gradient comes out of its product already [rows, fields * heads, d_h]
    (autograd's is transposed and then copied to undo the view); the three projections' input gradients, and the
    residual's, accumulate inside the matrix products (addmm with beta 1) instead of three separate tensor adds; the
    residual add and the ReLU run in place on the attention output. Where the C++ kernel applies (`_cpu_kernel`), the
    attention, the residual add, the ReLU and its gradient are the kernel's, and the input and weight gradients are one
    product each over its [rows * fields, 3 * width] gradient of q | k | v.
    """

    @staticmethod
    def forward(ctx, x, weight, heads: int, scale: bool, fold: bool, compute: torch.dtype | None = None):
        ctx.dtypes = x.dtype, weight.dtype
        if compute is not None:  # bf16 autocast's arithmetic, every product and the softmax in bf16, cast once here
            x, weight = x.to(compute), weight.to(compute)
        kernel = _cpu_kernel(x, weight, heads)
        if kernel is not None:  # exact per-head attention in C++ (models/kernels): probs are [rows, heads, keys, 16]
            rows, fields, in_dim = x.shape
            flat = x.reshape(rows * fields, in_dim)
            q, k, v = (torch.mm(flat, w.t()).view(rows, fields, -1) for w in weight.chunk(3))  # three: faster than one here
            # With the residual, the kernel returns relu(attention + x)
            out, probs = kernel.forward(q, k, v, heads, _scale_factor(q.shape[-1] // heads, scale), x.contiguous() if fold else None)
        else:
            q, k, v, probs, out = _block_forward(x, weight, heads, scale)
            if fold:
                out.add_(x).relu_()
        ctx.save_for_backward(x, weight, q, k, v, probs, out if fold else None)
        ctx.heads, ctx.scale, ctx.fold, ctx.kernel = heads, scale, fold, kernel
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, q, k, v, probs, out = ctx.saved_tensors
        rows, fields, in_dim = x.shape
        grad = grad.to(x.dtype).contiguous()
        if ctx.kernel is not None:  # one [rows * fields, 3 * width] gradient of q | k | v, the ReLU's gradient inside
            scale = _scale_factor(q.shape[-1] // ctx.heads, ctx.scale)
            dqkv, masked = ctx.kernel.backward(grad, q, k, v, probs, ctx.heads, scale, out)
            dqkv = dqkv.view(rows * fields, -1)
            grad_x = grad_weight = None
            if ctx.needs_input_grad[0]:  # the residual's gradient (the kernel's own tensor) takes the product in place
                grad_x = masked.view(rows * fields, -1).addmm_(dqkv, weight) if ctx.fold else torch.mm(dqkv, weight)
                grad_x = grad_x.view(rows, fields, in_dim).to(ctx.dtypes[0])
            if ctx.needs_input_grad[1]:
                grad_weight = torch.mm(dqkv.t(), x.reshape(rows * fields, in_dim)).to(ctx.dtypes[1])
            return grad_x, grad_weight, None, None, None, None
        if ctx.fold:
            grad = torch.ops.aten.threshold_backward(grad, out, 0)  # through the ReLU: a tensor of its own
        grad_heads = grad.view(rows, fields * ctx.heads, -1)
        grad_scores = torch._softmax_backward_data(torch.bmm(grad_heads, v.transpose(1, 2)), probs, -1, probs.dtype)
        if ctx.scale:
            grad_scores.mul_(q.shape[-1] ** -0.5)
        grads = [
            g.view(rows * fields, -1)
            for g in (torch.bmm(grad_scores, k), torch.bmm(grad_scores.transpose(1, 2), q), torch.bmm(probs.transpose(1, 2), grad_heads))
        ]
        del grad_scores
        grad_x = grad_weight = None
        blocks = weight.chunk(3)
        if ctx.needs_input_grad[0]:
            first = grads[0], blocks[0]
            grad_x = grad.view(rows * fields, -1).addmm_(*first) if ctx.fold else torch.mm(*first)
            for g, w in zip(grads[1:], blocks[1:], strict=True):
                grad_x.addmm_(g, w)
            grad_x = grad_x.view(rows, fields, in_dim).to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            grad_weight = torch.empty_like(weight)
            flat = x.reshape(rows * fields, in_dim)
            for g, part in zip(grads, grad_weight.chunk(3), strict=True):
                torch.mm(g.t(), flat, out=part)
            grad_weight = grad_weight.to(ctx.dtypes[1])
        return grad_x, grad_weight, None, None, None, None


@functools.lru_cache(maxsize=32)
def _head_mask(fields: int, heads: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[fields * heads]^2: 0 where row and column are the same head, -inf elsewhere (rows and columns (field, head))."""
    head = torch.arange(fields * heads, device=device) % heads
    mask = torch.zeros(fields * heads, fields * heads, device=device, dtype=dtype)
    return mask.masked_fill(head[:, None] != head[None, :], float("-inf"))
