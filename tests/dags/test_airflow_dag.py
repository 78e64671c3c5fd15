"""The Airflow DAG end to end: `airflow dags test ctr_pipeline` from Airflow's own venv on a small synthetic run."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

AIRFLOW = ROOT / ".venv-airflow" / "bin" / "airflow"
STAGES = ["ingest", "rank", "search", "train", "report"]


@pytest.mark.slow
def test_dag_runs_every_stage_task_and_logs_the_mlflow_run(tmp_path):
    if not AIRFLOW.is_file():
        pytest.skip("Airflow's venv is missing: run `make airflow` (make test does)")
    from mlflow.tracking import MlflowClient

    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)
    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 2}\n")
    out, uri = tmp_path / "out", f"sqlite:///{tmp_path / 'mlflow.db'}"
    conf = {"python": sys.executable, "out": str(out), "config": str(config), "tracking_uri": uri, "extra": "--rows 5000"}
    done = subprocess.run(
        [str(AIRFLOW), "dags", "test", "ctr_pipeline", "2026-11-29", "-c", json.dumps(conf)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    states = subprocess.run(
        [str(AIRFLOW), "tasks", "states-for-dag-run", "ctr_pipeline", "2026-11-29", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(states.stdout[states.stdout.index("[") :])
    assert {r["task_id"]: r["state"] for r in rows} == dict.fromkeys(STAGES, "success")
    # The last task reused every earlier stage's output and wrote the report.
    journal = json.loads((out / "run.json").read_text())
    assert journal["status"] == "succeeded" and journal["stages"]["report"]["action"] == "ran"
    assert {journal["stages"][s]["action"] for s in ("ingest", "rank", "train")} == {"reused"}
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ctr-pipeline").experiment_id])
    trained = [r for r in runs if r.info.run_name == "train" and "reused" not in r.data.params]
    assert len(trained) == 1 and trained[0].info.status == "FINISHED" and "test_auc" in trained[0].data.metrics
    assert sum(r.info.run_name == "train" for r in runs) == 2  # the report task logged train as reused
    report = next(r for r in runs if r.info.run_name == "report" and r.data.params.get("reused") is None)
    assert [a.path for a in client.list_artifacts(report.info.run_id)] == ["report.html"]
