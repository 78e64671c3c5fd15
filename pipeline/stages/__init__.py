"""Stages, one module each: a stage turns the config and earlier stages' outputs into files in its own directory.

The computation lives in features/, models/ and methods/; a stage reads its inputs from the
catalog (`pipeline.upstream` for what earlier stages wrote), calls that computation and writes
the outputs into the private directory the runner gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.stages.ingest import run_ingest
from pipeline.stages.output import StageOutput
from pipeline.stages.promote import run_promote
from pipeline.stages.rank import run_rank
from pipeline.stages.report import run_report
from pipeline.stages.search import run_search
from pipeline.stages.train import run_train

STAGES: dict[str, Callable[[PipelineConfig, Path, Path], StageOutput]] = {
    "ingest": run_ingest,
    "rank": run_rank,
    "search": run_search,
    "train": run_train,
    "promote": run_promote,
    "report": run_report,
}

__all__ = ["STAGES", "StageOutput"]
