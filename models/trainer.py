"""The one training loop for every model (BARS / FuxiCTR conventions).

Adam (with `embedding_optimizer: lazy_adam` the embedding tables' own Adam,
which moves only the rows a batch looks up); binary cross-entropy on logits
plus an L2 embedding regulariser (lambda/2 · ||W||² over every embedding
table, as FuxiCTR); validation AUC
after each epoch; on no improvement (by more than `min_delta`) the learning
rate is multiplied by 0.1 and a miss is counted; after `patience` misses in a
row training stops; the best epoch's weights are restored. With `lr_schedule`
cosine or linear the learning rate is also annealed every step towards 0
over `max_epochs` epochs.

Mixed precision: autocast to bfloat16 (float16 with loss scaling on GPUs
without bf16) on CUDA and on CPUs whose bf16 matrix products run several
times as fast as fp32 (AMX tiles; AVX-512 BF16 on AMD, as Zen 4: a rule on the
CPU's flags, so that a host always trains and scores in one precision);
weights, optimizer state and the loss stay float32. Checkpoints: with a checkpoint
path, the full training state (weights, optimizer, best weights, history,
RNG, position in the epoch) is written atomically after every epoch and
every `checkpoint_seconds` inside one, and `fit` resumes from it; the batch
order is a function of (seed, epoch), so a resumed run sees the same batches
as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from featuremap.errors import InputError
from models import kernels
from models.base import CTRModel
from models.batching import EncodedBatch
from models.data import InMemoryData
from models.embedding import FeatureEmbedding
from models.layers import MultiHeadSelfAttention
from models.metrics import metrics_of
from models.settings import DEVICE_PATTERN, TrainConfig


@dataclass
class TrainHooks:
    """What a search method adds to the shared loop: a loss term, a per-epoch callback, its own optimizer."""

    extra_loss: Callable[[], torch.Tensor] | None = None  # added to every batch's loss
    on_epoch_start: Callable[[int], None] | None = None  # called with the epoch number before it trains
    optimizer: torch.optim.Optimizer | None = None  # steps with the model's Adam; its parameters are left out of it
    after_step: Callable[[], None] | None = None  # called after every optimizer step (e.g. an update on validation data)
    exclude: tuple[torch.nn.Parameter, ...] = ()  # parameters the model's Adam leaves alone (a method updates them itself)
    restore_best: bool = True  # False: keep the last epoch's weights (e.g. gates at the final temperature)


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


def _cpu_vendor() -> str:
    """The CPU's vendor id from /proc/cpuinfo ("AuthenticAMD", "GenuineIntel"); "" where there is none to read."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.cache
def cpu_bf16_pays() -> bool:
    """Whether bf16 autocast pays on this CPU: AMX tiles, or AVX-512 BF16 on an AMD CPU.

    A rule on the CPU's flags, not a timing: a timing taken under load can come out either side of any threshold,
    and then two runs of one seed on one host would train (and score) in different precisions. The rule is what the
    timings showed on 2-core hosts (bench/RESULTS.md; `bench.train_bench` prints the host's fp32 and bf16 matmul
    GFLOPS beside its figures): bf16 products run ~15x fp32's with AMX, 3.5-5.4x on AMD EPYC Zen 4 (AVX-512 BF16),
    and 0.8-1.4x on a Xeon with AVX-512 BF16 but no AMX; a CPU without bf16 instructions emulates them far below fp32.
    """
    if torch.cpu._is_amx_tile_supported():
        return True
    return torch.cpu._is_avx512_bf16_supported() and _cpu_vendor() == "AuthenticAMD"


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `name` on `device` (None: plain float32).

    'auto' is bfloat16 on CUDA GPUs that support it (else float16) and on CPUs where it pays (`cpu_bf16_pays`);
    float32 elsewhere.
    """
    if name == "fp32":
        return None
    if device.type == "cuda":
        if name == "fp16" or (name == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16
    if name == "fp16":
        raise InputError("precision 'fp16' needs a CUDA GPU; use 'bf16' or 'fp32' on CPU")
    if name == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and cpu_bf16_pays() else None


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; asking for CUDA without one, or for a device that is none of auto, cpu,
    cuda and cuda:N, is an InputError."""
    if not re.match(DEVICE_PATTERN, name):
        raise InputError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but no CUDA GPU is available here; set the device to cpu or auto")
    return torch.device(name)


@torch.no_grad()
def predict(
    model: CTRModel, batches: Iterable[EncodedBatch], device: torch.device, autocast: torch.dtype | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Click probabilities and labels over `batches`."""
    model.eval()
    probs, labels = [], []
    for batch in batches:
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            logits = model(batch)
        probs.append(torch.sigmoid(logits.float()).cpu().numpy())
        labels.append(batch.label.cpu().numpy())
    return np.concatenate(probs), np.concatenate(labels)


def evaluate(
    model: CTRModel, data: InMemoryData, batch_size: int, device: torch.device, autocast: torch.dtype | None = None
) -> tuple[float, float]:
    """AUC and log loss of `model` on `data`."""
    if len(data) == 0:
        raise InputError("the evaluation split is empty; give the valid/test split some rows")
    probs, labels = predict(model, data.batches(batch_size), device, autocast)
    return metrics_of(labels, probs)


def train_report(model: torch.nn.Module, result: TrainResult, test_auc: float | None, test_logloss: float | None) -> dict:
    """The figures reported for every trained model: best-epoch validation, test, size and speed."""
    return {
        "valid_auc": result.best_valid_auc,
        "valid_logloss": result.best_valid_logloss,
        "test_auc": test_auc,
        "test_logloss": test_logloss,
        "params": sum(p.numel() for p in model.parameters()),
        "embedding_params": sum(w.numel() for w in model.embedding_tables()),
        "train_samples_per_s": result.train_samples_per_s,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
    }


def _save_atomic(state: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def sparse_tables(model: torch.nn.Module, skip: set[int], lazy: bool) -> list[torch.nn.Parameter]:
    """With `lazy`, the weights of the model's embedding lookups (nn.EmbeddingBag and nn.Embedding: the torch backend's,
    a method's shared tables, torchrec's unsharded collections, which hold nn.EmbeddingBag), their gradients made
    sparse (only the looked-up rows); without, none, and every lookup's gradient dense. Parameters in `skip` are left
    as they are (a method's own optimizer steps them)."""
    found: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding | torch.nn.EmbeddingBag) and id(module.weight) not in skip:
            module.sparse = lazy
            if lazy:
                found[id(module.weight)] = module.weight
    return list(found.values())


def _sparse_or_fail(tables: list[torch.nn.Parameter]) -> None:
    """Lazy Adam steps sparse gradients only: a loss term over whole tables makes them dense."""
    if any(w.grad is not None and not w.grad.is_sparse for w in tables):
        raise InputError(
            "train.embedding_optimizer lazy_adam: a loss term reaches every row of an embedding table (a model's own "
            "regulariser over whole tables), so its gradient is dense; use embedding_optimizer adam"
        )


def lr_factor(name: str, steps: int) -> Callable[[int], float] | None:
    """The schedule's multiplier of the learning rate at step `step` (0-based) of `steps`; None for a constant rate."""
    if name == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))  # a float: checkpoints load weights-only
    if name == "linear":
        return lambda step: 1.0 - min(step, steps) / steps
    return None


def fit(
    model: CTRModel,
    train: InMemoryData,
    valid: InMemoryData,
    config: TrainConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    evaluator: Callable[[torch.nn.Module], tuple[float, float]] | None = None,
    fused_optimizer: torch.optim.Optimizer | None = None,
    hooks: TrainHooks | None = None,
) -> TrainResult:
    """Train with early stopping on validation AUC and restore the best epoch's weights.

    With `checkpoint`, resume from it when it exists and was written for the
    same `fingerprint` (model, data and settings); otherwise start afresh.
    The checkpoint file is left in place; the caller removes it once the
    results are safely stored. `evaluator` replaces the validation AUC/logloss
    computation (distributed training gathers predictions from every process);
    `fused_optimizer` is an optimizer applied inside backward (torchrec's fused
    embedding tables) whose learning rate decays with the main one. `hooks`
    let a search method add a loss term, an epoch callback and its own
    optimizer to this same loop.
    """
    hooks = hooks or TrainHooks()
    if len(valid) == 0:
        raise InputError("the validation split is empty; early stopping needs validation rows (set split.valid > 0)")
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    autocast = resolve_precision(config.precision, device)
    for module in model.modules():  # the piecewise-linear encodings' bins from the train rows, before any step
        if isinstance(module, FeatureEmbedding):
            module.fit_piecewise(train.columns)
    model.to(device)
    if device.type == "cpu":  # the kernel built here, not inside the first epoch's timing
        kernels.prepare_cpu_training(autocast is None and any(isinstance(m, MultiHeadSelfAttention) for m in model.modules()))
    own = {id(p) for group in (hooks.optimizer.param_groups if hooks.optimizer else []) for p in group["params"]}
    own |= {id(p) for p in hooks.exclude}
    tables = sparse_tables(model, own, config.embedding_optimizer == "lazy_adam")
    lazy = {id(p) for p in tables}
    # The fused kernel: one pass over each parameter per step. On a 13 M-row embedding table that is 20 ms a step
    # against 93 ms for the default multi-tensor Adam (bench/RESULTS.md, issue 19's sweep); the same update rule.
    dense = [p for p in model.parameters() if id(p) not in own | lazy]
    optimizers: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=config.learning_rate, fused=True)] if dense else []
    if tables:  # lazy Adam: only the rows a batch looks up move (their moments too)
        optimizers.append(torch.optim.SparseAdam(tables, lr=config.learning_rate))
    stepped = [*optimizers, *([hooks.optimizer] if hooks.optimizer is not None else [])]  # every step, in this order
    scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    misses, first_epoch, first_batch, carried = 0, 1, 0, (0.0, 0, 0.0)
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            for optimizer, saved in zip(optimizers, state["optimizer"], strict=True):
                optimizer.load_state_dict(saved)
            scaler.load_state_dict(state["scaler"])
            best_state = state["best_model"]
            result = TrainResult([EpochRecord(**r) for r in state["history"]], **state["best"])
            misses, first_epoch, first_batch, carried = state["misses"], state["epoch"], state["batch"], tuple(state["running"])
            # map_location put the generator states on the device; the setters take them on the CPU
            torch.set_rng_state(state["rng"].cpu())
            if device.type == "cuda" and state.get("cuda_rng"):  # dropout on a GPU draws from its own generator
                torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
            print(f"train: resuming from {checkpoint} at epoch {first_epoch}, batch {first_batch}", file=sys.stderr)
        else:
            print(f"train: {checkpoint} was written for other settings; starting afresh", file=sys.stderr)
    # The groups the schedule and the missed epochs' decay set, taken after a resume (loading an optimizer's state
    # replaces its param groups): the trainer's optimizers' and the fused one's, not a method's own.
    groups = [g for optimizer in [*optimizers, *([fused_optimizer] if fused_optimizer is not None else [])] for g in optimizer.param_groups]
    for group in groups:  # the rate before the schedule's factor; a missed epoch's decay lowers it (kept in checkpoints)
        group.setdefault("base_lr", group["lr"])
    steps_per_epoch = -(-len(train) // config.batch_size)
    schedule = lr_factor(config.lr_schedule, config.max_epochs * steps_per_epoch)

    def save(epoch: int, batch: int, running: tuple[float, int, float]) -> None:
        if checkpoint is None:
            return
        best = {k: getattr(result, k) for k in ("best_epoch", "best_valid_auc", "best_valid_logloss")}
        state = {
            "fingerprint": fingerprint,
            "model": model.state_dict(),
            "optimizer": [optimizer.state_dict() for optimizer in optimizers],
            "scaler": scaler.state_dict(),
            "best_model": best_state,
            "history": [dataclasses.asdict(r) for r in result.history],
            "best": best,
            "misses": misses,
            "epoch": epoch,
            "batch": batch,
            "running": list(running),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        }
        _save_atomic(state, checkpoint)

    stopped = bool(result.history) and misses >= config.patience
    for epoch in range(first_epoch, config.max_epochs + 1):
        if stopped:
            break
        model.train()
        total, seen, elapsed = carried if epoch == first_epoch else (0.0, 0, 0.0)
        started, last_save = time.perf_counter(), time.perf_counter()
        start = first_batch if epoch == first_epoch else 0
        if hooks.on_epoch_start is not None:
            hooks.on_epoch_start(epoch)
        batches = train.batches(config.batch_size, shuffle=True, seed=config.seed + epoch, start=start)
        for index, batch in enumerate(batches, start=start + 1):
            if schedule is not None:
                factor = schedule((epoch - 1) * steps_per_epoch + index - 1)
                for group in groups:
                    group["lr"] = group["base_lr"] * factor
                if fused_optimizer is not None:
                    fused_optimizer.step()  # hands the rate to the fused kernels
            batch = batch.to(device)
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                logits = model(batch)
            loss = loss_fn(logits.float(), batch.label)
            if config.embedding_regularizer > 0:
                loss = loss + config.embedding_regularizer / 2 * sum(w.pow(2).sum() for w in model.regularized_tables())
            if isinstance(model, CTRModel):  # a sharded (DistributedModelParallel) model has no penalty of its own
                loss = loss + model.penalty()
            if hooks.extra_loss is not None:
                loss = loss + hooks.extra_loss()
            for optimizer in stepped:
                optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tables:
                _sparse_or_fail(tables)
            for optimizer in stepped:
                scaler.step(optimizer)
            scaler.update()
            if hooks.after_step is not None:
                hooks.after_step()
            total += float(loss.detach()) * batch.rows
            seen += batch.rows
            if checkpoint is not None and time.perf_counter() - last_save > config.checkpoint_seconds:
                save(epoch, index, (total, seen, elapsed + time.perf_counter() - started))
                last_save = time.perf_counter()
        seconds = elapsed + time.perf_counter() - started
        if evaluator is not None:
            auc, logloss = evaluator(model)
        else:
            auc, logloss = evaluate(model, valid, config.batch_size, device, autocast)
        record = EpochRecord(epoch, total / seen, auc, logloss, optimizers[0].param_groups[0]["lr"], seconds, seen / seconds)
        result.history.append(record)
        better = auc > result.best_valid_auc + config.min_delta
        if auc > result.best_valid_auc:  # the best weights, whether or not the gain resets patience
            result.best_epoch, result.best_valid_auc, result.best_valid_logloss = epoch, auc, logloss
            best_state = copy.deepcopy(model.state_dict())
        if better:
            misses = 0
        else:
            misses += 1
            for group in groups:
                group["lr"] *= config.lr_decay
                group["base_lr"] *= config.lr_decay
            if fused_optimizer is not None:
                fused_optimizer.step()  # hands the new learning rate to the fused kernels
            stopped = misses >= config.patience
        save(epoch + 1, 0, (0.0, 0, 0.0))
        if on_epoch is not None:
            on_epoch(record)
    if hooks.restore_best:
        model.load_state_dict(best_state)
    return result
