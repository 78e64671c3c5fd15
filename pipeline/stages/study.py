"""The search stage's Optuna study: trials over models and settings (and the searched methods' own settings)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from featuremap import FeatureMap
from methods import METHODS
from methods.base import ModelSpec, SearchRun
from pipeline import catalog
from pipeline.assemble import build
from pipeline.cache import code_version, recorded
from pipeline.config import PipelineConfig, method_settings
from pipeline.errors import UserError
from pipeline.plots import pareto_plot
from pipeline.study import StudySettings, run_study
from pipeline.upstream import candidate_pairs


def run_optuna(cfg: PipelineConfig, out: Path, workdir: Path, feature_map: FeatureMap, train, valid, settings):
    """Run (or resume) the study; (summary, one nested run per trial, the live study file to remove once committed)."""
    from models.embedding import EmbeddingConfig
    from models.trainer import fit

    tc, oc = cfg.train, cfg.search.optuna

    def trial_search(config: dict[str, Any], on_epoch=None, target: Path | None = None):
        """Train one configuration (with its methods' searches): (valid AUC, parameters after selection, summaries)."""
        embedding = EmbeddingConfig(
            dim=config["embedding_dim"], backend=tc.backend, numeric_as_value=tc.numeric_as_value, piecewise_bins=tc.piecewise_bins
        )
        spec = ModelSpec(config["model"], config["params"], embedding, tc.seed)
        trial_model = build(spec, feature_map)
        trial_settings = settings.model_copy(update={"learning_rate": config["learning_rate"], "max_epochs": oc.max_epochs})
        total = sum(p.numel() for p in trial_model.parameters())
        table = sum(w.numel() for w in trial_model.embedding_tables())

        def per_epoch(record) -> None:
            if on_epoch is not None:
                on_epoch(record.epoch, record.valid_auc)

        searched = [name for name in METHODS if name in config]
        if not searched:
            return fit(trial_model, train, valid, trial_settings, on_epoch=per_epoch).best_valid_auc, total, {}
        # Parameters after selection: dense layers, plus the embedding entries that survive (a dimension mask over the
        # d-wide tables), times the share of values kept (value gates).
        summaries, kept, auc = {}, table, 0.0
        run = SearchRun(
            feature_map, train, valid, trial_settings, spec, trial_model, lambda n, by="gain": candidate_pairs(out, feature_map, n, by)
        )
        for name in searched:
            run.on_epoch = per_epoch if name == searched[-1] else None
            section = method_settings(cfg, name).model_copy(update=config[name])
            found = METHODS[name].search(run, section)
            if target is not None:
                METHODS[name].save(found.state, target)
            summaries[name], auc = found.summary, found.summary["valid_auc_after"]
            if "embedding_params_after" in found.summary:
                kept = table - found.summary["embedding_params_before"] + found.summary["embedding_params_after"]
            run.earlier += (name,)
        for summary in summaries.values():
            kept *= summary.get("kept_fraction", 1.0)
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
        # each method's ranges: the section's keys that start with its name (e.g. search.optuna.<method>_l1)
        ranges={k: tuple(v) for k, v in oc.model_dump().items() if any(k.startswith(f"{m}_") for m in METHODS)},
        base_params={tc.model: dict(tc.params)},
    )
    # what the trials were trained on: a study left by a run on other data, features or settings does not resume
    ingest_record = recorded(out, "ingest") or {}
    fingerprint = hashlib.sha256(
        json.dumps(
            [
                repr(dataclasses.replace(study_settings, trials=0)),
                ingest_record.get("fingerprint"),
                [f.name for f in feature_map.fields],
                tc.model_dump(mode="json"),
                {m: method_settings(cfg, m).model_dump(mode="json") for m in oc.methods},  # their base settings
                code_version(),
            ],
            default=str,
        ).encode()
    ).hexdigest()[:20]
    try:
        study = run_study(storage, study_settings, train_trial, fingerprint)
    except ValueError as exc:
        raise UserError(f"search optuna with methods {', '.join(oc.methods)}: {exc}") from exc
    shutil.copy2(storage, workdir / catalog.STUDY_DB.name)
    finished = [t for t in study["trials"] if t["state"] == "COMPLETE"]
    front = [t for t in finished if t["number"] in study["front"]]
    chosen = study["chosen"]
    pareto_plot(
        [(t["values"][1], t["values"][0]) for t in finished],
        [(t["values"][1], t["values"][0]) for t in front],
        (chosen["params"], chosen["valid_auc"]),
        workdir / catalog.PARETO.name,
    )
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
    return summary, children, storage
