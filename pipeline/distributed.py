"""Distributed training entry point, one process per device, launched by torchrun.

    torchrun --nproc-per-node 2 -m pipeline.distributed --out runs/latest [--config cfg.yaml] [--model autoint]

Reads the ingest stage's output in OUT (run `python -m pipeline run --stages
ingest` first), shards the model's embedding tables over the processes with
torchrec's DistributedModelParallel (see models/distributed.py), trains with
the config's train section and writes OUT/train_distributed/metrics.json
(valid and test AUC / logloss over the whole splits) from rank 0. Backend:
NCCL when CUDA is present, else gloo.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from featuremap.errors import InputError
from pipeline import catalog
from pipeline.assemble import assemble, derive, model_spec, resolved, searched_states
from pipeline.cli import EXIT_USER_ERROR
from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.upstream import load_split, selected_features, top_features


def run(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist

    from models.distributed import ShardingConfig, fit_sharded, gathered_evaluator
    from models.trainer import resolve_precision

    parser = argparse.ArgumentParser(prog="torchrun ... -m pipeline.distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--model")
    parser.add_argument("--sparse-optimizer", default="auto", help="adam (CUDA), exact_row_wise_adagrad, exact_sgd, ...")
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        raise UserError("launch with torchrun (it sets RANK, WORLD_SIZE, MASTER_ADDR); see docs/training.md")
    cfg = load_config(args.config, {"out": str(args.out), **({"train": {"model": args.model}} if args.model else {})})
    ingest_dir = catalog.stage_path(cfg.out, "ingest")
    if not catalog.FEATURE_MAP.at(cfg.out).is_file():
        raise UserError(f"{ingest_dir}: no ingest output; run `python -m pipeline run --stages ingest --out {cfg.out}` first")
    # Every searched state the train stage would apply, checked before any process group starts.
    searched = searched_states(cfg, catalog.stage_path(cfg.out, "search"), set(cfg.search.methods))
    unshardable = [method.name for method, _, _ in searched if not method.shardable]
    if unshardable:
        raise UserError(
            f"the search output ({', '.join(unshardable)}) changes the embeddings in ways sharded tables cannot take; "
            "train it with `python -m pipeline train`, or run distributed training without search.methods"
        )
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        feature_map = catalog.load_feature_map(ingest_dir)
        feature_map = selected_features(cfg.out, feature_map, cfg)  # the rank stage's selection, as train has it
        if cfg.search.methods:  # the search's ranking budget holds for the trained model too
            feature_map = top_features(cfg.out, feature_map, cfg)
        cfg = resolved(cfg, feature_map)  # numeric_as_value auto, as the train stage decides it
        tc = cfg.train
        train, valid, test = (load_split(ingest_dir, s, feature_map, tc.numeric_as_value) for s in ("train", "valid", "test"))
        if train is None or valid is None or len(valid) == 0:
            raise UserError(f"{ingest_dir}: train and a non-empty valid split are needed")
        feature_map, splits = derive(searched, feature_map, {"train": train, "valid": valid, "test": test})  # e.g. encodings
        train, valid, test = splits["train"], splits["valid"], splits["test"]
        # The same assembly as the train stage (seeded: identical initial weights on every process), torchrec tables.
        spec = model_spec(cfg.model_copy(update={"train": tc.model_copy(update={"backend": "torchrec"})}))
        model = assemble(feature_map, spec, searched).model
        config = tc
        if tc.embedding_regularizer > 0 and "embedding_regularizer" not in tc.model_fields_set:  # the default, not asked for
            config = tc.model_copy(update={"embedding_regularizer": 0.0})  # fused sharded tables take no table-wide L2
            if dist.get_rank() == 0:
                print("distributed: the default embedding regulariser is off (fused sharded tables)", file=sys.stderr)
        started = time.perf_counter()
        sharded, result = fit_sharded(model, train, valid, config, ShardingConfig(sparse_optimizer=args.sparse_optimizer))
        device = next(p.device for p in sharded.parameters())
        test_auc, test_logloss = (None, None)
        if test is not None and len(test):
            test_auc, test_logloss = gathered_evaluator(test, tc.batch_size, device, resolve_precision(tc.precision, device))(sharded)
        if dist.get_rank() == 0:
            out = cfg.out / "train_distributed"
            out.mkdir(parents=True, exist_ok=True)
            report = {
                "model": tc.model,
                "world_size": dist.get_world_size(),
                "valid_auc": result.best_valid_auc,
                "valid_logloss": result.best_valid_logloss,
                "test_auc": test_auc,
                "test_logloss": test_logloss,
                "epochs": len(result.history),
                "best_epoch": result.best_epoch,
                "train_samples_per_s": result.train_samples_per_s * dist.get_world_size(),
                "seconds": time.perf_counter() - started,
            }
            catalog.write_json(out / "metrics.json", report)
            print(
                f"train_distributed: valid AUC {result.best_valid_auc:.4f} on {dist.get_world_size()} processes -> {out}", file=sys.stderr
            )
    finally:
        dist.destroy_process_group()
    return 0


def main() -> int:
    try:
        return run()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
