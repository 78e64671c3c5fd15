"""Report: one self-contained HTML page over the committed outputs of the other stages."""

from __future__ import annotations

from pathlib import Path

from pipeline import catalog
from pipeline.config import PipelineConfig
from pipeline.stages.output import StageOutput


def run_report(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Render the HTML run report from the committed outputs of the other stages."""
    from pipeline.report import render_report

    (workdir / catalog.REPORT.name).write_text(render_report(out))
    return StageOutput(artifacts=[catalog.REPORT.name], summary=f"report: {catalog.REPORT.at(out)}")
