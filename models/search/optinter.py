"""OptInter's search: for each candidate pair, memorise, factorise or naive, learned jointly with the weights.

Search: the model with every pair in "search" mode is trained jointly with its
architecture weights alpha (their own Adam, lr 1e-3 as in the paper's code)
while the softmax temperature anneals per step, t = max(0.01, 1 - 5e-5 * step).
With `arch_split="valid"` the architecture weights are instead updated on
validation batches, one Adam step after every training step (first-order
bi-level search, as DARTS and DNIS do): on the joint training loss the
memorise tables, the mode with the most capacity, fit the training rows
best and win for nearly every pair, noise pairs included.
With `warmup_epochs` the weights first train with alpha held uniform (a
warm start, as DNIS's); on Frappe it did not help on average (bench/RESULTS.md),
so the default is none.
Then each pair takes its argmax mode and the model is retrained from scratch
with those modes fixed (shared trainer, early stopping on validation AUC;
the test split is never read here).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from featuremap import FeatureMap
from models.base import init_dense_layers
from models.data import InMemoryData
from models.embedding import EmbeddingConfig
from models.optinter import MODES, OptInter, OptInterConfig
from models.trainer import TrainConfig, TrainHooks, TrainResult, fit


class OptInterParams(Protocol):
    """What the procedure reads of its settings (`methods.optinter.OptInterSettings`, where the defaults live)."""

    search_epochs: int
    arch_lr: float
    anneal: float  # temperature decrease per step
    compare: bool  # also train all-memorise, all-factorise and all-naive (validation AUC of each)
    arch_split: str  # "valid": alpha on validation batches; "train": alpha joint with the weights (the paper)
    warmup_epochs: int  # the first search epochs train the weights with alpha held uniform (and t at 1)

    def mlp(self) -> dict[str, Any]:
        """The network's settings (MLP and factor regulariser), as OptInterConfig takes them."""
        ...


@dataclass
class OptInterResult:
    modes: list[str]
    weights: np.ndarray  # final softmax(alpha / t) per pair
    search: TrainResult
    retrain: TrainResult
    memorised_rows: int
    model: OptInter
    uniform: dict[str, float]  # all-<mode> validation AUC, when compared
    arch_steps: int  # steps alpha took (the warm-up's none)


def build_optinter(
    feature_map: FeatureMap,
    embedding: EmbeddingConfig,
    pairs: list[tuple[str, str]],
    modes: list[str],
    keys: list[np.ndarray],
    mlp: dict[str, Any],
    seed: int,
) -> OptInter:
    """An OptInter model with these pair modes and memorised vocabularies (seeded initial weights).

    mlp: OptInterConfig's MLP settings (hidden, dropout, batch_norm).
    """
    torch.manual_seed(seed)
    config = OptInterConfig(pairs=list(pairs), modes=list(modes), cross_sizes=[len(k) for k in keys], **mlp)
    model = OptInter(feature_map, embedding, config)
    init_dense_layers(model)
    model.set_cross_keys([torch.from_numpy(k) for k in keys])
    return model


def optinter(
    feature_map: FeatureMap,
    embedding: EmbeddingConfig,
    pairs: list[tuple[str, str]],
    keys: list[np.ndarray],
    train: InMemoryData,
    valid: InMemoryData,
    config: TrainConfig,
    settings: OptInterParams,
) -> OptInterResult:
    """Search a mode per pair, then retrain with the chosen modes."""
    if not pairs:
        raise ValueError("OptInter needs at least one candidate pair")
    if not 0 <= settings.warmup_epochs < settings.search_epochs:
        raise ValueError(f"warmup_epochs must be below search_epochs ({settings.search_epochs}), got {settings.warmup_epochs}")
    model = build_optinter(feature_map, embedding, pairs, ["search"] * len(pairs), keys, settings.mlp(), config.seed)
    step = 0

    def start_epoch(epoch: int) -> None:
        """Alpha takes no steps (and the temperature stays 1) until the warm-up is over."""
        model.alpha.requires_grad_(epoch > settings.warmup_epochs)

    def anneal() -> None:
        nonlocal step
        if not model.alpha.requires_grad:
            return
        step += 1
        model.temperature = max(0.01, 1.0 - settings.anneal * step)

    arch_optimizer = torch.optim.Adam([model.alpha], lr=settings.arch_lr)
    if settings.arch_split == "valid":
        loss_fn = torch.nn.BCEWithLogitsLoss()
        stream = itertools.chain.from_iterable(
            valid.batches(config.batch_size, shuffle=True, seed=config.seed + e) for e in itertools.count()
        )

        def valid_step() -> None:
            if not model.alpha.requires_grad:
                return
            anneal()
            batch = next(stream).to(model.alpha.device)
            model.eval()  # as the model is scored: no dropout, and validation rows do not move batch-norm statistics
            try:
                (grad,) = torch.autograd.grad(loss_fn(model(batch), batch.label), model.alpha)
            finally:
                model.train()
            model.alpha.grad = grad
            arch_optimizer.step()
            model.alpha.grad = None

        hooks = TrainHooks(after_step=valid_step, on_epoch_start=start_epoch, exclude=(model.alpha,), restore_best=False)
    elif settings.arch_split == "train":  # a frozen alpha has no gradient, so its Adam skips it
        hooks = TrainHooks(optimizer=arch_optimizer, after_step=anneal, on_epoch_start=start_epoch, restore_best=False)
    else:
        raise ValueError(f"arch_split must be 'train' or 'valid', got {settings.arch_split!r}")
    fixed = config.model_copy(update=dict(max_epochs=settings.search_epochs, patience=10**6, lr_decay=1.0))
    searched = fit(model, train, valid, fixed, hooks=hooks)
    with torch.no_grad():
        weights = model.mode_weights().cpu().numpy()
    modes = [MODES[i] for i in weights.argmax(axis=1)]
    final = build_optinter(feature_map, embedding, pairs, modes, keys, settings.mlp(), config.seed)
    retrained = fit(final, train, valid, config)
    uniform = {}
    if settings.compare:
        for mode in MODES:
            other = build_optinter(feature_map, embedding, pairs, [mode] * len(pairs), keys, settings.mlp(), config.seed)
            uniform[mode] = fit(other, train, valid, config).best_valid_auc
    return OptInterResult(modes, weights, searched, retrained, final.memorised_rows(), final, uniform, step)
