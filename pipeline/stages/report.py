"""Report: one self-contained HTML page over the committed outputs of the other stages."""

from __future__ import annotations

from pathlib import Path

from pipeline import catalog
from pipeline.config import PipelineConfig
from pipeline.stages.output import StageOutput


def run_report(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Render the HTML run report from the committed outputs of the other stages."""
    from pipeline.report import render_report

    # an earlier run's outputs of stages this config no longer runs (their folders stay) are not this run's
    promotes = cfg.promote.enabled and cfg.tracking.enabled and cfg.tracking.register_model
    left_out = frozenset({*([] if cfg.search.methods else ["search"]), *([] if promotes else ["promote"])})
    (workdir / catalog.REPORT.name).write_text(render_report(out, left_out))
    return StageOutput(artifacts=[catalog.REPORT.name], summary=f"report: {catalog.REPORT.at(out)}")
