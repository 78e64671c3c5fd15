"""Promote: this run's registered model against the champion, on this run's valid and test rows; the alias moves or not.

The champion's package scores this run's raw holdout rows (ingest/holdout/) through `predict`'s
path, with its own encoder; the new model's figures on the same rows are the train stage's. The new model becomes the champion when there is none, or
when its valid AUC beats the champion's by `promote.margin` and the data checks pass (schema,
train click rate, per-field drift against the champion's train data: features.drift). Otherwise it
gets the challenger alias. The decision, its reason and both models' figures go to
promote/decision.json, the report, the registered version's description and tags, and the run's tags.
Comparing and moving the alias happen under the registry lock, so two runs at once take turns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from features.drift import FittedData, compare
from pipeline import catalog
from pipeline.config import PipelineConfig, PromoteConfig
from pipeline.errors import UserError
from pipeline.stages.output import StageOutput

SPLITS = ("valid", "test")


def evaluate(package: Path, holdout: dict[str, Path]) -> dict[str, float]:
    """valid_auc, valid_logloss, test_auc, test_logloss of the package's chosen model on the raw holdout rows."""
    from pipeline.package import score

    figures: dict[str, float] = {}
    for split, rows in holdout.items():
        _, metrics = score(package, rows, "parquet", "cpu")
        for name in ("auc", "logloss"):
            if name in metrics:
                figures[f"{split}_{name}"] = metrics[name]
    return figures


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, failures: list[str], settings: PromoteConfig
) -> tuple[bool, str]:
    """(promote?, the reason in one line) from both models' figures on the same rows and the failed data checks."""
    if failures:
        return False, "data checks failed: " + " | ".join(failures)
    if champion is None:
        return True, "the champion cannot score this run's rows, and schema changes are allowed (promote.allow_schema_change)"
    if "valid_auc" not in challenger or "valid_auc" not in champion:
        return False, "no valid AUC to compare (the valid rows hold one class)"
    gain = challenger["valid_auc"] - champion["valid_auc"]
    comparison = f"valid AUC {challenger['valid_auc']:.4f} against the champion's {champion['valid_auc']:.4f} ({gain:+.4f})"
    if np.isfinite(gain) and gain >= settings.margin:
        return True, f"{comparison}, at least the margin {settings.margin:g}"
    return False, f"{comparison}, below the margin {settings.margin:g}"


def describe(decision: dict[str, Any]) -> str:
    """The registered version's description: the decision and a table of both models' figures."""
    lines = [f"**{decision['decision']}** ({decision['date'] or 'no date'}): {decision['reason']}", ""]
    champion = decision["champion"]
    if champion["version"] is not None:
        lines += ["| | this version | champion v" + str(champion["version"]) + " |", "|---|---|---|"]
        for key in ("valid_auc", "test_auc", "valid_logloss", "test_logloss"):
            ours, theirs = decision["challenger"]["metrics"].get(key), champion["metrics"].get(key)
            lines.append(f"| {key} | {'' if ours is None else f'{ours:.4f}'} | {'' if theirs is None else f'{theirs:.4f}'} |")
    return "\n".join(lines)


def run_promote(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Compare this run's registered model with the champion on this run's rows and move the aliases."""
    from pipeline.tracking import Registry, download_package

    settings = cfg.promote
    report = json.loads((out / catalog.METRICS).read_text()) if (out / catalog.METRICS).is_file() else {}
    registered = report.get("registered_model")
    if not registered:
        raise UserError(
            f"{out}: the train stage registered no model (it ran with tracking or tracking.register_model off); "
            "rerun it with tracking on (--stages train,promote --force) or set promote.enabled: false"
        )
    name, version = registered[len("models:/") :].rsplit("/", 1)
    holdout = {split: catalog.HOLDOUT[split].at(out) for split in SPLITS}
    if not all(path.is_file() for path in holdout.values()):
        raise UserError(
            f"{out / 'ingest'}: no raw holdout rows to score the champion on; set split.keep_raw_holdout: true and rerun ingest"
        )
    # the train stage scored the chosen model on these same rows (predict's path reproduces it: tests/pipeline)
    challenger = {k: report[k] for k in ("valid_auc", "valid_logloss", "test_auc", "test_logloss") if report.get(k) is not None}
    registry = Registry(cfg.tracking.uri, name)
    with registry.lock():  # read the champion, compare and move the alias in one turn
        champion_version = registry.version_by_alias(settings.alias)
        champion: dict[str, float] | None = {}
        failures: list[str] = []
        drift: dict[str, float] = {}
        if champion_version is None:
            promoted, reason = True, f"no {settings.alias} yet: version {version} is the first"
        elif champion_version == version:
            promoted, reason = True, f"version {version} is already the {settings.alias} (a retried run)"
        else:
            package = download_package(f"models:/{name}/{champion_version}", cfg.tracking.uri)
            checks = compare(FittedData.load(package / "encoder"), FittedData.load(catalog.stage_path(out, "ingest")))
            drift = checks.drift
            failures = checks.failures(settings.max_click_rate_change, settings.max_psi, settings.max_mean_shift)
            if settings.allow_schema_change:
                failures = [f for f in failures if not f.startswith("schema changed")]
            try:
                champion = evaluate(package, holdout)
            except UserError as exc:  # e.g. a column it was trained on is gone
                champion = None
                if not failures:
                    failures = [] if settings.allow_schema_change else [f"the champion cannot score this run's rows ({exc})"]
            promoted, reason = decide(challenger, champion, failures, settings)
        registry.set_alias(settings.alias if promoted else settings.challenger_alias, version)
        decision = {
            "decision": "promoted" if promoted else "kept",
            "reason": reason,
            "date": cfg.tracking.tags.get("date"),
            "registered_model": name,
            "alias": settings.alias if promoted else settings.challenger_alias,
            "margin": settings.margin,
            "challenger": {"version": version, "metrics": challenger},
            "champion": {"version": champion_version if champion_version != version else None, "metrics": champion or {}},
            "data_checks": {"failures": failures, "drift": drift},
        }
        registry.annotate(
            version,
            describe(decision),
            {"decision": decision["decision"], "reason": reason, "compared_with": champion_version or "", "date": decision["date"] or ""},
        )
    catalog.write_json(workdir / catalog.DECISION.name, decision)
    metrics = {f"challenger_{k}": v for k, v in challenger.items()} | {f"champion_{k}": v for k, v in (champion or {}).items()}
    if drift:
        metrics["max_drift"] = max(drift.values())
    return StageOutput(
        params={"registered_model": name, "version": version, "compared_with": champion_version, **settings.model_dump()},
        metrics=metrics,
        artifacts=[catalog.DECISION.name],
        report={"promotion": {k: decision[k] for k in ("decision", "reason", "alias", "registered_model")}},
        tags={"decision": decision["decision"], "decision_reason": reason[:500]},
        summary=f"promote: {name} v{version} {decision['decision']} ({reason})",
    )
