"""The one training loop for every model (BARS / FuxiCTR conventions).

Adam; binary cross-entropy on logits plus an L2 embedding regulariser
(lambda/2 · ||W||² over every embedding table, as FuxiCTR); validation AUC
after each epoch; on no improvement the learning rate is multiplied by 0.1
and a miss is counted; after `patience` misses in a row training stops; the
best epoch's weights are restored.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from common.errors import UserError
from models.base import CTRModel
from models.batching import EncodedBatch
from models.data import InMemoryData


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (BARS defaults)."""

    learning_rate: float = 1e-3
    batch_size: int = 4096
    max_epochs: int = 100
    patience: int = 2
    embedding_regularizer: float = 0.0
    lr_decay: float = 0.1
    seed: int = 2021
    device: str = "auto"


@dataclass
class EpochRecord:
    """One epoch's measurements."""

    epoch: int
    train_loss: float
    valid_auc: float
    valid_logloss: float
    learning_rate: float
    train_seconds: float
    train_samples_per_s: float


@dataclass
class TrainResult:
    """History and the best epoch (whose weights the model holds after `fit`)."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_auc: float = float("-inf")
    best_valid_logloss: float = float("inf")

    @property
    def train_samples_per_s(self) -> float:
        """Median training throughput over epochs."""
        return float(np.median([r.train_samples_per_s for r in self.history])) if self.history else 0.0


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; asking for CUDA without one is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but no CUDA GPU is available here; use --device cpu or auto")
    return torch.device(name)


@torch.no_grad()
def predict(model: CTRModel, batches: Iterable[EncodedBatch], device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Click probabilities and labels over `batches`."""
    model.eval()
    probs, labels = [], []
    for batch in batches:
        batch = batch.to(device)
        probs.append(torch.sigmoid(model(batch)).float().cpu().numpy())
        labels.append(batch.label.cpu().numpy())
    return np.concatenate(probs), np.concatenate(labels)


def evaluate(model: CTRModel, data: InMemoryData, batch_size: int, device: torch.device) -> tuple[float, float]:
    """AUC and log loss of `model` on `data`."""
    if len(data) == 0:
        raise UserError("the evaluation split is empty; give the valid/test split some rows")
    probs, labels = predict(model, data.batches(batch_size), device)
    return float(roc_auc_score(labels, probs)), float(log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1]))


def fit(
    model: CTRModel,
    train: InMemoryData,
    valid: InMemoryData,
    config: TrainConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train with early stopping on validation AUC and restore the best epoch's weights."""
    if len(valid) == 0:
        raise UserError("the validation split is empty; early stopping needs validation rows (set split.valid > 0)")
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    misses = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        started = time.perf_counter()
        total, seen = 0.0, 0
        for batch in train.batches(config.batch_size, shuffle=True, seed=config.seed + epoch):
            batch = batch.to(device)
            loss = loss_fn(model(batch), batch.label)
            if config.embedding_regularizer > 0:
                loss = loss + config.embedding_regularizer / 2 * sum(w.pow(2).sum() for w in model.embedding_tables())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.rows
            seen += batch.rows
        seconds = time.perf_counter() - started
        auc, logloss = evaluate(model, valid, config.batch_size, device)
        record = EpochRecord(epoch, total / seen, auc, logloss, optimizer.param_groups[0]["lr"], seconds, seen / seconds)
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if auc > result.best_valid_auc:
            result.best_epoch, result.best_valid_auc, result.best_valid_logloss = epoch, auc, logloss
            best_state = copy.deepcopy(model.state_dict())
            misses = 0
        else:
            misses += 1
            for group in optimizer.param_groups:
                group["lr"] *= config.lr_decay
            if misses >= config.patience:
                break
    model.load_state_dict(best_state)
    return result
