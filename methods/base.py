"""What a search method is: its settings, its search, its saved state, and how it shapes a model.

A method is one module (methods/optfs.py, dnis.py, optinter.py, unified.py, ...) holding a
`Settings` class (validated from YAML under `search.<name>`, the only copy of its defaults)
and a `Method` subclass; `methods/__init__.py` registers it. The search stage calls
`search` and `save`, the train stage `load` and `apply` (through `pipeline.assemble`), the
package keeps `package_entry` and predict `restore`s from it, the report shows `report_lines`
and `model_row`. Nothing in pipeline/ names a method outside that registry and the config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from featuremap import FeatureMap

if TYPE_CHECKING:  # torch is imported where it is used, so that the config (and the data stages) load without it
    from models.base import CTRModel
    from models.data import InMemoryData
    from models.embedding import EmbeddingConfig
    from models.trainer import EpochRecord, TrainConfig, TrainHooks


class Settings(BaseModel):
    """A method's settings section: unknown keys are errors, a field's docstring is its documentation."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


@dataclass(frozen=True)
class ModelSpec:
    """How to build the configured model afresh: name, its settings, embeddings and the seed of its initial weights."""

    name: str
    params: dict[str, Any]
    embedding: EmbeddingConfig
    seed: int


@dataclass
class SearchRun:
    """What the search stage hands a method: data, the trainer's settings, the model spec, the rank stage's pairs."""

    feature_map: FeatureMap
    train: InMemoryData
    valid: InMemoryData
    trainer: TrainConfig
    spec: ModelSpec
    model: CTRModel  # the model the earlier methods of this run searched on (OptFS's gated model for DNIS)
    ranked_pairs: Callable[
        ..., list[tuple[str, str]]
    ]  # (n, by="gain"): the rank stage's top n pairs of single-valued fields by pairs.csv's column `by`
    on_epoch: Callable[[EpochRecord], None] | None = None  # after each retrain epoch (a study prunes there)
    earlier: tuple[str, ...] = ()  # methods already applied to `model` in this run
    ranks: Callable[[], dict[str, int]] | None = None  # the rank stage's rank per feature (1 = most informative)


@dataclass
class Found:
    """A search's result: the summary written to OUT/search/<method>.json, and the state train applies."""

    summary: dict[str, Any]
    state: Any


@dataclass
class Applied:
    """A model set up by a method for training: the model (the same one, or a replacement) and its training hooks."""

    model: CTRModel
    hooks: TrainHooks | None = None
    name: str | None = None  # a replacement model's name and settings, for the package
    params: dict[str, Any] | None = None


class Method(ABC):
    """A search method; subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str]
    settings: ClassVar[type[Settings]]
    headline: ClassVar[tuple[str, ...]] = ()  # summary keys shown in OUT/metrics.json's search section
    applied_flag: ClassVar[str | None] = None  # train metrics key set true when the state was applied
    replaces_model: ClassVar[bool] = False  # builds its own model (so it runs alone): `apply` and `restore` return it
    derives: ClassVar[bool] = False  # adds derived fields to the data (`derived_map`, `derive`); its state goes in the package
    trains: ClassVar[bool] = True  # its search trains a model (so the search stage's unsearched baseline is worth training)
    shardable: ClassVar[bool] = False  # whether distributed training (sharded torchrec tables) can take the state
    gbdt_input: ClassVar[bool] = True  # its derived fields are inputs of the GBDT baselines too (`derives` only)

    def pair_budget(self, settings: Settings) -> dict[str, int]:
        """The rank stage's top pairs the method takes its pairs from, as {ordering: how many} (ordering: a column of
        pairs.csv, "gain" or "adjusted_mi_pair"); their fields stay within a ranking budget."""
        return {}

    @abstractmethod
    def search(self, run: SearchRun, settings: Settings) -> Found:
        """Search on `run.model` with train and valid (never test): the summary and the state train applies."""

    @abstractmethod
    def save(self, state: Any, directory: Path) -> list[str]:
        """Write the state into `directory`; the file names written."""

    @abstractmethod
    def load(self, directory: Path) -> Any | None:
        """The state saved in `directory`, or None when this method's search left none there."""

    @abstractmethod
    def apply(self, model: CTRModel, state: Any, settings: Settings, spec: ModelSpec, feature_map: FeatureMap) -> Applied:
        """Set a freshly built model up for training with the searched state."""

    def package_entry(self, settings: Settings, state: Any) -> dict[str, Any]:
        """What the scoring package records so that `restore` can rebuild the model's structure (weights come after)."""
        return settings.model_dump(mode="json")

    def legacy_entry(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """This method's entry in a package spec written before packages kept a `methods` section, or None."""
        return None

    @abstractmethod
    def restore(self, model: CTRModel | None, entry: dict[str, Any], spec: ModelSpec, feature_map: FeatureMap) -> CTRModel:
        """The packaged model's structure: `model` (None when this method replaces it) set up as trained."""

    def derived_map(self, state: Any, feature_map: FeatureMap) -> FeatureMap:
        """The feature map with this method's derived fields (only for a method that `derives`)."""
        return feature_map

    def derive(self, state: Any, columns: dict[str, Any], labels: Any | None) -> dict[str, Any]:
        """The derived columns of one split's rows; `labels` are given for train rows only (no row may see its own)."""
        return {}

    def derived_fields(self, state: Any) -> list[str]:
        """The names of the fields `derived_map` adds."""
        return [f.name for f in self.derived_map(state, FeatureMap(label="", fields=())).fields]

    def study_space(self, trial: Any, ranges: dict[str, tuple[float, float]]) -> dict[str, Any]:
        """The settings an Optuna trial samples for this method (suggestions on `trial`, within the config's `ranges`)."""
        raise ValueError(f"the study cannot search {self.name}'s settings")

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        """What the run report says the search decided."""
        return []

    def model_row(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        """The searched model's row in the report's model comparison (None: the search trains no model)."""
        return {"name": f"{self.name} retrain", "valid_auc": summary.get("valid_auc_after"), "params": None}


class DerivingMethod(Method):
    """A method that only adds fields to the data (the encodings, GBDT leaves): the model is built on the derived
    feature map as it is, nothing trains in its search, and its state's `files` travel in the package."""

    derives = True
    trains = False
    shardable = True  # the derived fields are ordinary fields
    files: ClassVar[tuple[str, ...]] = ()  # what `save` writes

    def apply(self, model: CTRModel, state: Any, settings: Settings, spec: ModelSpec, feature_map: FeatureMap) -> Applied:
        return Applied(model)  # the derived fields are in the data and the feature map the model was built on

    def package_entry(self, settings: Settings, state: Any) -> dict[str, Any]:
        return {"files": list(self.files)}  # the state travels as files beside the package's weights

    def restore(self, model: CTRModel | None, entry: dict[str, Any], spec: ModelSpec, feature_map: FeatureMap) -> CTRModel:
        return model

    def model_row(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        return None  # nothing is trained in the search stage


def spaced_rows(rows: int, cap: int) -> Any:
    """At most `cap` evenly spaced row numbers of `rows` rows, in order (numpy int64)."""
    import numpy as np

    return np.unique(np.linspace(0, rows - 1, min(rows, cap)).astype(np.int64))


def ranking_line(what: str, ranking: list[dict[str, Any]]) -> list[str]:
    """The report's line on a method's derived fields ranked like the features (its top five), or none."""
    top = ", ".join(f"{r['feature']} (score {r['score']:.1f})" for r in ranking[:5])
    return [f"{what} ranked like the features: {top}"] if ranking else []


def rank_derived(specs: list[Any], columns: dict[str, Any], labels: Any) -> list[dict[str, Any]]:
    """Derived fields ranked like any feature: the rank stage's score of fields `specs` over their train-row `columns`
    (ids in each spec's rank column) and `labels`; rank, feature, score, adjusted MI and p-value per field."""
    import numpy as np

    from features.ranking import rank_features
    from features.settings import RankParams

    feature_map = FeatureMap(label="label", fields=tuple(specs), splits={"train": {"rows": len(labels)}})
    batch = {spec.rank_column: columns[spec.rank_column] for spec in specs}
    ranked = rank_features(iter([(batch, np.asarray(labels).astype(np.int8))]), feature_map, RankParams(pair_budget=0))
    return ranked.ranking.select("rank", "feature", "score", "adjusted_mi", "p_value").to_dicts()


def study_range(ranges: dict[str, tuple[float, float]], key: str) -> tuple[float, float]:
    """The (low, high) range `key` of the study's section, or a ValueError naming the missing key."""
    if key not in ranges:
        raise ValueError(f"search.optuna has no {key} range for this method's settings")
    return ranges[key]


def load_tensors(path: Path) -> dict[str, Any] | None:
    """A state saved with torch.save, on the CPU (a search on a GPU saves its tensors there; a package may be scored
    on a machine without one), or None when the file is absent."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def auc_text(value: float | None) -> str:
    return f"{value:.6f}" if value is not None else "n/a"
