"""DNIS (Cheng et al., 2020): differentiable search of embedding dimensions per frequency block.

1. Warm-up: train the model with every selection weight alpha at 1.
2. Search: after each training step on the embeddings (train loss), one step
   on alpha with the validation loss + l1 * sum|alpha|: each row of the
   gradient is divided by its mean absolute value, SGD (lr 0.01), alpha
   clipped to [0, 1].
3. Prune: alpha is folded into the tables (e <- e * alpha), then the
   `prune_ratio` smallest |e| entries over all values are dropped; a value's
   dimension is its number of surviving entries.
4. Retrain with the mask applied in the forward pass and re-applied to the
   weights after every step, so pruned entries cannot grow back (the
   reference notebook forgets this), with the shared trainer's early
   stopping. The retrain either fine-tunes the searched weights (alpha
   folded in) or rewinds to the weights the warm-up started from, masked, as
   OptFS rewinds. `rewind="auto"` (the default) retrains both ways and keeps
   the one with the better validation AUC: a model that overfits after an
   epoch or two (the synthetic data) would otherwise start its retrain past
   its best epoch (valid AUC -0.026 there, 3 seeds), while one still
   improving (Frappe's DeepFM after 10 of its ~17 epochs) keeps what it
   learned (fine-tuning: -0.00001 test there, rewinding: -0.0023). An
   earlier `auto` guessed from the warm-up and search epochs' validation
   curve (rewind when the best epoch lay `patience` epochs back) and guessed
   wrong on two synthetic seeds of three (bench/RESULTS.md, "DNIS `rewind`").
The tables keep their width d with zeros in pruned entries, so attention and
product layers that need one width work unchanged; the parameter count is
the number of surviving entries (what a mixed-dimension store holds).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from featuremap import FIRST_VALUE_ID
from models.base import CTRModel
from models.data import InMemoryData
from models.embedding import FeatureEmbedding, field_offsets
from models.trainer import EpochRecord, TrainConfig, TrainHooks, TrainResult, fit


class DimensionMask(nn.Module):
    """DNIS's soft (then hard) selection of embedding dimensions per frequency block of values.

    Values of each field are ranked by frequency (the encoder numbers them most
    frequent first) and cut into `freq_blocks` equal blocks; the d dimensions are
    cut into `dim_blocks` blocks. During search a value's embedding is
    multiplied by alpha[field, block(value)] expanded to width d (alpha in
    [0, 1], initialised to 1). After pruning, `hard` holds one boolean mask row
    per value instead (its surviving dimensions; a value's dimension is the
    row's count).
    """

    def __init__(self, vocab_sizes: list[int], dim: int, freq_blocks: int, dim_blocks: int) -> None:
        super().__init__()
        if dim % dim_blocks:
            raise ValueError(f"embedding dim {dim} is not divisible into {dim_blocks} dimension blocks")
        self.dim, self.dim_blocks, self.freq_blocks = dim, dim_blocks, freq_blocks
        self.width = dim  # a multiplier per value and dimension (FeatureEmbedding.attach)
        self.vocab_sizes = list(vocab_sizes)
        # Real values (ids from FIRST_VALUE_ID on, most frequent first) in equal blocks; reserved ids join the first.
        ranks = [(torch.arange(v) - FIRST_VALUE_ID).clamp(min=0) for v in vocab_sizes]
        blocks = [
            torch.clamp(r * freq_blocks // max(1, v - FIRST_VALUE_ID), max=freq_blocks - 1) for r, v in zip(ranks, vocab_sizes, strict=True)
        ]
        field = torch.cat([torch.full((v,), i) for i, v in enumerate(vocab_sizes)])
        self.register_buffer("row_block", field * freq_blocks + torch.cat(blocks))  # (field, frequency block) of every row
        self.register_buffer("offsets", field_offsets(vocab_sizes))
        self.alpha = nn.Parameter(torch.ones(len(vocab_sizes) * freq_blocks, dim_blocks))
        self.register_buffer("hard", torch.ones(0, dim, dtype=torch.bool))

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[ids, d] multipliers of every id in `values` (field-major, `lengths` [fields, rows] ids per row)."""
        return self.row_multipliers(torch.repeat_interleave(self.offsets, lengths.sum(dim=1)) + values)

    def row_multipliers(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, d] multipliers for global rows `rows` (field offset + id)."""
        if self.hard.numel():
            return self.hard[rows].to(self.alpha.dtype)
        return torch.repeat_interleave(self.alpha[self.row_block[rows]], self.dim // self.dim_blocks, dim=1)

    def set_hard(self, mask: torch.Tensor) -> None:
        """Replace the soft selection by a [all rows, d] boolean mask of surviving entries."""
        self.hard = mask.to(torch.bool)
        self.alpha.requires_grad_(False)

    def dims(self) -> list[torch.Tensor]:
        """Per field, the dimension of every value (the number of its surviving entries); full width before pruning."""
        if not self.hard.numel():
            return [torch.full((v,), self.dim) for v in self.vocab_sizes]
        return list(torch.split(self.hard.sum(dim=1), self.vocab_sizes))


class DNISParams(Protocol):
    """What the procedure reads of its settings (`methods.dnis.DNISSettings`, where the defaults live)."""

    freq_blocks: int  # frequency blocks K per field
    dim_blocks: int | None  # dimension blocks B; None: one per dimension
    warmup_epochs: int
    search_epochs: int
    alpha_lr: float
    l1: float
    prune_ratio: float
    # True: retrain from the pre-warm-up weights (masked); False: from the searched weights; "auto": both, the one with
    # the better validation AUC kept
    rewind: bool | str


@dataclass
class DNISResult:
    """Dimensions found and both phases' results."""

    dims: dict[str, torch.Tensor]  # per field: the dimension of every value
    mask: torch.Tensor  # [rows of all fields, d] surviving entries
    full_params: int
    kept_params: int
    search: TrainResult
    retrain: TrainResult
    start: dict[str, torch.Tensor]  # the weights the retrain started from (alpha folded in, pruned entries zero)
    rewound: bool = False  # whether the retrain started from the pre-warm-up weights


def _embeddings(model: CTRModel, dim: int) -> list[FeatureEmbedding]:
    return [m for m in model.modules() if isinstance(m, FeatureEmbedding) and m.config.dim == dim and m.sparse]


def attach_dimension_mask(model: CTRModel, dim: int, settings: DNISParams) -> DimensionMask:
    """One DimensionMask shared by the model's d-wide embeddings (a linear part's width-1 weights stay whole)."""
    embeddings = _embeddings(model, dim)
    if not embeddings:
        raise ValueError(f"DNIS needs a model with sparse field embeddings of width {dim}")
    mask = DimensionMask([f.vocab_size for f in embeddings[0].sparse], dim, settings.freq_blocks, settings.dim_blocks or dim)
    for embedding in embeddings:
        embedding.attach("dim_mask", mask)
    return mask


def _tables(model: CTRModel, dim: int) -> list[torch.Tensor]:
    """Per d-wide embedding, its sparse tables concatenated in field order (views on the weights are not possible; lists)."""
    return [torch.cat(list(e.table_weights().values())) for e in _embeddings(model, dim)]


def dnis(
    model: CTRModel,
    train: InMemoryData,
    valid: InMemoryData,
    config: TrainConfig,
    dim: int,
    settings: DNISParams,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> DNISResult:
    """Search, prune and retrain `model`'s embedding dimensions; the model ends with the retrained weights.

    `on_epoch` is called after every retrain epoch (a study prunes there)."""
    if not 0 < settings.prune_ratio < 1:
        raise ValueError(f"prune_ratio must be between 0 and 1, got {settings.prune_ratio}")
    if settings.rewind not in (True, False, "auto"):
        raise ValueError(f"rewind must be true, false or 'auto', got {settings.rewind!r}")
    mask = attach_dimension_mask(model, dim, settings)
    alpha = mask.alpha
    initial = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith((".alpha", ".hard"))}
    fixed = config.model_copy(update=dict(patience=10**6, lr_decay=1.0))
    alpha.requires_grad_(False)
    if settings.warmup_epochs:
        fit(
            model,
            train,
            valid,
            fixed.model_copy(update={"max_epochs": settings.warmup_epochs}),
            hooks=TrainHooks(restore_best=False, exclude=(alpha,)),
        )
    alpha.requires_grad_(True)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    stream = itertools.chain.from_iterable(valid.batches(config.batch_size, shuffle=True, seed=config.seed + e) for e in itertools.count())

    def alpha_step() -> None:
        batch = next(stream).to(alpha.device)
        model.eval()  # as the model is scored: no dropout, and validation rows do not move batch-norm statistics
        try:
            loss = loss_fn(model(batch), batch.label) + settings.l1 * alpha.abs().sum()
            (grad,) = torch.autograd.grad(loss, alpha)
        finally:
            model.train()
        with torch.no_grad():
            grad = grad / grad.abs().mean(dim=1, keepdim=True).clamp_min(1e-12)
            alpha.sub_(settings.alpha_lr * grad).clamp_(0.0, 1.0)
        alpha.grad = None

    searched = fit(
        model,
        train,
        valid,
        fixed.model_copy(update={"max_epochs": settings.search_epochs}),
        hooks=TrainHooks(after_step=alpha_step, exclude=(alpha,), restore_best=False),
    )
    embeddings = _embeddings(model, dim)
    with torch.no_grad():
        all_rows = torch.arange(mask.row_block.shape[0], device=alpha.device)
        multipliers = mask.row_multipliers(all_rows)
        for embedding in embeddings:
            tables = list(embedding.table_weights().values())
            for table, part in zip(tables, torch.split(multipliers, mask.vocab_sizes), strict=True):
                table.mul_(part)  # fold alpha into the weights
        magnitude = sum(t.abs() for t in _tables(model, dim))
        padding = torch.isin(all_rows, mask.offsets)
        magnitude[padding] = -1.0  # padding rows are zero and never kept
        candidates = int((~padding).sum()) * dim
        keep = candidates - round(settings.prune_ratio * candidates)
        threshold = torch.topk(magnitude.flatten(), keep).values.min() if keep > 0 else float("inf")
        hard = magnitude >= threshold
        hard[padding] = False
    mask.set_hard(hard)
    searched_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    reapply = mask_keeper(model, dim, mask)
    runs = []  # (retrain, rewound, its start, its weights)
    for rewind in (False, True) if settings.rewind == "auto" else (bool(settings.rewind),):
        model.load_state_dict(searched_weights)
        if rewind:
            model.load_state_dict(initial, strict=False)
        reapply()
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        # a study sees the retrains' epochs one after the other
        before = sum(len(run[0].history) for run in runs)
        report = None if on_epoch is None else _shifted(on_epoch, before)
        retrained = fit(model, train, valid, config, on_epoch=report, hooks=TrainHooks(after_step=reapply, exclude=(alpha,)))
        runs.append((retrained, rewind, start, {k: v.detach().clone() for k, v in model.state_dict().items()}))
    retrained, rewound, start, weights = max(runs, key=lambda run: run[0].best_valid_auc)  # the first of equals
    model.load_state_dict(weights)
    names = [f.name for f in embeddings[0].sparse]
    return DNISResult(
        dims=dict(zip(names, mask.dims(), strict=True)),
        mask=hard.cpu(),
        full_params=candidates * len(embeddings),
        kept_params=int(hard.sum()) * len(embeddings),
        search=searched,
        retrain=retrained,
        start=start,
        rewound=rewound,
    )


def _shifted(on_epoch: Callable[[EpochRecord], None], before: int) -> Callable[[EpochRecord], None]:
    """`on_epoch` with epochs numbered on from `before` (a second retrain's epochs follow the first's)."""
    return lambda record: on_epoch(dataclasses.replace(record, epoch=record.epoch + before))


def mask_keeper(model: CTRModel, dim: int, mask: DimensionMask):
    """A function that zeroes the pruned entries of the model's d-wide tables (run after every step)."""
    embeddings = _embeddings(model, dim)

    def reapply() -> None:
        with torch.no_grad():
            for embedding in embeddings:
                for table, part in zip(embedding.table_weights().values(), torch.split(mask.hard, mask.vocab_sizes), strict=True):
                    table.mul_(part)

    return reapply


def apply_searched_dims(model: CTRModel, dim: int, settings: DNISParams, hard: torch.Tensor, start: dict[str, torch.Tensor]):
    """Set `model` up for DNIS's retrain (the mask and the weights it started from); returns the after-step hook."""
    mask = attach_dimension_mask(model, dim, settings)
    if mask.row_block.shape[0] != hard.shape[0] or hard.shape[1] != dim:
        raise ValueError(f"the searched mask is {tuple(hard.shape)}, this model's tables need ({mask.row_block.shape[0]}, {dim})")
    mask.set_hard(hard)
    model.load_state_dict(start)
    return mask_keeper(model, dim, mask)
