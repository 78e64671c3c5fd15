"""What a stage returns to the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageOutput:
    """What the runner logs for a stage: params, metrics and artifact files (inside the stage dir)."""

    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    summary: str = ""
    steps: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics, logged with step = index + 1
    report: dict[str, Any] = field(default_factory=dict)  # merged into OUT/metrics.json
    model: Any = None  # a trained model to log and register, with its scoring package (a directory in the stage dir)
    package: str | None = None
    cleanup: list[Path] = field(default_factory=list)  # files outside the stage dir to remove once it is committed
    children: list[dict[str, Any]] = field(default_factory=list)  # nested runs to log: {"name", "params", "metrics"}
    tags: dict[str, str] = field(default_factory=dict)  # set on the stage's run and on the pipeline run (e.g. the promotion decision)
    # A finding that needs a person although the stage did its work (committed): the run goes on, then ends with it as
    # its one-line error, exit 2 (e.g. the champion cannot score today's rows and stays; a scheduler alerts).
    alarm: str | None = None
