"""Tracking over HTTP: a real `mlflow server` on loopback receives params, metrics and artifacts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import RankConfig
from tests.conftest import ROOT, check_package_stored_once, free_port, tree_bytes, wait_http


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    mlflow_bin = ROOT / ".venv" / "bin" / "mlflow"
    cmd = [str(mlflow_bin) if mlflow_bin.exists() else "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += [
        "--backend-store-uri",
        f"sqlite:///{tmp_path}/server.db",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--workers",
        "1",
    ]
    log = tmp_path / "server.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc, log, 90)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_pipeline_logs_to_http_server(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    # stages, model and registry over HTTP, the chosen model a blend (a pyfunc carrying the package); size proves nothing
    config.write_text("train: {max_epochs: 2, choose: blend}\nsearch: {methods: []}\n")
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "--rows",
        "5000",
        "--config",
        str(config),
        "--out",
        str(out),
        "--tracking-uri",
        mlflow_server,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("ctr-pipeline")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert {"ingest", "rank"} <= set(runs)
    rank = runs["rank"]
    assert rank.data.params["score"] == RankConfig().score
    assert rank.data.metrics["cells"] > 0
    assert runs["ingest"].data.metrics["train_rows"] > 0
    artifacts = {a.path for a in client.list_artifacts(rank.info.run_id)}
    assert {"ranking.csv", "pairs.csv", "quality.json", "ranking.png"} <= artifacts
    local = client.download_artifacts(rank.info.run_id, "ranking.csv", str(tmp_path))
    assert Path(local).read_text() == (out / "rank" / "ranking.csv").read_text()
    report = json.loads((out / "metrics.json").read_text())  # the model went over HTTP too, and was registered there
    name, version = report["registered_model"].removeprefix("models:/").split("/")
    assert client.get_model_version(name, version).run_id == report["run_id"] == runs["train"].info.run_id
    # The package went over HTTP once, inside the pyfunc model; every kind of reference fetches it whole from there.
    check_package_stored_once(mlflow_server, report, tree_bytes(out / "train" / "package"))
