"""Airflow 3 DAG `ctr_pipeline`: one task per stage, each calling the pipeline's own interpreter.

Airflow runs in its own virtualenv (`make airflow`: it conflicts with mlflow's
fastapi pin); every task is a shell command `<pipeline python> -m pipeline
run --stages <this stage and the ones before it> ...`. The pipeline's stage
cache reuses the earlier stages' committed outputs (nothing changed), so a
task also works on a fresh worker or after a retry, and the train task
resumes from its checkpoint when a retry follows a killed attempt. No
pipeline logic lives here.

Params (override with `airflow dags test ctr_pipeline DATE -c '{"out": ...}'` or the trigger form):
python (the pipeline's interpreter), config (YAML, optional), data (input
path, empty: the synthetic default), out (output directory), tracking_uri
(MLflow, empty: the pipeline's default), extra (more CLI flags, e.g.
"--rows 20000 --search optfs").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("ingest", "rank", "search", "train", "report")

COMMAND = (
    "{{ params.python }} -m pipeline run --stages @STAGES@"
    " --out {{ params.out }}"
    "{% if params.config %} --config {{ params.config }}{% endif %}"
    "{% if params.data %} --data {{ params.data }}{% endif %}"
    "{% if params.tracking_uri %} --tracking-uri {{ params.tracking_uri }}{% endif %}"
    " {{ params.extra }}"
)

with DAG(
    dag_id="ctr_pipeline",
    description="CTR feature engineering and model search: ingest, rank, search, train, report",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "python": Param(str(ROOT / ".venv" / "bin" / "python"), type="string"),
        "config": Param("", type="string"),
        "data": Param("", type="string"),
        "out": Param(str(ROOT / "runs" / "airflow"), type="string", minLength=1),
        "tracking_uri": Param("", type="string"),
        "extra": Param("", type="string"),
    },
    tags=["ctr"],
) as dag:
    previous = None
    for index, stage in enumerate(STAGES):
        task = BashOperator(task_id=stage, bash_command=COMMAND.replace("@STAGES@", ",".join(STAGES[: index + 1])), cwd=str(ROOT))
        if previous is not None:
            previous >> task
        previous = task
