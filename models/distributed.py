"""Training under torchrec's DistributedModelParallel: embedding tables sharded across processes.

Launch one process per device (torchrun, or torch.multiprocessing in tests);
each calls `fit_sharded` with the full splits and its rank:
- the model is built with the torchrec backend, and its EmbeddingBagCollections
  are sharded table-wise by torchrec's planner (tables whose width is not a
  multiple of 4, such as LR's one-column weights, stay data-parallel: FBGEMM's
  fused kernels need widths divisible by 4); the dense layers are replicated
  and their gradients all-reduced (DDP);
- sharded tables are updated by the fused FBGEMM optimizer inside the
  backward pass: Adam on CUDA; on CPU, FBGEMM offers only Adagrad-family and
  SGD kernels, so row-wise Adagrad is used there (`sparse_optimizer`);
- each process trains on its own slice of every shuffled epoch (global batch
  = config.batch_size, split evenly), and validation predictions are gathered
  from all processes so every process takes the same early-stopping decisions.
The embedding regulariser is not applied to fused tables (set it to 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from featuremap.errors import InputError
from models.batching import EncodedBatch
from models.data import InMemoryData
from models.metrics import metrics_of
from models.trainer import TrainConfig, TrainResult, fit, predict, resolve_device, resolve_precision


class ShardedData(InMemoryData):
    """This process's slice of each epoch: the same number of rows on every process, so collectives line up."""

    def __init__(self, data: InMemoryData, rank: int, world_size: int) -> None:
        super().__init__(data.columns, data.label, data.feature_map, data.numeric_as_value)
        self.rank, self.world_size = rank, world_size

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0, start: int = 0) -> Iterator[EncodedBatch]:
        order = np.random.default_rng(seed).permutation(len(self.label)) if shuffle else np.arange(len(self.label))
        per_rank = len(order) // self.world_size  # drop at most world_size - 1 rows of the epoch
        mine = order[self.rank :: self.world_size][:per_rank]
        local = max(1, batch_size // self.world_size)
        view = InMemoryData(self.columns, self.label, self.feature_map, self.numeric_as_value)
        for first in range(start * local, per_rank, local):
            yield from view.batches_of(mine[first : first + local])


@dataclass(frozen=True)
class ShardingConfig:
    """How the embedding tables are sharded and updated."""

    sparse_optimizer: str = "auto"  # auto: adam on CUDA, exact_row_wise_adagrad on CPU
    sparse_learning_rate: float | None = None  # default: TrainConfig.learning_rate (Adam), 0.05 (Adagrad)


def shard_model(model: torch.nn.Module, device: torch.device, learning_rate: float, config: ShardingConfig) -> torch.nn.Module:
    """Wrap `model` (built with the torchrec backend) in DistributedModelParallel with a table-wise plan."""
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec import EmbeddingBagCollection
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.distributed.types import ShardingType

    name = config.sparse_optimizer
    if name == "auto":
        name = "adam" if device.type == "cuda" else "exact_row_wise_adagrad"
    optimizer = EmbOptimType(name)
    if device.type == "cpu" and optimizer == EmbOptimType.ADAM:
        raise InputError("FBGEMM's fused Adam runs on CUDA only; on CPU use sparse_optimizer exact_row_wise_adagrad")
    lr = config.sparse_learning_rate or (learning_rate if optimizer == EmbOptimType.ADAM else 0.05)
    constraints = {}
    for module in model.modules():
        if isinstance(module, EmbeddingBagCollection):
            for table in module.embedding_bag_configs():
                kinds = [ShardingType.TABLE_WISE.value] if table.embedding_dim % 4 == 0 else [ShardingType.DATA_PARALLEL.value]
                constraints[table.name] = ParameterConstraints(sharding_types=kinds)
    sharder = EmbeddingBagCollectionSharder(fused_params={"optimizer": optimizer, "learning_rate": lr})
    world = dist.get_world_size()
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=world, compute_device=device.type), constraints=constraints)
    plan = planner.collective_plan(model, [sharder], dist.GroupMember.WORLD)
    return DistributedModelParallel(model, device=device, plan=plan, sharders=[sharder])


def gathered_evaluator(valid: InMemoryData, batch_size: int, device: torch.device, autocast: torch.dtype | None):
    """AUC and logloss over the whole validation split: each process scores its slice, all gather the results."""
    rank, world = dist.get_rank(), dist.get_world_size()
    slices = np.array_split(np.arange(len(valid)), world)
    size = max(len(s) for s in slices)
    mine = slices[rank]
    padded = np.concatenate([mine, np.repeat(mine[-1:], size - len(mine))])  # equal batch counts on every process

    def evaluate(model: torch.nn.Module) -> tuple[float, float]:
        batches = (valid.batches_of(padded[i : i + batch_size]) for i in range(0, size, batch_size))
        probs, labels = predict(model, (b for group in batches for b in group), device, autocast)
        gathered: list = [None] * world
        dist.all_gather_object(gathered, (probs[: len(mine)], labels[: len(mine)]))
        p = np.concatenate([g[0] for g in gathered])
        y = np.concatenate([g[1] for g in gathered])
        return metrics_of(y, p)

    return evaluate


def fit_sharded(
    model: torch.nn.Module, train: InMemoryData, valid: InMemoryData, config: TrainConfig, sharding: ShardingConfig | None = None
) -> tuple[torch.nn.Module, TrainResult]:
    """Shard `model` over the initialised process group and train it with the shared trainer."""
    if not dist.is_initialized():
        raise InputError("fit_sharded needs an initialised process group (launch with torchrun)")
    if config.embedding_regularizer > 0:
        raise InputError("the embedding regulariser is not applied to fused sharded tables; set embedding_regularizer 0")
    device = resolve_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", dist.get_rank() % torch.cuda.device_count())
        torch.cuda.set_device(device)
    sharded = shard_model(model, device, config.learning_rate, sharding or ShardingConfig())
    evaluator = gathered_evaluator(valid, config.batch_size, device, resolve_precision(config.precision, device))
    shard = ShardedData(train, dist.get_rank(), dist.get_world_size())
    result = fit(sharded, shard, valid, config, evaluator=evaluator, fused_optimizer=sharded.fused_optimizer)
    return sharded, result
