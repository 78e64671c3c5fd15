"""Train: the configured model (with every searched method's state applied), early-stopped on valid, test read once."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from features.tabular import tabular_columns
from methods import METHODS
from pipeline import catalog
from pipeline.assemble import assemble, derive, gbdt_map, model_spec, package_entries, resolved, searched_states
from pipeline.cache import code_version, recorded
from pipeline.config import PipelineConfig, method_settings
from pipeline.errors import UserError
from pipeline.package import PACKAGE, write_package
from pipeline.plots import learning_curve_plot
from pipeline.stages.baselines import fit_baselines
from pipeline.stages.choice import BLEND, choose
from pipeline.stages.output import StageOutput
from pipeline.upstream import load_split, selected_features, significant_pairs, top_features


def run_train(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Train the configured model with early stopping; evaluate the best epoch on valid and test."""
    # torch is imported here, not at module level, so that the data stages start without it.
    from models.metrics import metrics_of
    from models.trainer import fit, predict, resolve_device, resolve_precision, train_report

    ingest_dir = catalog.stage_path(out, "ingest")
    feature_map = catalog.load_feature_map(ingest_dir)
    feature_map = selected_features(out, feature_map, cfg)  # the rank stage's selection
    if cfg.search.methods:  # the search's ranking budget holds for the trained model too
        feature_map = top_features(out, feature_map, cfg)
    studied = catalog.STUDY.at(out)
    searched_names = set(cfg.search.methods)  # methods whose searched state train applies
    if "optuna" in cfg.search.methods and studied.is_file():  # the study's chosen trade-off replaces the train settings
        chosen = json.loads(studied.read_text())["chosen"]["config"]
        methods = {m: chosen.pop(m) for m in METHODS if m in chosen}  # and its methods' settings
        cfg = cfg.model_copy(
            update={
                "train": cfg.train.model_copy(update=chosen),
                "search": cfg.search.model_copy(update={m: method_settings(cfg, m).model_copy(update=v) for m, v in methods.items()}),
            }
        )
        searched_names |= set(methods)
    cfg = resolved(cfg, feature_map)  # numeric_as_value auto, from the train rows
    tc = cfg.train
    train = load_split(ingest_dir, "train", feature_map, tc.numeric_as_value)
    valid = load_split(ingest_dir, "valid", feature_map, tc.numeric_as_value)
    test = load_split(ingest_dir, "test", feature_map, tc.numeric_as_value)
    if train is None or len(train) == 0:
        raise UserError(f"{ingest_dir}: no encoded train split; run the ingest stage first")
    if valid is None or len(valid) == 0:
        raise UserError(f"{ingest_dir}: the validation split is empty; set split.valid > 0 or give a valid file")
    search_dir = catalog.stage_path(out, "search")
    spec = model_spec(cfg)
    searched = searched_states(cfg, search_dir, searched_names)
    base_map = feature_map
    feature_map, splits = derive(searched, feature_map, {"train": train, "valid": valid, "test": test})
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    try:
        applied = assemble(feature_map, spec, searched)
    except (ValueError, RuntimeError, TypeError) as exc:  # torch's own refusal of a size (a layer of -4 units, heads)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not searched:
            raise UserError(f"train.params: {spec.name} cannot be built with {spec.params} ({first})") from exc
        raise UserError(
            f"{search_dir}: the search output does not fit this model ({first}); check train.params, or rerun the search stage"
        ) from exc
    model, hooks, model_name = applied.model, applied.hooks, applied.name
    applied_names = [method.name for method, _, _ in searched]
    settings = tc
    device = resolve_device(tc.device)
    autocast = resolve_precision(tc.precision, device)
    # A run killed mid-training resumes from here when rerun with the same settings and data.
    checkpoint = out / ".checkpoints" / "train.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = hashlib.sha256(
        json.dumps(
            [
                tc.model_dump(mode="json", exclude={"device", "checkpoint_seconds"}),
                feature_map.to_json(),
                applied_names,
                cfg.search.model_dump(),
                code_version(),  # a code fix does not resume from weights the old code trained
                [(recorded(out, s) or {}).get("finished") for s in ("ingest", "rank", "search")],  # nor a new search's state
            ]
        ).encode()
    ).hexdigest()
    started = time.perf_counter()
    progress = tqdm(total=tc.max_epochs, desc=f"train: {tc.model}", unit="epoch", disable=None)
    result = fit(
        model,
        train,
        valid,
        settings,
        on_epoch=lambda record: _epoch_said(progress, tc.model, tc.max_epochs, record),
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        hooks=hooks,
    )
    progress.close()
    has_test = test is not None and len(test) > 0
    # The best epoch's probabilities on valid and test: the deep candidate's figures and the blend's input.
    deep_valid = predict(model, valid.batches(tc.batch_size), device, autocast)
    deep_test = predict(model, test.batches(tc.batch_size), device, autocast) if has_test else None
    test_auc, test_logloss = metrics_of(deep_test[1], deep_test[0]) if deep_test is not None else (None, None)
    report = {
        "model": model_name,
        **train_report(model, result, test_auc, test_logloss),
        **{m.applied_flag: m.name in applied_names for m in METHODS.values() if m.applied_flag},
        "train_seconds": time.perf_counter() - started,
        "precision": str(autocast).removeprefix("torch.") if autocast is not None else "float32",
        "device": str(device),
    }
    base_names = {f.name for f in base_map.fields}
    derivers = [(method, state) for method, _, state in searched if method.derives]
    tabular_map = gbdt_map(feature_map, derivers)  # e.g. without the leaf fields of a GBDT
    added = [c for c, f in zip(tabular_columns(tabular_map)[0], tabular_map.fields, strict=True) if f.name not in base_names]
    derived = {name: {c: data.columns[c] for c in added} for name, data in splits.items() if data is not None and added}
    baselines, children, fitted = fit_baselines(cfg, ingest_dir, tabular_map, derived, significant_pairs(out, tabular_map, cfg))
    if baselines:
        report["baselines"] = baselines
        catalog.write_json(workdir / catalog.BASELINES.name, baselines)
    deep_info = {"params": applied.params, "parameters": report["params"], "seconds": report["train_seconds"]}
    train_rate = base_map.splits.get("train", {}).get("positive_rate")
    choice = choose(tc.choose, model_name, deep_valid, deep_test, deep_info, baselines, fitted, train_rate)
    for warning in choice.warnings:
        print(f"warning: train: {warning}", file=sys.stderr)
    # The top-level figures are the chosen model's; the deep model's stay under its candidate name.
    chosen = choice.candidates[choice.name]
    report |= {"deep_model": model_name, "model": choice.name, "kind": choice.kind, "choose": tc.choose, "candidates": choice.candidates}
    if choice.warnings:
        report["warnings"] = choice.warnings
    report |= {key: chosen[key] for key in ("valid_auc", "valid_logloss", "test_auc", "test_logloss")}
    if BLEND in choice.candidates:
        blended = choice.candidates[BLEND]
        children.append({"name": "candidate blend", "params": blended["params"], "metrics": _numbers(blended)})
    write_package(
        workdir / PACKAGE,
        model,
        applied,
        spec,
        cfg,
        ingest_dir,
        feature_map,
        package_entries(searched),
        choice.entry(),
        fitted,  # every baseline, so that the package can score with any candidate
        derivers,
        report["precision"],
    )
    catalog.write_json(workdir / catalog.TRAIN_METRICS.name, report)
    catalog.write_json(workdir / catalog.HISTORY.name, [record.__dict__ for record in result.history])
    learning_curve_plot(
        [r.epoch for r in result.history],
        [r.train_loss for r in result.history],
        [r.valid_auc for r in result.history],
        workdir / catalog.LEARNING_CURVE.name,
        f"{tc.model}: best valid AUC {result.best_valid_auc:.4f} at epoch {result.best_epoch}",
    )
    # Per-epoch series live under "epoch/" so that they do not mix with the best-epoch summary metrics.
    steps = [
        {
            "epoch/train_loss": r.train_loss,
            "epoch/valid_auc": r.valid_auc,
            "epoch/valid_logloss": r.valid_logloss,
            "epoch/learning_rate": r.learning_rate,
            "epoch/train_samples_per_s": r.train_samples_per_s,
        }
        for r in result.history
    ]
    epochs = len(result.history)
    test_text = f", test AUC {test_auc:.4f}" if test_auc is not None else ""
    test_text += f" after {epochs} epoch{'s' if epochs != 1 else ''}"
    test_text += "".join(f"; {name} valid AUC {c['valid_auc']:.4f}" for name, c in choice.candidates.items() if name != model_name)
    test_text += f"; chosen: {choice.name} ({choice.kind})"
    return StageOutput(
        params={**tc.model_dump(), "device": str(device)},
        metrics=_numbers(report),
        artifacts=[
            o.name for o in (catalog.TRAIN_METRICS, catalog.HISTORY, catalog.LEARNING_CURVE, *([catalog.BASELINES] if baselines else []))
        ],
        summary=f"train: {model_name} valid AUC {result.best_valid_auc:.4f}{test_text} -> {out / 'train'}",
        steps=steps,
        report=report,
        model=model,
        package=PACKAGE,
        cleanup=[checkpoint],
        children=children,
        # which candidate the run chose, on the train run and the pipeline run: its params are the deep model's settings
        # and its valid_auc / test_auc metrics the chosen candidate's (a blend's or a GBDT's when one of them won)
        tags={"chosen": f"{choice.name} ({choice.kind})"},
    )


def _numbers(figures: dict) -> dict[str, float]:
    """The numeric entries of `figures` (MLflow metrics)."""
    return {k: float(v) for k, v in figures.items() if isinstance(v, int | float)}


def _epoch_said(progress: tqdm, model: str, epochs: int, record) -> None:
    """One line an epoch (in a scheduler's log too, where the bar is off), and the bar's step on a terminal."""
    progress.write(
        f"train: {model} epoch {record.epoch}/{epochs}: valid AUC {record.valid_auc:.4f}, logloss {record.valid_logloss:.4f}, "
        f"{record.train_samples_per_s:,.0f} samples/s, {record.train_seconds:.0f} s",
        file=sys.stderr,
    )
    progress.update(1)
