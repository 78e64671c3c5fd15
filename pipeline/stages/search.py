"""Search: the configured search methods on train and valid (never test); one JSON per method, and the state train applies."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from methods import METHODS
from methods.base import SearchRun
from pipeline import catalog
from pipeline.assemble import build, derive, model_spec, resolved
from pipeline.config import PipelineConfig, method_settings
from pipeline.errors import UserError
from pipeline.stages.output import StageOutput
from pipeline.upstream import candidate_pairs, feature_ranks, load_split, selected_features, top_features


def run_search(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Run the configured search methods on train/valid (never test); write one JSON per method."""
    from models.trainer import fit

    ingest_dir = catalog.stage_path(out, "ingest")
    full_map = catalog.load_feature_map(ingest_dir)
    feature_map = top_features(out, selected_features(out, full_map, cfg), cfg)
    cfg = resolved(cfg, feature_map)  # numeric_as_value auto, from the train rows
    tc = cfg.train
    train = load_split(ingest_dir, "train", feature_map, tc.numeric_as_value)
    valid = load_split(ingest_dir, "valid", feature_map, tc.numeric_as_value)
    if train is None or valid is None or len(valid) == 0:
        raise UserError(f"{ingest_dir}: search needs the train split and a non-empty valid split")
    spec = model_spec(cfg)
    settings = tc
    metrics: dict[str, float] = {}
    report: dict[str, Any] = {}
    baseline = None
    trains = "optuna" in cfg.search.methods or any(METHODS[m].trains for m in cfg.search.methods if m in METHODS)
    if cfg.search.baseline and trains:  # the "before" figures of a search that trains (encodings and layouts train nothing)
        started = time.perf_counter()
        model = build(spec, feature_map)
        fitted = fit(model, train, valid, settings)
        baseline = {
            "valid_auc": fitted.best_valid_auc,
            "valid_logloss": fitted.best_valid_logloss,
            "embedding_rows": sum(w.shape[0] for w in model.embedding_tables()),
            "epochs": len(fitted.history),
            "seconds": time.perf_counter() - started,
        }
        catalog.write_json(workdir / catalog.SEARCH_BASELINE.name, baseline)
        metrics |= {f"baseline_{k}": float(v) for k, v in baseline.items()}
    kept_fields = [f.name for f in feature_map.fields]
    catalog.write_json(
        workdir / catalog.FIELDS.name,
        {
            "budget": cfg.search.max_features,
            "fields": kept_fields,
            "dropped": [f.name for f in full_map.fields if f.name not in kept_fields],
        },
    )
    metrics["fields"] = float(len(kept_fields))
    artifacts = [catalog.FIELDS.name, *([catalog.SEARCH_BASELINE.name] if baseline else [])]

    def record(method: str, started: float, summary: dict[str, Any], headline: tuple[str, ...]) -> None:
        """Add the shared before/time figures, write OUT/search/<method>.json, and collect metrics and the report."""
        seconds = time.perf_counter() - started
        summary |= {
            "valid_auc_before": baseline["valid_auc"] if baseline else None,
            "seconds": seconds,
            "seconds_over_one_training": seconds / baseline["seconds"] if baseline else None,
        }
        catalog.write_json(workdir / catalog.method_summary(method).name, summary)
        artifacts.append(catalog.method_summary(method).name)
        metrics.update({f"{method}_{k}": float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        report[method] = {k: summary[k] for k in headline}

    # The registered methods in registry order, each on the model the earlier ones of this run searched.
    run = SearchRun(
        feature_map,
        train,
        valid,
        settings,
        spec,
        build(spec, feature_map),
        lambda n, by="gain": candidate_pairs(out, feature_map, n, by),
        ranks=lambda: feature_ranks(out),
    )
    notes: list[str] = []
    for name, method in METHODS.items():
        if name not in cfg.search.methods:
            continue
        started = time.perf_counter()
        try:
            found = method.search(run, method_settings(cfg, name))
        except ValueError as exc:
            raise UserError(f"search {name} with model {tc.model!r}: {exc}") from exc
        method.save(found.state, workdir)
        if "note" in found.summary:  # a method that found nothing to do on this data (the run goes on without it)
            notes.append(f"{name}: {found.summary['note']}")
        record(name, started, found.summary, method.headline)
        print(f"search: {name} done in {time.perf_counter() - started:.0f} s{_figures(found.summary, method.headline)}", file=sys.stderr)
        run.earlier += (name,)
        if method.derives:  # the later methods (and the study) search on the data with the derived fields
            feature_map, derived = derive([(method, None, found.state)], feature_map, {"train": train, "valid": valid})
            train, valid = derived["train"], derived["valid"]
            run.feature_map, run.train, run.valid, run.model = feature_map, train, valid, build(spec, feature_map)
    children: list[dict[str, Any]] = []
    cleanup: list[Path] = []
    if "optuna" in cfg.search.methods:
        from pipeline.stages.study import run_optuna

        started = time.perf_counter()
        summary, children, storage = run_optuna(cfg, out, workdir, feature_map, train, valid, settings)
        artifacts.append(catalog.PARETO.name)
        cleanup.append(storage)
        record("optuna", started, summary, ("chosen", "front", "pruned"))
    return StageOutput(
        params={  # the settings of the methods that ran (every method's defaults beside them hid what was searched)
            "methods": ",".join(cfg.search.methods),
            **{name: method_settings(cfg, name).model_dump() for name in METHODS if name in cfg.search.methods},
            **({"optuna": cfg.search.optuna.model_dump()} if "optuna" in cfg.search.methods else {}),
        },
        metrics=metrics,
        artifacts=artifacts,
        summary=f"search: {', '.join(cfg.search.methods)}{''.join(f'; {n}' for n in notes)} -> {out / 'search'}",
        report={"search": {"fields": kept_fields, **report}},
        children=children,
        cleanup=cleanup,
    )


def _figures(summary: dict[str, Any], keys: tuple[str, ...]) -> str:
    """A method's headline figures for its log line: numbers as they are, collections by their size."""
    said = []
    for key in keys:
        value = summary.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            said.append(f"{key} {value:.4f}" if isinstance(value, float) and abs(value) < 10 else f"{key} {value:,.0f}")
        elif isinstance(value, list | tuple | dict):
            said.append(f"{key} {len(value)}")
    return f": {', '.join(said)}" if said else ""
