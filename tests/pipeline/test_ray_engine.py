"""The data stages on a Ray cluster of 2 workers: byte-identical outputs to the local engine on the same row groups."""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from filelock import FileLock

from tests.conftest import ROOT, free_port
from tests.pipeline import ray_inputs

RAY = ROOT / ".venv" / "bin" / "ray"
OUTPUTS = ("ranking.csv", "pairs.csv", "quality.json", "ranking.png")


# The cluster runs with token authentication, as docs/operations.md says to run one; its token comes from the
# environment (not ~/.ray/auth_token, which a clean machine lacks and a test should not write).
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def _pipeline(*args):
    env = {**os.environ, **AUTH}  # the driver sends the cluster's token
    command = [sys.executable, "-m", "pipeline", *args, "--no-tracking"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def _stop(group: int) -> None:
    """Stop the cluster's processes, and only them: `ray stop --force` would stop every Ray process of the machine,
    another pytest-xdist worker's cluster included. They share the process group of the `ray start` that made them."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):  # the GCS and the raylet outlive a SIGTERM
        try:
            os.killpg(group, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                os.killpg(group, 0)  # raises once no process of the group is left
                time.sleep(0.2)
        except ProcessLookupError:
            return


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs (`ray start --head`); its address.

    One at a time on the machine (a file lock): pytest-xdist may run this module's two tests on two workers, and two
    heads on one host share fixed default ports (the dashboard's 8265 among them); the first one's GCS was seen to
    lose its raylet at the moment a second head started."""
    if not RAY.is_file():
        pytest.skip("ray is not installed in .venv: run make setup")
    with FileLock(Path(tempfile.gettempdir()) / "ctr-tests-ray-cluster.lock", timeout=900):
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
        head = subprocess.Popen(
            [*start, "--disable-usage-stats", "--temp-dir", str(env_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, which the cluster's processes inherit
            env={**os.environ, **AUTH},
        )
        try:
            _, err = head.communicate(timeout=120)
            assert head.returncode == 0, err[-2000:]
            yield f"127.0.0.1:{port}"
        finally:
            _stop(head.pid)
            shutil.rmtree(env_dir, ignore_errors=True)


@pytest.mark.slow
def test_rank_on_a_two_worker_ray_cluster_equals_the_local_engine_byte_for_byte(tmp_path, cluster):
    local, remote = tmp_path / "local", tmp_path / "ray"
    done = _pipeline("run", "--stages", "ingest,rank", "--rows", "30000", "--out", str(local))
    assert done.returncode == 0, done.stderr
    # The same rows in small row groups, so that the Ray tasks get several runs of them each.
    (remote / "ingest").mkdir(parents=True)
    shutil.copytree(local / "ingest", remote / "ingest", dirs_exist_ok=True)
    for split in ("train", "valid", "test"):
        pl.read_parquet(local / "ingest" / f"{split}.parquet").write_parquet(remote / "ingest" / f"{split}.parquet", row_group_size=1500)
    done = _pipeline("rank", "--out", str(remote), "--engine", "ray", "--ray-address", cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in OUTPUTS:
        assert (remote / "rank" / name).read_bytes() == (local / "rank" / name).read_bytes(), name
    # A score whose null is drawn batch by batch in sequence says it runs locally: one line, exit 2.
    config = tmp_path / "permutation.yaml"
    config.write_text("rank: {score: permutation}\n")
    done = _pipeline("rank", "--out", str(remote), "--engine", "ray", "--ray-address", cluster, "--config", str(config))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: rank.score 'permutation' draws its null batch by batch in sequence; it runs with engine.kind: local"
    ]


@pytest.mark.slow
def test_ingest_on_a_two_worker_ray_cluster_equals_the_local_engine_byte_for_byte(tmp_path, cluster):
    # Two days' partitions (three files in row groups of 900 rows), a side table joined, a multi-valued field, floats
    # with NaN bucketed by a sampled quantile, min_count: every part of the fit and the write crosses the tasks.
    paths, overrides = ray_inputs.write(tmp_path / "inputs")["window"]
    config = tmp_path / "window.yaml"
    config.write_text(yaml.safe_dump(overrides))
    data = [arg for path in paths for arg in ("--data", str(path))]
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        extra = ["--engine", "ray", "--ray-address", cluster] if engine == "ray" else []
        done = _pipeline("run", "--stages", "ingest", *data, "--config", str(config), "--out", str(out), *extra)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[engine] = ray_inputs.files(out / "ingest")
    assert sorted(outputs["ray"]) == sorted(outputs["local"]) and "train.parquet" in outputs["local"]
    assert [n for n in outputs["local"] if outputs["ray"][n] != outputs["local"][n]] == []
