"""OptFS (Lyu et al., 2023): a gate per feature value, searched, then a retrain with the hard gates (docs/methods/optfs.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from featuremap import FIRST_VALUE_ID, FeatureMap
from methods.base import Applied, Found, Method, ModelSpec, SearchRun, Settings, auc_text, load_tensors, study_range

if TYPE_CHECKING:
    from models.base import CTRModel

STATE = "optfs_gates.pt"
KEPT = "optfs_kept_values.parquet"


class OptFSSettings(Settings):
    """OptFS: a gate per feature value (docs/methods/optfs.md)."""

    epochs: int = Field(5, ge=1)
    """Search epochs T; the temperature grows from 1 to gamma over them."""
    gamma: float = Field(1000.0, gt=1)
    """Final temperature."""
    l1: float = Field(1e-4, ge=0)
    """λ on the sum of all soft gates: the largest of 1e-8 ... 1e-3 within 0.001 valid AUC of no gates (docs/methods/optfs.md)."""
    gate_lr: float | None = Field(0.01, gt=0)
    """The gates' Adam learning rate (null: train.learning_rate); Adam moves a gate about this much per step, so at 1e-3 none closes within 500 steps."""
    init: float = 0.5
    """Initial gate logit."""
    rewind_epoch: int = Field(1, ge=1)
    """The retrain starts from the weights at the start of this search epoch (1: the initial weights)."""


class OptFS(Method):
    name = "optfs"
    settings = OptFSSettings
    headline = ("kept_fraction", "dropped_fields", "valid_auc_before", "valid_auc_after")
    applied_flag = "optfs_gates"

    def search(self, run: SearchRun, settings: OptFSSettings) -> Found:
        from models.search.optfs import optfs

        result = optfs(run.model, run.train, run.valid, run.trainer, settings, on_epoch=run.on_epoch)
        summary = {
            "model": run.spec.name,
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
            "settings": settings.model_dump(),
        }
        state = {"logits": result.logits, "rewind": result.rewind, "init": settings.init, "kept": result.kept}
        return Found(summary, state)

    def save(self, state: dict[str, Any], directory: Path) -> list[str]:
        import polars as pl
        import torch

        torch.save({k: state[k] for k in ("logits", "rewind", "init")}, directory / STATE)
        kept = [
            pl.DataFrame({"field": name, "id": torch.nonzero(mask).flatten().cpu().numpy()}, schema={"field": pl.String, "id": pl.Int64})
            for name, mask in state["kept"].items()
        ]
        pl.concat(kept).write_parquet(directory / KEPT)
        return [STATE, KEPT]

    def load(self, directory: Path) -> dict[str, Any] | None:
        return load_tensors(directory / STATE)

    def apply(self, model: CTRModel, state: dict[str, Any], settings: OptFSSettings, spec: ModelSpec, feature_map: FeatureMap) -> Applied:
        from models.search.optfs import apply_searched_gates

        # OptFS's retrain: frozen hard gates from the search, weights rewound to the snapshot.
        apply_searched_gates(model, state["logits"], state["rewind"], state["init"])
        return Applied(model)

    def package_entry(self, settings: OptFSSettings, state: dict[str, Any]) -> dict[str, Any]:
        return {"init": settings.init}

    def legacy_entry(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        return spec.get("value_gates") or None

    def restore(self, model: CTRModel | None, entry: dict[str, Any], spec: ModelSpec, feature_map: FeatureMap) -> CTRModel:
        from models.search.optfs import attach_value_gates

        attach_value_gates(model, entry["init"]).hard = True  # the logits come with the weights
        return model

    def study_space(self, trial: Any, ranges: dict[str, tuple[float, float]]) -> dict[str, Any]:
        return {
            "l1": trial.suggest_float("optfs_l1", *study_range(ranges, "optfs_l1"), log=True),
            "gamma": trial.suggest_float("optfs_gamma", *study_range(ranges, "optfs_gamma"), log=True),
        }

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        return [
            f"OptFS kept {summary['kept_values']:,} of {summary['total_values']:,} values ({summary['kept_fraction']:.1%}); "
            f"dropped fields: {', '.join(summary['dropped_fields']) or 'none'}; "
            f"valid AUC {auc_text(summary.get('valid_auc_before'))} -> {auc_text(summary['valid_auc_after'])}"
        ]
