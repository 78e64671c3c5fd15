"""The GPU benchmark is run blind on a lent machine: keep it runnable, rehearsed here on CPU with tiny batches."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_bench.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_gpu_bench_rehearses_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    done = run(
        "--device",
        "cpu",
        "--models",
        "autoint,deepfm",
        "--precisions",
        "fp32,bf16",
        "--batch",
        "64",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--out",
        str(out),
        "--rounds",
        "2",
        "--trainer",
        "--trainer-rows",
        "20000",
        "--trainer-epochs",
        "1",
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(out.read_text())
    rows = found["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("autoint", "fp32"),
        ("autoint", "bf16"),
        ("deepfm", "fp32"),
        ("deepfm", "bf16"),
    ]
    assert all(r["samples_per_s_compute"] > 0 and r["samples_per_s_with_copies"] > 0 for r in rows)
    for r in rows:  # the printed figure is the median of the interleaved rounds, each kept
        assert len(r["rounds"]["compute"]) == 2 and r["samples_per_s_compute"] == sum(r["rounds"]["compute"]) / 2
    # the pipeline's own training loop learns the planted signal (its logits' AUC is the ceiling)
    trainer = found["trainer"]
    assert trainer["device"] == "cpu" and len(trainer["epochs"]) == 1
    assert 0.6 < trainer["best_valid_auc"] < trainer["planted_auc"]
    assert "backend torchrec (the CLI's default)" in done.stdout and all(r["backend"] == "torchrec" for r in rows)


def test_gpu_bench_attention_paths_interleave(tmp_path):
    out = tmp_path / "ab.json"
    done = run("--device", "cpu", "--attention-ab", "1", "--batch", "64", "--steps", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    found = json.loads(out.read_text())["attention_ab"]
    assert set(found) == {"fp32", "bf16"}  # each precision's own interleaved rounds
    for precision in found.values():
        assert set(precision["median"]) == {"kernel", "fused", "block", "per_head"} and min(precision["median"].values()) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_bench_refuses_cuda_without_a_gpu():
    done = run("--device", "cuda")
    assert done.returncode == 2 and done.stderr.strip() == "error: --device cuda but no CUDA GPU is visible"


def test_gpu_bench_reads_the_loss_each_step_or_each_epoch(tmp_path):
    out = tmp_path / "reads.json"
    args = ("--device", "cpu", "--models", "deepfm", "--precisions", "fp32", "--batch", "64", "--steps", "2", "--warmup", "1")
    done = run(*args, "--rounds", "1", "--loss-read", "step,epoch", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["loss_read"] for r in rows] == ["step", "epoch"]
    assert "deepfm    fp32, loss read each epoch:" in done.stdout


@pytest.mark.skipif(importlib.util.find_spec("fuxictr") is not None, reason="fuxictr is importable here")
def test_gpu_bench_says_when_the_fuxictr_anchor_cannot_load():
    anchor = SCRIPT.parents[2] / "shared" / "anchors" / "fuxictr"
    done = run("--device", "cpu", "--models", "deepfm", "--steps", "1", "--fuxictr", str(anchor))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: --fuxictr needs the fuxictr package (2.3.10) importable; setup in {anchor / 'README.md'}"
