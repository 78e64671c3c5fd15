"""The GPU benchmark is run blind on a lent machine: keep it runnable, rehearsed here on CPU with tiny batches."""

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
        "--anchor",
        "1000",
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("autoint", "fp32"),
        ("autoint", "bf16"),
        ("deepfm", "fp32"),
        ("deepfm", "bf16"),
    ]
    assert all(r["samples_per_s_compute"] > 0 and r["samples_per_s_with_copies"] > 0 for r in rows)
    assert "backend torchrec (the CLI's default)" in done.stdout and all(r["backend"] == "torchrec" for r in rows)
    autoint = [r for r in rows if r["model"] == "autoint"]  # the ratio to a same-sitting anchor figure given on the command line
    assert f"{autoint[0]['samples_per_s_compute'] / 1000:.2f}x FuxiCTR's 1,000, this host and sitting" in done.stdout


def test_gpu_bench_attention_paths_interleave(tmp_path):
    out = tmp_path / "ab.json"
    done = run("--device", "cpu", "--attention-ab", "1", "--batch", "64", "--steps", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    found = json.loads(out.read_text())["attention_ab"]
    assert set(found) == {"fp32", "bf16"}  # each precision's own interleaved rounds
    for precision in found.values():
        assert set(precision["median"]) == {"fused", "block", "per_head"} and min(precision["median"].values()) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_bench_refuses_cuda_without_a_gpu():
    done = run("--device", "cuda")
    assert done.returncode == 2 and done.stderr.strip() == "error: --device cuda but no CUDA GPU is visible"
