"""DNIS (Cheng et al., 2020): an embedding dimension per value and frequency block, then a masked retrain (docs/methods/dnis.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from featuremap import FIRST_VALUE_ID, FeatureMap
from methods.base import Applied, Found, Method, ModelSpec, SearchRun, Settings, auc_text, load_tensors, study_range

if TYPE_CHECKING:
    from models.base import CTRModel

STATE = "dnis_mask.pt"


class DNISSettings(Settings):
    """DNIS: an embedding dimension per value and frequency block (docs/methods/dnis.md)."""

    freq_blocks: int = Field(4, ge=1)
    """Values of each field cut into this many frequency blocks."""
    dim_blocks: int | None = Field(None, ge=1)
    """Dimension blocks; null: one per dimension."""
    warmup_epochs: int = Field(1, ge=0)
    """Epochs of plain training before the search."""
    search_epochs: int = Field(2, ge=1)
    """Epochs of the search."""
    alpha_lr: float = Field(0.01, gt=0)
    """α's learning rate."""
    l1: float = Field(1e-5, ge=0)
    """L1 on α."""
    prune_ratio: float = Field(0.5, gt=0, lt=1)
    """Share of embedding entries removed."""
    rewind: bool | Literal["auto"] = "auto"
    """Retrain from the weights before warm-up (true) or fine-tune the searched ones (false); auto: both, the better on valid kept."""


class DNIS(Method):
    name = "dnis"
    settings = DNISSettings
    headline = ("params_cut", "valid_auc_before", "valid_auc_after")
    applied_flag = "dnis_dims"

    def search(self, run: SearchRun, settings: DNISSettings) -> Found:
        from models.search.dnis import dnis

        dim = run.spec.embedding.dim
        found = dnis(run.model, run.train, run.valid, run.trainer, dim, settings, on_epoch=run.on_epoch)
        summary = {
            "model": run.spec.name,
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
            "settings": settings.model_dump(),
            "on_optfs_gates": "optfs" in run.earlier,
        }
        return Found(summary, {"mask": found.mask, "start": found.start})

    def save(self, state: dict[str, Any], directory: Path) -> list[str]:
        import torch

        torch.save(state, directory / STATE)
        return [STATE]

    def load(self, directory: Path) -> dict[str, Any] | None:
        return load_tensors(directory / STATE)

    def apply(self, model: CTRModel, state: dict[str, Any], settings: DNISSettings, spec: ModelSpec, feature_map: FeatureMap) -> Applied:
        from models.search.dnis import apply_searched_dims
        from models.trainer import TrainHooks

        # DNIS's retrain: the pruned dimensions, from the searched weights (or the rewound ones), kept pruned after every step.
        keeper = apply_searched_dims(model, spec.embedding.dim, settings, state["mask"], state["start"])
        return Applied(model, TrainHooks(after_step=keeper))

    def legacy_entry(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        return spec.get("dimension_mask") or None

    def restore(self, model: CTRModel | None, entry: dict[str, Any], spec: ModelSpec, feature_map: FeatureMap) -> CTRModel:
        import torch

        from models.search.dnis import attach_dimension_mask

        dim = spec.embedding.dim
        mask = attach_dimension_mask(model, dim, DNISSettings(**entry))
        mask.set_hard(torch.ones(mask.row_block.shape[0], dim, dtype=torch.bool))  # the boolean mask comes with the weights
        return model

    def study_space(self, trial: Any, ranges: dict[str, tuple[float, float]]) -> dict[str, Any]:
        return {"prune_ratio": trial.suggest_float("dnis_prune_ratio", *study_range(ranges, "dnis_prune_ratio"))}

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        return [
            f"DNIS kept {summary['embedding_params_after']:,} of {summary['embedding_params_before']:,} embedding entries "
            f"(cut {summary['params_cut']:.1%}); "
            f"valid AUC {auc_text(summary.get('valid_auc_before'))} -> {auc_text(summary['valid_auc_after'])}"
        ]

    def model_row(self, summary: dict[str, Any]) -> dict[str, Any]:
        return {"name": "dnis retrain", "valid_auc": summary["valid_auc_after"], "params": summary["embedding_params_after"]}
