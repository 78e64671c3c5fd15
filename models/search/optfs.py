"""OptFS (Lyu et al., WWW 2023): learn which feature values to keep with a gate per value.

Search: every sparse value's embedding (and linear weight) is multiplied by
g_v = sigmoid(tau * m_v) / sigmoid(m0), m_v initialised to m0; the
temperature grows geometrically from 1 to gamma over the search epochs
(continuation), and lambda * sum_v sigmoid(tau * m_v) over the whole table
pushes gates shut. Gates have their own Adam and no weight decay. The model's
weights are snapshotted at the start of epoch `rewind_epoch`.
Retrain: hard gates 1[m_v > 0] / sigmoid(m0), frozen; the model's weights
rewound to the snapshot; a fresh optimiser; the shared trainer's early
stopping on validation AUC.
Counting: a value is kept when m_v > 0 (not when sigmoid(m) > 0, which is
always true); a field is dropped when none of its values is kept.
"""

from __future__ import annotations

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


class ValueGates(nn.Module):
    """OptFS's gate per feature value (Lyu et al., 2023): g_v = sigmoid(tau * m_v) / sigmoid(m0), or hard 1[m_v > 0] / sigmoid(m0).

    One logit per value of every sparse field (padding, OOV and missing ids
    included), stored as one flat vector with per-field offsets. Shared by
    every FeatureEmbedding of a model, so a value's embedding and its linear
    weight are gated alike (and every interaction by g_i * g_j).
    """

    def __init__(self, vocab_sizes: list[int], init: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("offsets", field_offsets(vocab_sizes))
        self.vocab_sizes = list(vocab_sizes)
        self.logits = nn.Parameter(torch.full((sum(vocab_sizes),), float(init)))
        self.norm = float(torch.sigmoid(torch.tensor(init)))
        self.temperature = 1.0
        self.hard = False
        self.width = 1  # one multiplier per value (FeatureEmbedding.attach)

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The gate of every id in `values` (field-major, `lengths` [fields, rows] ids per row), as [ids, 1]."""
        logits = self.logits[torch.repeat_interleave(self.offsets, lengths.sum(dim=1)) + values]
        if self.hard:
            return ((logits > 0).to(logits.dtype) / self.norm).unsqueeze(1)
        return (torch.sigmoid(self.temperature * logits) / self.norm).unsqueeze(1)

    def l1(self) -> torch.Tensor:
        """Sum of the soft gates over the whole table (OptFS's sparsity term)."""
        return torch.sigmoid(self.temperature * self.logits).sum()

    def kept(self) -> list[torch.Tensor]:
        """Per field, a boolean mask of the values whose gate is open (m > 0)."""
        return list(torch.split(self.logits.detach() > 0, self.vocab_sizes))


class OptFSParams(Protocol):
    """What the procedure reads of its settings (`methods.optfs.OptFSSettings`, where the defaults live)."""

    epochs: int  # search epochs T
    gamma: float  # final temperature
    l1: float  # lambda, on the sum of all soft gates
    gate_lr: float | None  # None: the model's learning rate
    init: float  # initial gate logit
    rewind_epoch: int  # the retrain starts from the weights at the start of this search epoch


@dataclass
class OptFSResult:
    """Which values and fields survived, and both phases' training results."""

    kept: dict[str, torch.Tensor]  # per field: bool mask over its ids
    search: TrainResult
    retrain: TrainResult
    logits: torch.Tensor  # the searched gate logits (all fields, flat)
    rewind: dict[str, torch.Tensor]  # the model's weights at the rewind point (without the gates)

    @property
    def kept_values(self) -> int:
        """Kept real values (ids from FIRST_VALUE_ID on)."""
        return int(sum(mask[FIRST_VALUE_ID:].sum() for mask in self.kept.values()))

    @property
    def total_values(self) -> int:
        return int(sum(mask[FIRST_VALUE_ID:].numel() for mask in self.kept.values()))

    @property
    def dropped_fields(self) -> list[str]:
        """Fields none of whose real values is kept (their OOV and missing ids aside), as `kept_values` counts them."""
        return [name for name, mask in self.kept.items() if not mask[FIRST_VALUE_ID:].any()]


def attach_value_gates(model: CTRModel, init: float) -> ValueGates:
    """One ValueGates shared by every FeatureEmbedding of `model`."""
    embeddings = [m for m in model.modules() if isinstance(m, FeatureEmbedding)]
    if not embeddings or not embeddings[0].sparse:
        raise ValueError("OptFS needs a model with sparse field embeddings")
    gates = ValueGates([f.vocab_size for f in embeddings[0].sparse], init)
    for embedding in embeddings:
        embedding.attach("gates", gates)
    return gates


def optfs(
    model: CTRModel,
    train: InMemoryData,
    valid: InMemoryData,
    config: TrainConfig,
    settings: OptFSParams,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> OptFSResult:
    """Search gates on `model`, then retrain it with the hard gates; the model ends with the retrained weights.

    `on_epoch` is called after every retrain epoch (a study prunes there)."""
    if settings.epochs < 1:
        raise ValueError("OptFS needs at least one search epoch")
    gates = attach_value_gates(model, settings.init)
    rewind_epoch = min(max(1, settings.rewind_epoch), settings.epochs)
    snapshot: dict[str, torch.Tensor] = {}

    def on_epoch_start(epoch: int) -> None:
        steps = max(1, settings.epochs - 1)
        gates.temperature = settings.gamma ** ((epoch - 1) / steps) if settings.epochs > 1 else settings.gamma
        if epoch == rewind_epoch:
            snapshot.update({k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("gates.logits")})

    hooks = TrainHooks(
        extra_loss=lambda: settings.l1 * gates.l1(),
        on_epoch_start=on_epoch_start,
        optimizer=torch.optim.Adam([gates.logits], lr=settings.gate_lr or config.learning_rate),
        restore_best=False,  # the gates of the last (hardest) temperature are the searched ones
    )
    search_config = config.model_copy(update=dict(max_epochs=settings.epochs, patience=settings.epochs + 1, lr_decay=1.0))
    searched = fit(model, train, valid, search_config, hooks=hooks)
    gates = apply_searched_gates(model, gates.logits.detach(), snapshot, settings.init)
    retrained = fit(model, train, valid, config, on_epoch=on_epoch)
    kept = dict(
        zip((f.name for f in next(m for m in model.modules() if isinstance(m, FeatureEmbedding)).sparse), gates.kept(), strict=True)
    )
    return OptFSResult(kept=kept, search=searched, retrain=retrained, logits=gates.logits.detach().clone(), rewind=snapshot)


def apply_searched_gates(model: CTRModel, logits: torch.Tensor, rewind: dict[str, torch.Tensor], init: float) -> ValueGates:
    """Set `model` up for OptFS's retrain: frozen hard gates from a search and the rewound weights."""
    gates = attach_value_gates(model, init)
    if gates.logits.shape != logits.shape:
        raise ValueError(f"the searched gates cover {logits.numel()} values, this model's fields {gates.logits.numel()}")
    with torch.no_grad():
        gates.logits.copy_(logits)
    gates.hard = True
    gates.logits.requires_grad_(False)
    # strict but for the gates' own entries (set above): weights of another model (a search on DeepFM applied to FM)
    # would otherwise load in part, silently
    missing, unexpected = model.load_state_dict(rewind, strict=False)
    gate_keys = {k for k in model.state_dict() if k.endswith("gates.logits")}  # as the snapshot leaves them out
    missing = [k for k in missing if k not in gate_keys]
    if missing or unexpected:
        shown = ", ".join([*missing, *unexpected][:4])
        raise ValueError(f"the searched weights are another model's ({len(missing)} missing, {len(unexpected)} unexpected: {shown})")
    return gates
