"""The rank stage on a Ray cluster of 2 workers: byte-identical outputs to the local engine on the same row groups."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import ROOT, free_port

RAY = ROOT / ".venv" / "bin" / "ray"
OUTPUTS = ("ranking.csv", "pairs.csv", "quality.json", "ranking.png")


def _pipeline(*args):
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # the cluster's token auth: the driver sends ~/.ray/auth_token
    command = [sys.executable, "-m", "pipeline", *args, "--no-tracking"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_rank_on_a_two_worker_ray_cluster_equals_the_local_engine_byte_for_byte(tmp_path):
    if not RAY.is_file():
        pytest.skip("ray is not installed in .venv: run make setup")
    local, remote = tmp_path / "local", tmp_path / "ray"
    done = _pipeline("run", "--stages", "ingest,rank", "--rows", "30000", "--out", str(local))
    assert done.returncode == 0, done.stderr
    # The same rows in small row groups, so that the Ray tasks get several runs of them each.
    (remote / "ingest").mkdir(parents=True)
    shutil.copytree(local / "ingest", remote / "ingest", dirs_exist_ok=True)
    for split in ("train", "valid", "test"):
        pl.read_parquet(local / "ingest" / f"{split}.parquet").write_parquet(remote / "ingest" / f"{split}.parquet", row_group_size=1500)
    port = free_port()
    env_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    start = [
        str(RAY),
        "start",
        "--head",
        "--num-cpus",
        "2",
        "--port",
        str(port),
        "--node-ip-address",
        "127.0.0.1",
        "--include-dashboard",
        "false",
    ]
    started = subprocess.run([*start, "--disable-usage-stats", "--temp-dir", str(env_dir)], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        done = _pipeline("rank", "--out", str(remote), "--engine", "ray", "--ray-address", f"127.0.0.1:{port}")
        assert done.returncode == 0, done.stderr[-3000:]
        for name in OUTPUTS:
            assert (remote / "rank" / name).read_bytes() == (local / "rank" / name).read_bytes(), name
        # A score whose null is drawn batch by batch in sequence says it runs locally: one line, exit 2.
        config = tmp_path / "permutation.yaml"
        config.write_text("rank: {score: permutation}\n")
        done = _pipeline("rank", "--out", str(remote), "--engine", "ray", "--ray-address", f"127.0.0.1:{port}", "--config", str(config))
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [
            "error: rank.score 'permutation' draws its null batch by batch in sequence; it runs with engine.kind: local"
        ]
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(env_dir, ignore_errors=True)
