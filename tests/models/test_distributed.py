"""torchrec DistributedModelParallel with 2 gloo processes on CPU reaches the 1-process AUC."""

import json
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[2]


def _worker(rank: int, world: int, init: str, result: str) -> None:
    sys.path.insert(0, str(ROOT))
    from models.distributed import fit_sharded
    from models.embedding import EmbeddingConfig
    from models.registry import build_model
    from models.trainer import TrainConfig
    from tests.models.test_models import FM_XOR, _split

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{init}")
    try:
        train, valid = _split()
        torch.manual_seed(0)  # the same initial weights on every process
        model = build_model("autoint", FM_XOR, EmbeddingConfig(dim=4, backend="torchrec", init_std=0.1), {"layers": 1, "heads": 1})
        config = TrainConfig(learning_rate=0.01, batch_size=512, max_epochs=6, precision="fp32", device="cpu")
        sharded, fitted = fit_sharded(model, train, valid, config)
        plan = {f"{path}.{table}": p.sharding_type for path, tables in sharded.plan.plan.items() for table, p in tables.items()}
        if rank == 0:
            history = [r.valid_auc for r in fitted.history]
            Path(result).write_text(json.dumps({"auc": fitted.best_valid_auc, "history": history, "plan": plan}))
    finally:
        dist.destroy_process_group()


def _run(world: int, tmp_path: Path) -> dict:
    init = tempfile.mktemp(dir=tmp_path)
    result = tmp_path / f"result-{world}.json"
    mp.spawn(_worker, args=(world, init, str(result)), nprocs=world, join=True)
    return json.loads(result.read_text())


def test_two_gloo_processes_reach_the_one_process_auc(tmp_path):
    one = _run(1, tmp_path)
    two = _run(2, tmp_path)
    assert one["auc"] > 0.7, one
    assert two["auc"] == pytest.approx(one["auc"], abs=0.02), (one, two)
    # With 2 processes the three tables are sharded table-wise across them.
    assert set(two["plan"].values()) == {"table_wise"}, two["plan"]


def test_torchrun_entry_point_trains_on_the_ingest_output(tmp_path):
    import os
    import subprocess

    from pipeline.cli import main

    out = tmp_path / "out"
    assert main(["run", "--rows", "6000", "--stages", "ingest", "--out", str(out), "--no-tracking"]) == 0
    config = tmp_path / "config.yaml"
    config.write_text("train:\n  model: autoint\n  embedding_dim: 8\n  max_epochs: 2\n  params: {layers: 1}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "pipeline.distributed", "--out", str(out), "--config", str(config)]
    done = subprocess.run([sys.executable, "-m", "pipeline.distributed", *args[2:]], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 2 and "launch with torchrun" in done.stderr  # not under torchrun: one-line error
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args]
    done = subprocess.run(torchrun, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "default embedding regulariser is off" in done.stderr  # the fused sharded tables take no table-wide L2
    report = json.loads((out / "train_distributed" / "metrics.json").read_text())
    assert report["world_size"] == 2 and report["epochs"] == 2 and 0 < report["valid_auc"] <= 1 and report["test_auc"] is not None


def test_distributed_training_refuses_a_searched_state_it_cannot_shard(tmp_path, monkeypatch):
    """Distributed training assembles the model like the train stage: OptFS's searched gates cannot be sharded, so it says so."""
    from featuremap.errors import InputError
    from pipeline.cli import main
    from pipeline.distributed import run

    out = tmp_path / "out"
    assert main(["run", "--rows", "3000", "--stages", "ingest", "--out", str(out), "--no-tracking"]) == 0
    (out / "search").mkdir()
    torch.save({"logits": torch.zeros(1), "rewind": {}, "init": 0.5}, out / "search" / "optfs_gates.pt")
    config = tmp_path / "c.yaml"
    config.write_text("search: {methods: [optfs]}\n")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(InputError, match=r"search output \(optfs\) changes the embeddings"):
        run(["--out", str(out), "--config", str(config)])
    config.write_text("search: {methods: []}\n")  # without the method the state is not applied, and is not an obstacle
    monkeypatch.delenv("RANK")
    with pytest.raises(InputError, match="launch with torchrun"):
        run(["--out", str(out), "--config", str(config)])
