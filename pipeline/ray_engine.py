"""The rank stage's counting as Ray tasks (`engine.kind: ray`): each task counts a run of an encoded split's row groups
with the same code as a local pass (`features.ranking.count_batches`), and the driver adds the counts in row order.

Counts add exactly, and the pair sample takes rows by their number in the whole split, so the merged result equals
one local pass and the rank stage's outputs are byte-identical. The scores that draw their null batch by batch in
sequence (`shifted`, `permutation`) depend on where batches start; they run with the local engine. Tasks read the
split from its path: on a cluster, every node must see `OUT/ingest` (a shared filesystem) and have this project
installed (the same venv, or a Ray runtime environment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featuremap import FeatureMap
from features.ranking import Counted, count_batches
from features.settings import RankParams
from pipeline import catalog
from pipeline.config import EngineConfig
from pipeline.errors import UserError

SEQUENTIAL_SCORES = ("shifted", "permutation")


def count_range(path: str, row_groups: list[int], first_row: int, feature_map: FeatureMap, params: RankParams, batch_rows: int) -> Counted:
    """One task: the counts of `row_groups` of the split at `path`, whose first row is `first_row` of the split."""
    return count_batches(catalog.rank_batches(Path(path), feature_map, batch_rows, row_groups=row_groups), feature_map, params, first_row)


def _connect(engine: EngineConfig) -> Any:
    import ray

    if not ray.is_initialized():
        if engine.address:
            ray.init(address=engine.address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=engine.workers, include_dashboard=False, log_to_driver=False)
    return ray


def count_on_ray(path: Path, feature_map: FeatureMap, params: RankParams, batch_rows: int, engine: EngineConfig) -> Counted:
    """The split's counts from `engine.shards` Ray tasks, added in row order."""
    if params.score in SEQUENTIAL_SCORES:
        raise UserError(f"rank.score {params.score!r} draws its null batch by batch in sequence; it runs with engine.kind: local")
    try:
        ray = _connect(engine)
    except ImportError as exc:
        raise UserError("engine.kind ray needs the ray package (pip install ray; make setup installs it)") from exc
    except ConnectionError as exc:
        raise UserError(f"cannot reach the Ray cluster at {engine.address}: {exc}") from exc
    task = ray.remote(count_range)
    runs = catalog.row_group_shards(path, engine.shards)
    futures = [task.remote(str(path), groups, first, feature_map, params, batch_rows) for groups, first in runs]
    merged = count_batches(iter(()), feature_map, params)  # empty
    for part in ray.get(futures):  # in row order; Ray hands back read-only arrays, so the sums go into fresh ones
        merged.merge(part)
    return merged
