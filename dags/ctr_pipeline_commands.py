"""The pipeline command a DAG task runs for one logical date, as an argument list: no shell ever sees a param.

Kept free of Airflow imports so the pipeline's tests can check it. `render(template, day)` is the
DAG's: it renders a param with Airflow's template context moved to `day` (so `{{ ds }}` and every
macro name the partition of that day).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any


def partitions(template: str, day: date, window_days: int, render: Callable[[str, date], str]) -> list[str]:
    """The data paths of the `window_days` days ending on `day`, oldest first; [] for the synthetic default ('')."""
    if not template:
        return []
    rendered = [render(template, day - timedelta(days=back)) for back in reversed(range(window_days))]
    return list(dict.fromkeys(rendered))  # a template without a date names one path, once


def run_out(runs_root: str, day: date) -> Path:
    """The run's own output directory: one per logical date under the runs root."""
    return Path(runs_root) / day.isoformat()


def stage_command(params: Mapping[str, Any], day: date, stages: list[str], render: Callable[[str, date], str]) -> list[str]:
    """argv of `python -m pipeline run` for `stages` of the run of `day`. `extra` is split like a shell would split
    it into arguments (shlex), never run by one: '; touch X' becomes three arguments the CLI rejects."""
    data = partitions(params["data"], day, int(params["window_days"]), render)
    command = [params["python"], "-m", "pipeline", "run", "--stages", ",".join(stages)]
    command += ["--out", str(run_out(params["runs_root"], day)), "--tag", f"date={day.isoformat()}"]
    command += ["--tag", "partition=" + (",".join(data) if data else "synthetic")]
    if params["config"]:
        command += ["--config", params["config"]]
    for path in data:
        command += ["--data", path]
    if params["tracking_uri"]:
        command += ["--tracking-uri", params["tracking_uri"]]
    return command + shlex.split(params["extra"])
