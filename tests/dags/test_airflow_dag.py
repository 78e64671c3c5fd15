"""The Airflow DAG: two consecutive dates on their own partitions from Airflow's own venv, faults, no shell."""

import html
import json
import os
import subprocess
import sys
from datetime import date

import pytest

from dags.ctr_pipeline_commands import stage_command
from features.synthetic import write_parquet_shards
from tests.conftest import ROOT, tracking_store

AIRFLOW = ROOT / ".venv-airflow" / "bin" / "airflow"
STAGES = ["ingest", "rank", "search", "train", "promote", "report"]


def _params(tmp_path, **over):
    base = {
        "python": sys.executable,
        "config": "",
        "data": "",
        "window_days": 1,
        "runs_root": str(tmp_path / "runs"),
        "tracking_uri": "",
        "extra": "",
    }
    return {**base, **over}


def test_params_reach_the_pipeline_as_arguments_never_through_a_shell(tmp_path):
    def render(template, day):
        return template.replace("{{ ds }}", day.isoformat())

    params = _params(tmp_path, data=str(tmp_path / "d/dt={{ ds }}") + "$(touch INJECTED)", extra="--rows 500; touch X && touch Y")
    command = stage_command(params, date(2026, 11, 29), ["ingest"], render)
    assert command[command.index("--out") + 1] == str(tmp_path / "runs" / "2026-11-29")
    assert command[-7:] == ["--rows", "500;", "touch", "X", "&&", "touch", "Y"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not any((tmp_path / name).exists() for name in ("X", "Y", "INJECTED", "runs"))
    # A window: the partitions of the days ending on the run's date, oldest first
    window = stage_command(_params(tmp_path, data="/d/dt={{ ds }}", window_days=3), date(2026, 3, 1), ["ingest"], render)
    assert [window[i + 1] for i, a in enumerate(window) if a == "--data"] == ["/d/dt=2026-02-27", "/d/dt=2026-02-28", "/d/dt=2026-03-01"]
    assert "partition=/d/dt=2026-02-27,/d/dt=2026-02-28,/d/dt=2026-03-01" in window


def _airflow(tmp_path):
    if not AIRFLOW.is_file():
        pytest.skip("Airflow's venv is missing: run `make airflow` (make test does)")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)

    def run(day, conf):
        done = subprocess.run(
            [str(AIRFLOW), "dags", "test", "ctr_pipeline", day, "-c", json.dumps(conf)], env=env, capture_output=True, text=True
        )
        states = subprocess.run(
            [str(AIRFLOW), "tasks", "states-for-dag-run", "ctr_pipeline", day, "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = json.loads(states.stdout[states.stdout.index("[") :])
        return {r["task_id"]: r["state"] for r in rows}, done.stdout + done.stderr

    return run


def test_the_run_of_a_day_starts_once_the_day_has_ended(tmp_path):
    # Its logical date (ds, the partition it reads) is the day; it runs after it: the day's partition is complete.
    if not AIRFLOW.is_file():
        pytest.skip("Airflow's venv is missing: run `make airflow` (make test does)")
    probe = """
import importlib.util, json, sys
from datetime import datetime, timezone
from airflow.timetables.base import TimeRestriction
spec = importlib.util.spec_from_file_location("dag", sys.argv[1]); module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
day = datetime(2026, 11, 28, tzinfo=timezone.utc)
info = module.dag.timetable.next_dagrun_info(
    last_automated_data_interval=None, restriction=TimeRestriction(earliest=day, latest=None, catchup=True)
)
print(json.dumps([info.logical_date.isoformat(), info.run_after.isoformat()]))
"""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [str(AIRFLOW.parent / "python"), "-c", probe, str(ROOT / "dags" / "ctr_pipeline.py")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    logical, run_after = json.loads(done.stdout.strip().splitlines()[-1])
    assert logical.startswith("2026-11-28T00:00") and run_after.startswith("2026-11-29T00:00")


@pytest.mark.slow
def test_two_consecutive_dates_each_on_its_partition_the_first_champion_the_second_by_the_rule(tmp_path):
    from mlflow.tracking import MlflowClient

    run = _airflow(tmp_path)
    days = ["2026-11-28", "2026-11-29"]
    for part, day in enumerate(days, start=1):
        write_parquet_shards(tmp_path / "clicks" / f"dt={day}", 4000, part=part)
    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 1, batch_size: 512}\n")
    uri = tracking_store(tmp_path / "mlflow.db")
    conf = _params(tmp_path, data=str(tmp_path / "clicks" / "dt={{ ds }}"), config=str(config), tracking_uri=uri, extra="--search none")
    decisions = {}
    for day in days:
        states, log = run(day, conf)
        assert states == dict.fromkeys(STAGES, "success"), log[-4000:]
        out = tmp_path / "runs" / day
        journal = json.loads((out / "run.json").read_text())
        assert journal["status"] == "succeeded" and journal["stages"]["report"]["action"] == "ran"
        assert {journal["stages"][s]["action"] for s in ("ingest", "rank", "train", "promote")} == {"reused"}  # done by earlier tasks
        decisions[day] = json.loads((out / "promote" / "decision.json").read_text())
        assert decisions[day]["reason"] in html.unescape((out / "report" / "report.html").read_text())
    first, second = decisions[days[0]], decisions[days[1]]
    assert first["decision"] == "promoted" and first["champion"]["version"] is None
    # the second: promoted exactly when it gains the margin on valid AUC, significantly, and its data checks pass
    gain = second["challenger"]["metrics"]["valid_auc"] - second["champion"]["metrics"]["valid_auc"]
    assert second["champion"]["version"] == first["challenger"]["version"]
    significant = second["p_value"] is not None and second["p_value"] < second["alpha"]
    assert (second["decision"] == "promoted") == (gain >= second["margin"] and significant and not second["data_checks"]["failures"])
    client = MlflowClient(uri)
    serving = first if second["decision"] == "kept" else second
    assert str(client.get_model_version_by_alias(second["registered_model"], "champion").version) == serving["challenger"]["version"]
    experiment = client.get_experiment_by_name("ctr-pipeline")
    for day in days:
        runs = client.search_runs([experiment.experiment_id], f"tags.date = '{day}'")
        trained = [r for r in runs if r.info.run_name == "train" and "reused" not in r.data.params]
        assert len(trained) == 1 and trained[0].data.tags["partition"] == str(tmp_path / "clicks" / f"dt={day}")
        promoted = [r for r in runs if r.info.run_name == "promote" and "reused" not in r.data.params]
        assert len(promoted) == 1 and promoted[0].data.tags["decision"] == decisions[day]["decision"]


@pytest.mark.slow
def test_a_missing_partition_or_a_bad_flag_fails_at_once_and_promotes_nothing(tmp_path):
    run = _airflow(tmp_path)
    conf = _params(tmp_path, data=str(tmp_path / "clicks" / "dt={{ ds }}"), tracking_uri=tracking_store(tmp_path / "mlflow.db"))
    states, log = run("2026-11-30", conf)
    assert states["ingest"] == "failed" and {states[s] for s in STAGES[1:]} == {"upstream_failed"}, states
    assert f"error: {tmp_path / 'clicks' / 'dt=2026-11-30'}: file not found; check data.path (--data)" in log
    assert log.count("running: ") == 1  # bad input is not retried
    assert not (tmp_path / "runs").exists()
    from mlflow.tracking import MlflowClient

    assert MlflowClient(conf["tracking_uri"]).search_registered_models() == []  # nothing registered, nothing promoted
    states, log = run("2026-12-01", _params(tmp_path, extra="; touch X"))
    assert states["ingest"] == "failed" and not (tmp_path / "X").exists() and not (ROOT / "X").exists()
    assert "unrecognized arguments: ; touch X" in log
