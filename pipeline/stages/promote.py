"""Promote: this run's registered model against the champion, on this run's valid and test rows; the alias moves or not.

The champion's package scores this run's raw holdout rows (ingest/holdout/) through `predict`'s
path, with its own encoder; the new model's figures on the same rows are the train stage's. The new model becomes the champion when there is none, or
when its valid AUC beats the champion's by `promote.margin`, significantly (DeLong's paired test on those rows,
`promote.alpha`), and the data checks pass (schema, train click rate, per-field drift against the champion's train
data: features.drift); a run of an older date than the champion's never replaces it. Otherwise it gets the
challenger alias; a champion that cannot score this run's rows and stays is the run's alarm (exit 2 after every stage). The decision, its reason and both models' figures go to
promote/decision.json, the report, the registered version's description and tags, and the run's tags.
Comparing and moving the alias happen under the registry lock, so two runs at once take turns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.drift import FittedData, compare
from pipeline import catalog
from pipeline.cache import recorded
from pipeline.config import PipelineConfig, PromoteConfig
from pipeline.errors import UserError
from pipeline.stages.output import StageOutput

SPLITS = ("valid", "test")


def evaluate(package: Path, holdout: dict[str, Path]) -> tuple[dict[str, float], pl.DataFrame | None]:
    """valid_auc, valid_logloss, test_auc, test_logloss of the package's chosen model on the raw holdout rows, and its
    scored valid rows (probability, label; None without the valid split)."""
    from pipeline.package import score

    figures: dict[str, float] = {}
    valid = None
    for split, rows in holdout.items():
        scored, metrics = score(package, rows, "parquet", "cpu")
        for name in ("auc", "logloss"):
            if name in metrics:
                figures[f"{split}_{name}"] = metrics[name]
        if split == "valid":
            valid = scored
    return figures, valid


def delong(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[float, float, float]:
    """(AUC of `first`, AUC of `second`, one-sided p-value of `first`'s AUC not being above `second`'s) on the same
    rows: DeLong, DeLong and Clarke-Pearson's (1988) paired test, the variance of the difference from each row's
    placement values, computed by midranks (Sun and Xu's fast form, 2014). Ties count one half."""
    from scipy.stats import norm, rankdata

    positive = np.asarray(labels) == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:  # one class: no AUC, no evidence
        return float("nan"), float("nan"), 1.0
    aucs, v10, v01 = [], [], []
    for scores in (np.asarray(first, np.float64), np.asarray(second, np.float64)):
        x, y = scores[positive], scores[~positive]
        whole = rankdata(np.concatenate([x, y]))
        within_x, within_y = rankdata(x), rankdata(y)
        aucs.append((whole[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((whole[:m] - within_x) / n)  # per positive: the share of negatives it is above
        v01.append(1.0 - (whole[m:] - within_y) / m)  # per negative: the share of positives above it
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    gain = aucs[0] - aucs[1]
    if variance <= 0:  # the same ranking (or one row a class): no evidence either way
        return aucs[0], aucs[1], 1.0 if gain <= 0 else 0.0
    return aucs[0], aucs[1], float(norm.sf(gain / np.sqrt(variance)))


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    failures: list[str],
    settings: PromoteConfig,
    p_value: float | None = None,
    older: str | None = None,
) -> tuple[bool, str]:
    """(promote?, the reason in one line) from both models' figures on the same rows, the failed data checks, the
    one-sided DeLong p-value of the challenger's valid AUC gain (None: not computed) and, for a run of an older date
    than the champion's, that date (`older`: a rerun or backfill never replaces a newer day's model)."""
    if older is not None:
        return False, f"this run's date is older than the champion's ({older}): an older day's model never replaces a newer one's"
    if failures:
        return False, "data checks failed: " + " | ".join(failures)
    if champion is None:
        return True, "the champion cannot score this run's rows, and schema changes are allowed (promote.allow_schema_change)"
    if "valid_auc" not in challenger or "valid_auc" not in champion:
        return False, "no valid AUC to compare (the valid rows hold one class)"
    gain = challenger["valid_auc"] - champion["valid_auc"]
    comparison = f"valid AUC {challenger['valid_auc']:.4f} against the champion's {champion['valid_auc']:.4f} ({gain:+.4f})"
    if not (np.isfinite(gain) and gain >= settings.margin):
        return False, f"{comparison}, below the margin {settings.margin:g}"
    if p_value is not None and p_value >= settings.alpha:
        return False, f"{comparison}, not significant on these rows (one-sided DeLong p {p_value:.3g}, needs < {settings.alpha:g})"
    significance = "" if p_value is None else f", DeLong p {p_value:.3g}"
    return True, f"{comparison}, at least the margin {settings.margin:g}{significance}"


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
    # train's own record, not OUT/metrics.json, where a later train run without the registry would leave the earlier
    # run's registered version beside its own figures
    report = (recorded(out, "train") or {}).get("report", {})
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
        p_value: float | None = None
        alarm: str | None = None
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
                champion, theirs = evaluate(package, holdout)
            except UserError as exc:  # e.g. a column it was trained on is gone: the model that serves cannot score today's data
                champion = None
                if not settings.allow_schema_change:
                    failures.append(f"the champion cannot score this run's rows ({exc})")
            else:
                if theirs is not None and "valid_auc" in champion and "valid_auc" in challenger and settings.alpha < 1:
                    # the challenger scored on the same rows through predict's path (its figures are the train stage's)
                    _, ours = evaluate(catalog.PACKAGE.at(out), {"valid": holdout["valid"]})
                    label = next(c for c in theirs.columns if c != "probability")
                    p_value = delong(theirs[label].to_numpy(), ours["probability"].to_numpy(), theirs["probability"].to_numpy())[2]
            date, champion_date = cfg.tracking.tags.get("date"), registry.version_tag(champion_version, "date")
            older = champion_date if (date and champion_date and date < champion_date) else None
            promoted, reason = decide(challenger, champion, failures, settings, p_value, older)
            if champion is None and not promoted:  # the model that serves cannot score today's data, and stays: say so loudly
                alarm = (
                    f"promote: the {settings.alias} {name} v{champion_version} cannot score this run's rows and was kept "
                    f"({reason}); serving needs a look (promote.allow_schema_change lets this run's model replace it)"
                )
        registry.set_alias(settings.alias if promoted else settings.challenger_alias, version)
        decision = {
            "decision": "promoted" if promoted else "kept",
            "reason": reason,
            "date": cfg.tracking.tags.get("date"),
            "registered_model": name,
            "alias": settings.alias if promoted else settings.challenger_alias,
            "margin": settings.margin,
            "p_value": p_value,
            "alpha": settings.alpha,
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
        alarm=alarm,
    )
