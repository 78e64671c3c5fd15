"""OptInter (Lyu et al., 2022): memorise, factorise or drop each ranked pair, searched, then retrained (docs/methods/optinter.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from featuremap import FeatureMap
from methods.base import Applied, Found, Method, ModelSpec, SearchRun, Settings, auc_text

if TYPE_CHECKING:
    from models.base import CTRModel

KEYS = "optinter_keys.npz"
CHOSEN = "optinter_modes.json"
SUMMARY = "optinter.json"  # the search stage's summary of this method (OUT/search/<method>.json)


class OptInterSettings(Settings):
    """OptInter: memorise, factorise or drop each ranked pair (docs/methods/optinter.md)."""

    max_pairs: int = Field(20, ge=1)
    """Candidate pairs: the rank stage's top pairs by gain (single-valued fields)."""
    min_count: int = Field(20, ge=1)
    """A memorised cross needs this many train rows; rarer ones share the pair's OOV row."""
    search_epochs: int = Field(10, ge=1)
    """Epochs of the architecture search."""
    arch_lr: float = Field(0.01, gt=0)
    """α's learning rate."""
    anneal: float = Field(0.001, ge=0)
    """Softmax temperature t = max(0.01, 1 − anneal · step)."""
    hidden: list[int] = Field(default_factory=lambda: [400, 400, 400])
    """The MLP's hidden widths."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """The MLP's dropout, in the search and the retrained model."""
    batch_norm: bool = False
    """Batch norm in the MLP."""
    compare: bool = False
    """Also train all-memorise, all-factorise and all-naive models (validation AUC)."""
    arch_split: Literal["train", "valid"] = "valid"
    """α's data: a step on a validation batch after each training step (valid), or jointly on training batches (train, the paper's)."""
    warmup_epochs: int = Field(0, ge=0)
    """Epochs (of search_epochs) with α held uniform before it moves."""
    factor_regularizer: float = Field(0.0, ge=0)
    """A separate L2 on the factor table."""

    @model_validator(mode="after")
    def _warmup_within_search(self) -> OptInterSettings:
        if self.warmup_epochs >= self.search_epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below search_epochs ({self.search_epochs})")
        return self

    def mlp(self) -> dict[str, Any]:
        """The network's settings (MLP and factor regulariser), as OptInterConfig takes them: the search's and the retrain's."""
        return {
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
            "factor_regularizer": self.factor_regularizer,
        }


def _vocab(feature_map: FeatureMap, name: str) -> int:
    return next(f.vocab_size for f in feature_map.fields if f.name == name)


class OptInterMethod(Method):
    name = "optinter"
    settings = OptInterSettings
    headline = ("modes", "memorised_rows", "valid_auc_before", "valid_auc_after")
    replaces_model = True

    def pair_budget(self, settings: OptInterSettings) -> dict[str, int]:
        return {"gain": settings.max_pairs}

    def search(self, run: SearchRun, settings: OptInterSettings) -> Found:
        from features.crosses import cross_vocabulary
        from models.optinter import MODES
        from models.search.optinter import optinter

        pairs = run.ranked_pairs(settings.max_pairs)
        train, feature_map = run.train, run.feature_map
        keys = [cross_vocabulary(train.columns[a], train.columns[b], _vocab(feature_map, b), settings.min_count) for a, b in pairs]
        found = optinter(feature_map, run.spec.embedding, pairs, keys, train, run.valid, run.trainer, settings)
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
            "settings": settings.model_dump(),
        }
        return Found(summary, {"pairs": pairs, "modes": found.modes, "keys": keys})

    def save(self, state: dict[str, Any], directory: Path) -> list[str]:
        np.savez(directory / KEYS, *state["keys"])
        (directory / CHOSEN).write_text(json.dumps({"pairs": state["pairs"], "modes": state["modes"]}))
        return [KEYS, CHOSEN]

    def load(self, directory: Path) -> dict[str, Any] | None:
        if not (directory / KEYS).is_file():
            return None
        if (directory / CHOSEN).is_file():
            chosen = json.loads((directory / CHOSEN).read_text())
        elif (directory / SUMMARY).is_file():  # a search output written before the method kept its own state file
            found = json.loads((directory / SUMMARY).read_text())["pairs"]
            chosen = {"pairs": [(p["a"], p["b"]) for p in found], "modes": [p["mode"] for p in found]}
        else:
            return None
        with np.load(directory / KEYS) as stored:
            keys = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        return {"pairs": [tuple(p) for p in chosen["pairs"]], "modes": chosen["modes"], "keys": keys}

    def _params(self, state: dict[str, Any], settings: OptInterSettings) -> dict[str, Any]:
        return {"pairs": state["pairs"], "modes": state["modes"], "cross_sizes": [len(k) for k in state["keys"]], **settings.mlp()}

    def apply(
        self, model: CTRModel | None, state: dict[str, Any], settings: OptInterSettings, spec: ModelSpec, feature_map: FeatureMap
    ) -> Applied:
        from models.search.optinter import build_optinter

        # The searched architecture, trained from scratch with the searched network's MLP.
        mlp = settings.mlp()
        built = build_optinter(feature_map, spec.embedding, state["pairs"], state["modes"], state["keys"], mlp, spec.seed)
        return Applied(built, name="optinter", params=self._params(state, settings))

    def package_entry(self, settings: OptInterSettings, state: dict[str, Any]) -> dict[str, Any]:
        return self._params(state, settings)

    def legacy_entry(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        return spec["params"] if spec.get("model") == "optinter" else None

    def restore(self, model: CTRModel | None, entry: dict[str, Any], spec: ModelSpec, feature_map: FeatureMap) -> CTRModel:
        from models.optinter import OptInter, OptInterConfig

        params = {**entry, "pairs": [tuple(p) for p in entry["pairs"]]}
        return OptInter(feature_map, spec.embedding, OptInterConfig(**params))  # memorised vocabularies come with the weights

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        modes = ", ".join(f"{p['a']}×{p['b']}: {p['mode']}" for p in summary["pairs"])
        lines = [f"OptInter pair modes {summary['modes']} ({modes}); memorised rows {summary['memorised_rows']:,}"]
        if summary.get("valid_auc_all_mode"):
            uniform = ", ".join(f"all-{m} {auc_text(a)}" for m, a in summary["valid_auc_all_mode"].items())
            lines.append(f"OptInter searched valid AUC {auc_text(summary['valid_auc_after'])} against {uniform}")
        return lines

    def model_row(self, summary: dict[str, Any]) -> dict[str, Any]:
        return {"name": "optinter retrain", "valid_auc": summary["valid_auc_after"], "params": summary["memorised_rows"]}
