"""Airflow 3 DAG `ctr_pipeline`: daily retraining, one task per stage, each calling the pipeline's own interpreter.

Airflow runs in its own virtualenv (`make airflow`: it conflicts with mlflow's fastapi pin). Each
task runs `<pipeline python> -m pipeline run --stages <this stage and the ones before it> ...` as an
argument list (dags/ctr_pipeline_commands.py): no param reaches a shell. The run of logical date D starts once
D has ended (a data-interval schedule: D's partition is complete) and reads D's
partition (or the window of days ending on D) and writes RUNS_ROOT/D, so each day keeps its own
outputs and two dates never share a directory. The pipeline's stage cache reuses the earlier
stages' committed outputs, so a task also works on a fresh worker or after a retry, and the train
task resumes from its checkpoint when a retry follows a killed attempt. The promote task moves the
registry's `champion` alias only when the new model wins (docs/operations.md). No pipeline logic
lives here.

Params (`airflow dags test ctr_pipeline DATE -c '{"data": ...}'` or the trigger form):
python (the pipeline's interpreter); config (YAML, optional); data (input path, may hold Airflow
templates rendered for the run's date, e.g. /data/clicks/dt={{ ds }}/; empty: the synthetic
default); window_days (read the partitions of this many days ending on the run's date);
runs_root (each run writes RUNS_ROOT/<date>); tracking_uri (MLflow; default runs/airflow/mlflow.db in the
checkout, apart from the store `make run` uses; empty: the pipeline's default); extra (more CLI arguments, split like shell words but never run by a shell,
e.g. "--rows 20000 --search optfs").

A bad input (a missing or empty partition, a bad flag) exits 2: the task fails at once without
retries, and nothing downstream runs (nothing is promoted). Other failures are retried.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the command builder beside this file (dags/ is not a package)
from ctr_pipeline_commands import stage_command

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("ingest", "rank", "search", "train", "promote", "report")
USER_ERROR = 2  # the pipeline's exit code for bad input


def run_stages(stages: list[str], **context) -> None:
    """Run the pipeline up to this task's stage for the run's logical date; fail without retry on bad input."""
    task, day = context["task"], date.fromisoformat(context["ds"])

    def render(template: str, on: date) -> str:
        moved = {**context, "ds": on.isoformat(), "ds_nodash": on.strftime("%Y%m%d"), "logical_date": datetime(on.year, on.month, on.day)}
        return task.render_template(template, moved)

    command = stage_command(context["params"], day, stages, render)
    print("running: " + " ".join(command), flush=True)
    # Its output goes to the task log as it comes (a long training shows its epochs); the last line is the error.
    last = ""
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as done:
        for line in done.stdout:
            print(line, end="", flush=True)
            last = line.strip() or last
    if done.returncode != 0:
        last = last or f"exit code {done.returncode}"
        if done.returncode == USER_ERROR:
            raise AirflowFailException(last)
        raise AirflowException(last)


with DAG(
    dag_id="ctr_pipeline",
    description="CTR feature engineering and model search, retrained daily: ingest, rank, search, train, promote, report",
    # The run of day D starts at D + 1 day 00:00 UTC with logical date D (`ds`): "@daily" in Airflow 3 is a cron
    # trigger whose run of D starts at D 00:00 with `ds` = D, reading a partition still being written.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=2,  # each date writes its own directory; promotions take turns on the registry lock
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "python": Param(str(ROOT / ".venv" / "bin" / "python"), type="string"),
        "config": Param("", type="string"),
        "data": Param("", type="string"),
        "window_days": Param(1, type="integer", minimum=1),
        "runs_root": Param(str(ROOT / "runs" / "airflow"), type="string", minLength=1),
        # its own store, not the one `make run` registers into in the checkout (./mlflow.db): a trial run never moves
        # the scheduled pipeline's champion
        "tracking_uri": Param(f"sqlite:///{ROOT / 'runs' / 'airflow' / 'mlflow.db'}", type="string"),
        "extra": Param("", type="string"),
    },
    render_template_as_native_obj=False,
    tags=["ctr"],
) as dag:
    previous = None
    for index, stage in enumerate(STAGES):
        task = PythonOperator(task_id=stage, python_callable=run_stages, op_kwargs={"stages": list(STAGES[: index + 1])})
        if previous is not None:
            previous >> task
        previous = task
