"""Stages: each turns the config and earlier stages' outputs into files in its own directory.

The computation lives in features/ (pure functions over frames and arrays);
a stage here reads its inputs from the catalog, calls that computation and
writes the outputs into the private directory the runner gives it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from tqdm import tqdm

from common.errors import UserError
from common.featuremap import FIRST_VALUE_ID, FeatureMap
from features.ingest import ingest, load_raw
from features.quality import QualityParams, quality_report
from features.ranking import ContingencyCounter, RankParams, rank_features
from pipeline import catalog
from pipeline.config import OptInterSection, PipelineConfig
from pipeline.package import PACKAGE, write_package
from pipeline.params import ingest_params, params_from
from pipeline.plots import learning_curve_plot, ranking_bar_plot

if TYPE_CHECKING:
    from models.search.optinter import OptInterSearch



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


def run_ingest(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Read, split and encode the input; write encoded parquet, the encoder and the feature map."""
    started = time.perf_counter()
    params = ingest_params(cfg)
    scratch = workdir / ".staged"  # compressed text decompressed once, as parquet; removed before the stage commits
    try:
        raw = load_raw(cfg.data.path, params, cfg.data.synthetic_rows, cfg.data.synthetic_seed, scratch)
        result = ingest(raw, params, scratch)
        for note in result.notes:
            print(f"ingest: {note}", file=sys.stderr)
        splits: dict[str, dict[str, float]] = {}
        for name, frame in tqdm(result.splits.items(), desc="ingest: encode splits", unit="split", disable=None):
            path = catalog.split_file(workdir, name)
            frame.sink_parquet(path, row_group_size=1 << 18)
            labels = (
                pl.scan_parquet(path)
                .select(pl.len().alias("rows"), pl.col(result.schema.label).cast(pl.Int64).sum().alias("pos"))
                .collect()
            )
            rows, pos = labels.row(0)
            splits[name] = {"rows": int(rows), "positive_rate": float(pos / rows) if rows else 0.0}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.encoder.save(workdir)
    feature_map = result.encoder.feature_map(splits, {"origin": result.origin})
    (workdir / catalog.FEATURE_MAP).write_text(feature_map.to_json())
    seconds = time.perf_counter() - started
    total = sum(s["rows"] for s in splits.values())
    kinds = [spec.kind for spec in feature_map.fields]
    metrics = {f"{name}_rows": s["rows"] for name, s in splits.items()}
    metrics |= {f"{name}_positive_rate": s["positive_rate"] for name, s in splits.items()}
    metrics |= {
        "fields": len(kinds),
        "categorical_fields": kinds.count("categorical"),
        "numeric_fields": kinds.count("numeric"),
        "multi_fields": kinds.count("multi"),
        "seconds": seconds,
        "rows_per_s": total / seconds if seconds > 0 else 0.0,
    }
    return StageOutput(
        params={
            "origin": result.origin,
            "label": result.schema.label,
            **({"label_mapping": result.schema.label_mapping()} if result.schema.positive is not None else {}),
            **cfg.encode.model_dump(),
            "split": cfg.split.model_dump(),
        },
        metrics=metrics,
        artifacts=[catalog.FEATURE_MAP, "encoder.json"],
        summary=f"ingest: {total:,} rows, {len(kinds)} fields -> {out / 'ingest'}",
    )


def _rank_batches(path: Path, feature_map: FeatureMap, batch_rows: int, desc: str):
    columns = [spec.rank_column for spec in feature_map.fields]
    total = -(-catalog.parquet_rows(path) // batch_rows)
    for batch in tqdm(
        catalog.iter_batches(path, [*columns, feature_map.label], batch_rows), total=total, desc=desc, unit="batch", disable=None
    ):
        label = batch.pop(feature_map.label).astype(np.int8, copy=False)
        yield batch, label


def run_rank(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Rank features, pairs and 3MR order; write ranking.csv, pairs.csv, quality.json and ranking.png."""
    ingest_dir = catalog.stage_path(out, "ingest")
    feature_map = catalog.load_feature_map(ingest_dir)
    train = catalog.split_file(ingest_dir, "train")
    if not train.is_file():
        raise UserError(f"{train}: encoded train split not found; run the ingest stage first")
    rc = cfg.rank
    params = params_from(RankParams, rc)
    started = time.perf_counter()
    result = rank_features(_rank_batches(train, feature_map, rc.batch_rows, "rank: count train"), feature_map, params)
    seconds = time.perf_counter() - started
    cardinalities = {spec.rank_column: spec.rank_cardinality for spec in feature_map.fields}
    eval_counts = {}
    for split in ("valid", "test"):
        path = catalog.split_file(ingest_dir, split)
        if path.is_file() and catalog.parquet_rows(path):
            counter = ContingencyCounter(cardinalities)
            for batch, label in _rank_batches(path, feature_map, rc.batch_rows, f"rank: count {split}"):
                counter.update(batch, label)
            eval_counts[split] = {col: table.sum(axis=1) for col, table in counter.tables.items()}
    by_name = dict(zip(result.ranking["feature"], result.ranking["adjusted_mi"], strict=True))
    adjusted = {spec.rank_column: by_name[spec.name] for spec in feature_map.fields}
    quality = quality_report(
        feature_map, result.counter.tables, adjusted, result.label_entropy, eval_counts, params_from(QualityParams, rc.quality)
    )
    quality = {
        "rows": {name: s["rows"] for name, s in feature_map.splits.items()},
        "label": {"name": feature_map.label, "positive_rate": result.positive_rate, "entropy": result.label_entropy},
        **quality,
    }
    result.ranking.write_csv(workdir / "ranking.csv")
    result.pairs.write_csv(workdir / "pairs.csv")
    catalog.write_json(workdir / "quality.json", quality)
    ranking_bar_plot(result.ranking, workdir / "ranking.png", rc.plot_top, rc.score)
    cells = result.counter.rows * len(feature_map.fields)
    flagged = sum(len(v) for v in quality["flags"].values())
    top = result.ranking["feature"].head(5).to_list()
    return StageOutput(
        params={**rc.model_dump(exclude={"quality"}), "quality": rc.quality.model_dump()},
        metrics={
            "seconds": seconds,
            "cells": cells,
            "cells_per_s": cells / seconds if seconds > 0 else 0.0,
            "pairs": result.pairs.height,
            "flags": flagged,
            "top_score": float(result.ranking["score"][0]),
        },
        artifacts=["ranking.csv", "pairs.csv", "quality.json", "ranking.png"],
        summary=f"rank: top features {', '.join(top)} -> {out / 'rank'}",
    )


def load_split(ingest_dir: Path, split: str, feature_map: FeatureMap, numeric_as_value: bool):
    """One encoded split in memory (an InMemoryData), or None when the ingest stage wrote no such split."""
    from models.batching import dense_fields, sparse_fields
    from models.data import InMemoryData

    path = catalog.split_file(ingest_dir, split)
    if not path.is_file():
        return None
    columns = [f.column for f in sparse_fields(feature_map, numeric_as_value)]
    columns += [f.value_column for f in dense_fields(feature_map, numeric_as_value) if f.value_column]
    data = catalog.read_columns(path, [*columns, feature_map.label])
    label = data.pop(feature_map.label)
    return InMemoryData(data, label, feature_map, numeric_as_value)


OPTFS_STATE = "optfs_gates.pt"
DNIS_STATE = "dnis_mask.pt"
OPTINTER_KEYS = "optinter_keys.npz"


def _vocab(feature_map: FeatureMap, name: str) -> int:
    return next(f.vocab_size for f in feature_map.fields if f.name == name)


def candidate_pairs(out: Path, feature_map: FeatureMap, budget: int) -> list[tuple[str, str]]:
    """OptInter's candidates: the rank stage's top pairs by gain whose fields are both single-valued."""
    path = catalog.stage_path(out, "rank") / "pairs.csv"
    if not path.is_file():
        raise UserError(f"{path}: optinter takes its candidate pairs from the rank stage; run rank first (--stages ingest,rank,search)")
    kinds = {f.name: f.kind for f in feature_map.fields}
    ranked = pl.read_csv(path).sort("gain", descending=True)
    pairs = [
        (a, b)
        for a, b in zip(ranked["feature_a"], ranked["feature_b"], strict=True)
        if kinds.get(a) not in (None, "multi") and kinds.get(b) not in (None, "multi")
    ]
    if not pairs:
        raise UserError(f"{path}: no pair of single-valued fields to search; raise rank.pair_budget")
    return pairs[:budget]


def top_features(out: Path, feature_map: FeatureMap, cfg: PipelineConfig) -> FeatureMap:
    """`feature_map` restricted to the search's ranking budget: the rank stage's top `max_features` features, plus,
    when OptInter searches, the fields of its candidate pairs (fields that matter only jointly rank low alone)."""
    budget = cfg.search.max_features
    if budget is None:
        return feature_map
    path = catalog.stage_path(out, "rank") / "ranking.csv"
    if not path.is_file():
        raise UserError(f"{path}: search.max_features keeps the rank stage's top features; run rank first (--stages ingest,rank,...)")
    keep = set(pl.read_csv(path).sort("rank")["feature"].head(budget).to_list())
    if "optinter" in cfg.search.methods:
        keep |= {name for pair in candidate_pairs(out, feature_map, cfg.search.optinter.max_pairs) for name in pair}
    return dataclasses.replace(feature_map, fields=tuple(f for f in feature_map.fields if f.name in keep))


def with_ranked_chunks(cfg: PipelineConfig, out: Path, feature_map: FeatureMap) -> PipelineConfig:
    """`cfg` with Unified Embedding's `chunk_counts: rank` replaced by a {field: count} mapping from the rank stage's
    ranking (rank 1 gets `chunks`, the last field one; models.embedding.chunks_by_rank), so that the trained model's
    package holds the counts it was built with."""
    params = cfg.train.params
    if cfg.train.model != "unified" or params.get("chunk_counts") != "rank":
        return cfg
    counts = ranked_chunk_counts(out, feature_map, int(params.get("chunks", 1)))
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"params": {**params, "chunk_counts": counts}})})


def ranked_chunk_counts(out: Path, feature_map: FeatureMap, chunks: int) -> dict[str, int]:
    """Unified Embedding's chunk count per field of `feature_map` from the rank stage's order among those fields."""
    from models.embedding import chunks_by_rank

    path = catalog.stage_path(out, "rank") / "ranking.csv"
    if not path.is_file():
        raise UserError(f"{path}: chunk_counts 'rank' takes Unified Embedding's chunk counts from the rank stage; run rank first")
    ranking = pl.read_csv(path)
    ranks = dict(zip(ranking["feature"], ranking["rank"], strict=True))
    names = [f.name for f in feature_map.fields]
    missing = [name for name in names if name not in ranks]
    if missing:
        raise UserError(f"{path}: no rank for field(s) {', '.join(missing)}; rerun the rank stage")
    order = sorted(names, key=ranks.__getitem__)
    return chunks_by_rank({name: i + 1 for i, name in enumerate(order)}, chunks)


def _model_factory(cfg: PipelineConfig, feature_map: FeatureMap):
    """A function that builds the configured model afresh (seeded), and its embedding config."""
    import torch

    from models.embedding import EmbeddingConfig
    from models.registry import build_model

    tc = cfg.train
    embedding = EmbeddingConfig(dim=tc.embedding_dim, backend=tc.backend, numeric_as_value=tc.numeric_as_value)

    def build():
        torch.manual_seed(tc.seed)
        return build_model(tc.model, feature_map, embedding, tc.params)

    return build, embedding


def _search_optfs(model, train, valid, settings, section, workdir: Path | None, on_epoch=None) -> tuple[dict[str, Any], Any]:
    """OptFS on `model` with the config section's settings: (summary, result); with `workdir`, its state for train."""
    import torch

    from models.search.optfs import OptFSConfig, optfs

    result = optfs(model, train, valid, settings, params_from(OptFSConfig, section), on_epoch=on_epoch)
    summary = {
        "kept_values": result.kept_values,
        "total_values": result.total_values,
        "kept_fraction": result.kept_values / max(1, result.total_values),
        "dropped_fields": result.dropped_fields,
        "fields": {
            name: {"kept": int(mask[FIRST_VALUE_ID:].sum()), "values": int(mask[FIRST_VALUE_ID:].numel())}
            for name, mask in result.kept.items()
        },
        "valid_auc_after": result.retrain.best_valid_auc,
        "valid_logloss_after": result.retrain.best_valid_logloss,
        "search_epochs": len(result.search.history),
        "retrain_epochs": len(result.retrain.history),
        "settings": section.model_dump(),
    }
    if workdir is not None:
        torch.save({"logits": result.logits, "rewind": result.rewind, "init": section.init}, workdir / OPTFS_STATE)
        kept = [
            pl.DataFrame({"field": name, "id": torch.nonzero(mask).flatten().numpy()}, schema={"field": pl.String, "id": pl.Int64})
            for name, mask in result.kept.items()
        ]
        pl.concat(kept).write_parquet(workdir / "optfs_kept_values.parquet")
    return summary, result


def _search_dnis(model, train, valid, settings, dim: int, section, workdir: Path | None, on_epoch=None) -> tuple[dict[str, Any], Any]:
    """DNIS on `model` with the config section's settings: (summary, result); with `workdir`, its state for train."""
    import torch

    from models.search.dnis import DNISConfig, dnis

    found = dnis(model, train, valid, settings, dim, params_from(DNISConfig, section), on_epoch=on_epoch)
    summary = {
        "embedding_params_before": found.full_params,
        "embedding_params_after": found.kept_params,
        "params_cut": 1 - found.kept_params / found.full_params,
        "fields": {
            name: {
                "mean_dim": float(d[FIRST_VALUE_ID:].float().mean()),
                "min_dim": int(d[FIRST_VALUE_ID:].min()),
                "max_dim": int(d[FIRST_VALUE_ID:].max()),
            }
            for name, d in found.dims.items()
        },
        "valid_auc_after": found.retrain.best_valid_auc,
        "valid_logloss_after": found.retrain.best_valid_logloss,
        "retrain_epochs": len(found.retrain.history),
        "rewound": found.rewound,
        "settings": section.model_dump(),
    }
    if workdir is not None:
        torch.save({"mask": found.mask, "start": found.start}, workdir / DNIS_STATE)
    return summary, found


def _optinter_settings(section: OptInterSection) -> OptInterSearch:
    """The search.optinter section as OptInterSearch (the search and the train stage's rebuild read the same)."""
    from models.search.optinter import OptInterSearch

    return dataclasses.replace(params_from(OptInterSearch, section), hidden=tuple(section.hidden))


def run_search(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Run the configured search methods on train/valid (never test); write one JSON per method."""
    import torch

    from features.crosses import cross_vocabulary
    from models.optinter import MODES
    from models.search.optinter import optinter
    from models.trainer import TrainConfig, fit

    ingest_dir = catalog.stage_path(out, "ingest")
    full_map = catalog.load_feature_map(ingest_dir)
    feature_map = top_features(out, full_map, cfg)
    cfg = with_ranked_chunks(cfg, out, feature_map)
    tc = cfg.train
    train = load_split(ingest_dir, "train", feature_map, tc.numeric_as_value)
    valid = load_split(ingest_dir, "valid", feature_map, tc.numeric_as_value)
    if train is None or valid is None or len(valid) == 0:
        raise UserError(f"{ingest_dir}: search needs the train split and a non-empty valid split")
    build, embedding = _model_factory(cfg, feature_map)
    settings = params_from(TrainConfig, tc)
    metrics: dict[str, float] = {}
    report: dict[str, Any] = {}
    baseline = None
    if cfg.search.baseline:
        started = time.perf_counter()
        model = build()
        fitted = fit(model, train, valid, settings)
        baseline = {
            "valid_auc": fitted.best_valid_auc,
            "valid_logloss": fitted.best_valid_logloss,
            "embedding_rows": sum(w.shape[0] for w in model.embedding_tables()),
            "epochs": len(fitted.history),
            "seconds": time.perf_counter() - started,
        }
        catalog.write_json(workdir / "baseline.json", baseline)
        metrics |= {f"baseline_{k}": float(v) for k, v in baseline.items()}
    kept_fields = [f.name for f in feature_map.fields]
    catalog.write_json(
        workdir / "fields.json",
        {
            "budget": cfg.search.max_features,
            "fields": kept_fields,
            "dropped": [f.name for f in full_map.fields if f.name not in kept_fields],
        },
    )
    metrics["fields"] = float(len(kept_fields))
    artifacts = ["fields.json", "baseline.json"] if baseline else ["fields.json"]

    def record(method: str, started: float, summary: dict[str, Any], headline: tuple[str, ...]) -> None:
        """Add the shared before/time figures, write OUT/search/<method>.json, and collect metrics and the report."""
        seconds = time.perf_counter() - started
        summary |= {
            "valid_auc_before": baseline["valid_auc"] if baseline else None,
            "seconds": seconds,
            "seconds_over_one_training": seconds / baseline["seconds"] if baseline else None,
        }
        catalog.write_json(workdir / f"{method}.json", summary)
        artifacts.append(f"{method}.json")
        metrics.update({f"{method}_{k}": float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        report[method] = {k: summary[k] for k in headline}

    model = build()
    if "optfs" in cfg.search.methods:
        started = time.perf_counter()
        try:
            summary, _ = _search_optfs(model, train, valid, settings, cfg.search.optfs, workdir)
        except ValueError as exc:
            raise UserError(f"search optfs with model {tc.model!r}: {exc}") from exc
        record("optfs", started, {"model": tc.model, **summary}, ("kept_fraction", "dropped_fields", "valid_auc_before", "valid_auc_after"))
    if "optinter" in cfg.search.methods:
        started = time.perf_counter()
        oc = cfg.search.optinter
        pairs = candidate_pairs(out, feature_map, oc.max_pairs)
        keys = [cross_vocabulary(train.columns[a], train.columns[b], _vocab(feature_map, b), oc.min_count) for a, b in pairs]
        try:
            found = optinter(feature_map, embedding, pairs, keys, train, valid, settings, _optinter_settings(oc))
        except ValueError as exc:
            raise UserError(f"search optinter: {exc}") from exc
        summary = {
            "pairs": [
                {"a": a, "b": b, "mode": mode, "weights": dict(zip(MODES, map(float, w), strict=True)), "memorised_values": len(k)}
                for (a, b), mode, w, k in zip(pairs, found.modes, found.weights, keys, strict=True)
            ],
            "modes": {mode: found.modes.count(mode) for mode in MODES},
            "memorised_rows": found.memorised_rows,
            "arch_steps": found.arch_steps,
            "valid_auc_after": found.retrain.best_valid_auc,
            "valid_logloss_after": found.retrain.best_valid_logloss,
            "valid_auc_all_mode": found.uniform,
            "settings": oc.model_dump(),
        }
        np.savez(workdir / OPTINTER_KEYS, *keys)
        record("optinter", started, summary, ("modes", "memorised_rows", "valid_auc_before", "valid_auc_after"))
    children: list[dict[str, Any]] = []
    cleanup: list[Path] = []
    if "optuna" in cfg.search.methods:
        from models.embedding import EmbeddingConfig
        from models.registry import build_model
        from pipeline.plots import pareto_plot
        from pipeline.study import StudySettings, run_study

        started = time.perf_counter()
        oc = cfg.search.optuna

        def trial_search(config: dict[str, Any], on_epoch=None, target: Path | None = None):
            """Train one configuration (with its OptFS / DNIS searches): (valid AUC, parameters after selection, summaries)."""
            embedding = EmbeddingConfig(dim=config["embedding_dim"], backend=tc.backend, numeric_as_value=tc.numeric_as_value)
            torch.manual_seed(tc.seed)
            trial_model = build_model(config["model"], feature_map, embedding, config["params"])
            trial_settings = dataclasses.replace(settings, learning_rate=config["learning_rate"], max_epochs=oc.max_epochs)
            total = sum(p.numel() for p in trial_model.parameters())
            table = sum(w.numel() for w in trial_model.embedding_tables())

            def per_epoch(record) -> None:
                if on_epoch is not None:
                    on_epoch(record.epoch, record.valid_auc)

            if "optfs" not in config and "dnis" not in config:
                return fit(trial_model, train, valid, trial_settings, on_epoch=per_epoch).best_valid_auc, total, {}
            # Parameters after selection: dense layers, plus the embedding entries that survive (DNIS's mask over the
            # d-wide tables), times the share of values OptFS keeps.
            summaries, kept, auc = {}, table, 0.0
            if "optfs" in config:
                section = cfg.search.optfs.model_copy(update=config["optfs"])
                last = "dnis" not in config
                summaries["optfs"], found = _search_optfs(
                    trial_model, train, valid, trial_settings, section, target, per_epoch if last else None
                )
                auc = found.retrain.best_valid_auc
            if "dnis" in config:
                section = cfg.search.dnis.model_copy(update=config["dnis"])
                summaries["dnis"], found = _search_dnis(
                    trial_model, train, valid, trial_settings, config["embedding_dim"], section, target, per_epoch
                )
                kept, auc = table - found.full_params + found.kept_params, found.retrain.best_valid_auc
            if "optfs" in summaries:
                kept *= summaries["optfs"]["kept_fraction"]
            return auc, int(total - table + kept), summaries

        def train_trial(config: dict[str, Any], on_epoch) -> tuple[float, int]:
            auc, params, _ = trial_search(config, on_epoch)
            return auc, params

        storage = out / ".study" / "study.db"
        study_settings = StudySettings(
            trials=oc.trials,
            models=tuple(oc.models),
            embedding_dims=tuple(oc.embedding_dims),
            learning_rate=tuple(oc.learning_rate),
            max_depth=oc.max_depth,
            max_epochs=oc.max_epochs,
            prune_after=oc.prune_after,
            auc_tolerance=oc.auc_tolerance,
            seed=oc.seed,
            methods=tuple(oc.methods),
            optfs_l1=tuple(oc.optfs_l1),
            optfs_gamma=tuple(oc.optfs_gamma),
            dnis_prune_ratio=tuple(oc.dnis_prune_ratio),
            base_params={tc.model: dict(tc.params)},
        )
        try:
            study = run_study(storage, study_settings, train_trial)
        except ValueError as exc:
            raise UserError(f"search optuna with methods {', '.join(oc.methods)}: {exc}") from exc
        shutil.copy2(storage, workdir / "study.db")
        cleanup.append(storage)
        finished = [t for t in study["trials"] if t["state"] == "COMPLETE"]
        front = [t for t in finished if t["number"] in study["front"]]
        chosen = study["chosen"]
        pareto_plot(
            [(t["values"][1], t["values"][0]) for t in finished],
            [(t["values"][1], t["values"][0]) for t in front],
            (chosen["params"], chosen["valid_auc"]),
            workdir / "pareto.png",
        )
        artifacts.append("pareto.png")
        children = [
            {
                "name": f"trial {t['number']}",
                "params": {**t["params"], "state": t["state"]},
                "metrics": {"valid_auc": t["values"][0], "params": t["values"][1]} if t["values"] else {},
            }
            for t in study["trials"]
        ]
        summary = {**study, "trial_count": len(study["trials"]), "chosen_valid_auc": chosen["valid_auc"], "chosen_params": chosen["params"]}
        if oc.methods:  # rerun the chosen trial's searches (same seed, same result) and keep their state for train
            _, _, summary["chosen_search"] = trial_search(chosen["config"], target=workdir)
        record("optuna", started, summary, ("chosen", "front", "pruned"))
    if "dnis" in cfg.search.methods:  # on the OptFS-gated, retrained model when OptFS ran first
        started = time.perf_counter()
        try:
            summary, _ = _search_dnis(model, train, valid, settings, tc.embedding_dim, cfg.search.dnis, workdir)
        except ValueError as exc:
            raise UserError(f"search dnis with model {tc.model!r}: {exc}") from exc
        summary = {"model": tc.model, **summary, "on_optfs_gates": "optfs" in cfg.search.methods}
        record("dnis", started, summary, ("params_cut", "valid_auc_before", "valid_auc_after"))
    return StageOutput(
        params={"methods": ",".join(cfg.search.methods), "optfs": cfg.search.optfs.model_dump(), "dnis": cfg.search.dnis.model_dump()},
        metrics=metrics,
        artifacts=artifacts,
        summary=f"search: {', '.join(cfg.search.methods)} -> {out / 'search'}",
        report={"search": {"fields": kept_fields, **report}},
        children=children,
        cleanup=cleanup,
    )


def run_train(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Train the configured model with early stopping; evaluate the best epoch on valid and test."""
    # torch is imported here, not at module level, so that the data stages start without it.
    import torch

    from models.trainer import TrainConfig, evaluate, fit, resolve_device, resolve_precision, train_report

    ingest_dir = catalog.stage_path(out, "ingest")
    feature_map = catalog.load_feature_map(ingest_dir)
    if cfg.search.methods:  # the search's ranking budget holds for the trained model too
        feature_map = top_features(out, feature_map, cfg)
    studied = catalog.stage_path(out, "search") / "optuna.json"
    searched = set(cfg.search.methods)  # methods whose searched state train applies
    if "optuna" in cfg.search.methods and studied.is_file():  # the study's chosen trade-off replaces the train settings
        chosen = json.loads(studied.read_text())["chosen"]["config"]
        methods = {m: chosen.pop(m) for m in ("optfs", "dnis") if m in chosen}  # and its OptFS / DNIS settings
        cfg = cfg.model_copy(
            update={
                "train": cfg.train.model_copy(update=chosen),
                "search": cfg.search.model_copy(update={m: getattr(cfg.search, m).model_copy(update=v) for m, v in methods.items()}),
            }
        )
        searched |= set(methods)
    cfg = with_ranked_chunks(cfg, out, feature_map)
    tc = cfg.train
    train = load_split(ingest_dir, "train", feature_map, tc.numeric_as_value)
    valid = load_split(ingest_dir, "valid", feature_map, tc.numeric_as_value)
    test = load_split(ingest_dir, "test", feature_map, tc.numeric_as_value)
    if train is None or len(train) == 0:
        raise UserError(f"{ingest_dir}: no encoded train split; run the ingest stage first")
    if valid is None or len(valid) == 0:
        raise UserError(f"{ingest_dir}: the validation split is empty; set split.valid > 0 or give a valid file")
    build, embedding = _model_factory(cfg, feature_map)
    search_dir = catalog.stage_path(out, "search")
    model_name, model_params = tc.model, tc.params
    if "optinter" in cfg.search.methods and (search_dir / OPTINTER_KEYS).is_file():  # the searched architecture, from scratch
        from models.search.optinter import build_optinter

        chosen = json.loads((search_dir / "optinter.json").read_text())
        with np.load(search_dir / OPTINTER_KEYS) as stored:
            keys = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        pairs = [(p["a"], p["b"]) for p in chosen["pairs"]]
        modes = [p["mode"] for p in chosen["pairs"]]
        mlp = _optinter_settings(cfg.search.optinter).mlp()  # the searched network's MLP
        model = build_optinter(feature_map, embedding, pairs, modes, keys, mlp, tc.seed)
        model_name = "optinter"
        model_params = {"pairs": pairs, "modes": modes, "cross_sizes": [len(k) for k in keys], **mlp}
    else:
        model = build()
    optfs_applied = "optfs" in searched and (search_dir / OPTFS_STATE).is_file()
    dnis_applied = "dnis" in searched and (search_dir / DNIS_STATE).is_file()
    hooks = None
    try:
        if optfs_applied:  # OptFS's retrain: frozen hard gates from the search, weights rewound
            from models.search.optfs import apply_searched_gates

            state = torch.load(search_dir / OPTFS_STATE, weights_only=True)
            apply_searched_gates(model, state["logits"], state["rewind"], state["init"])
        if dnis_applied:  # DNIS's retrain: the pruned dimensions, from the searched weights, kept pruned
            from models.search.dnis import DNISConfig, apply_searched_dims
            from models.trainer import TrainHooks

            state = torch.load(search_dir / DNIS_STATE, weights_only=True)
            keeper = apply_searched_dims(model, tc.embedding_dim, params_from(DNISConfig, cfg.search.dnis), state["mask"], state["start"])
            hooks = TrainHooks(after_step=keeper)
    except (ValueError, RuntimeError) as exc:
        raise UserError(
            f"{search_dir}: the search output does not fit this model ({str(exc).splitlines()[0]}); rerun the search stage"
        ) from exc
    settings = params_from(TrainConfig, tc)
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
                optfs_applied,
                dnis_applied,
                cfg.search.model_dump(),
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
        on_epoch=lambda record: progress.update(1),
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        hooks=hooks,
    )
    progress.close()
    has_test = test is not None and len(test) > 0
    test_auc, test_logloss = evaluate(model, test, tc.batch_size, device, autocast) if has_test else (None, None)
    report = {
        "model": model_name,
        **train_report(model, result, test_auc, test_logloss),
        "optfs_gates": optfs_applied,
        "dnis_dims": dnis_applied,
        "train_seconds": time.perf_counter() - started,
        "precision": str(autocast).removeprefix("torch.") if autocast is not None else "float32",
        "device": str(device),
    }
    write_package(
        workdir / PACKAGE, model, model_name, model_params, embedding, cfg, ingest_dir, feature_map, gated=optfs_applied, dims=dnis_applied
    )
    catalog.write_json(workdir / "metrics.json", report)
    catalog.write_json(workdir / "history.json", [record.__dict__ for record in result.history])
    learning_curve_plot(
        [r.epoch for r in result.history],
        [r.train_loss for r in result.history],
        [r.valid_auc for r in result.history],
        workdir / "learning_curve.png",
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
    test_text = f", test AUC {test_auc:.4f}" if test_auc is not None else ""
    return StageOutput(
        params={**tc.model_dump(), "device": str(device)},
        metrics={k: float(v) for k, v in report.items() if isinstance(v, int | float)},
        artifacts=["metrics.json", "history.json", "learning_curve.png"],
        summary=f"train: {model_name} valid AUC {result.best_valid_auc:.4f}{test_text} after {len(result.history)} epochs -> {out / 'train'}",
        steps=steps,
        report=report,
        model=model,
        package=PACKAGE,
        cleanup=[checkpoint],
    )


def run_report(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Render the HTML run report from the committed outputs of the other stages."""
    from pipeline.report import REPORT, render_report

    (workdir / REPORT).write_text(render_report(out))
    return StageOutput(artifacts=[REPORT], summary=f"report: {out / 'report' / REPORT}")


STAGES: dict[str, Callable[[PipelineConfig, Path, Path], StageOutput]] = {
    "ingest": run_ingest,
    "rank": run_rank,
    "search": run_search,
    "train": run_train,
    "report": run_report,
}
