"""What the embedding-layout methods share: Unified Embedding (unified.py), the hashing trick (hashing.py) and the
frequency cap (capped.py).

Each fixes, in the search stage and without training, how the configured model's embedding tables are laid out
at a parameter budget; the layout is the state (JSON), and train and predict rebuild `train.model` over it
(models/unified.py `shared_model`). So they replace the model and run alone, and any of them is one module
that names its settings, its layout and its report lines.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from featuremap import FeatureMap
from methods.base import Applied, Found, Method, ModelSpec, Settings

if TYPE_CHECKING:
    from featuremap import FieldSpec
    from methods.base import SearchRun
    from models.base import CTRModel
    from models.budgeted import PerFieldLayout
    from models.embedding import SharedTables


class BudgetSettings(Settings):
    """Settings every layout method has: its parameter budget."""

    budget: int | None = Field(None, ge=1)
    """Embedding parameters in all (first-order weights get budget / embedding_dim more); null: a quarter of one table per field's."""


def budget_of(settings: BudgetSettings, feature_map: FeatureMap, dim: int) -> tuple[int, int]:
    """(the budget in embedding parameters, one table per field's parameters: the budget's reference)."""
    from models.unified import per_field_parameters

    per_field = per_field_parameters(feature_map, dim)
    return settings.budget or per_field // 4, per_field


class LayoutMethod(Method):
    """A method whose state is an embedding layout (a JSON-able dict) that `layout` turns into a SharedTables."""

    replaces_model = True  # the configured model is rebuilt over the layout's tables
    trains = False

    @property
    def state_file(self) -> str:
        return f"{self.name}_layout.json"

    @abstractmethod
    def layout(self, state: dict[str, Any]) -> SharedTables:
        """The layout object a saved state describes."""

    def save(self, state: dict[str, Any], directory: Path) -> list[str]:
        (directory / self.state_file).write_text(json.dumps(state))
        return [self.state_file]

    def load(self, directory: Path) -> dict[str, Any] | None:
        path = directory / self.state_file
        return json.loads(path.read_text()) if path.is_file() else None

    def apply(self, model: CTRModel | None, state: dict[str, Any], settings: Settings, spec: ModelSpec, feature_map: FeatureMap) -> Applied:
        import torch

        from models.unified import shared_model

        torch.manual_seed(spec.seed)  # as a model built without the method is seeded
        return Applied(shared_model(spec.name, feature_map, spec.embedding, self.layout(state), spec.params))

    def package_entry(self, settings: Settings, state: dict[str, Any]) -> dict[str, Any]:
        return {"layout": state}

    def restore(self, model: CTRModel | None, entry: dict[str, Any], spec: ModelSpec, feature_map: FeatureMap) -> CTRModel:
        from models.unified import shared_model

        return shared_model(
            entry.get("model", spec.name), feature_map, spec.embedding, self.layout(entry["layout"]), entry.get("params", spec.params)
        )

    def model_row(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        return None  # the layout is not trained in the search stage: the train stage's row is the model


class PerFieldMethod(LayoutMethod):
    """A layout of one table per field at a budget (models/budgeted.py): the hashing trick, the frequency cap.

    A subclass names its `rule` and gives each field's rows for the budget (`table_rows`); the search, the summary
    and the layout are shared."""

    rule: ClassVar[str]

    @abstractmethod
    def table_rows(self, run: SearchRun, settings: Settings, fields: list[FieldSpec], rows: int) -> tuple[tuple[int, ...], dict[str, Any]]:
        """Rows per field (in `fields`' order) for `rows` rows in all, and what the summary adds about them."""

    def search(self, run: SearchRun, settings: BudgetSettings) -> Found:
        import dataclasses

        from models.batching import sparse_fields
        from models.budgeted import PerFieldLayout

        dim = run.spec.embedding.dim
        budget, per_field = budget_of(settings, run.feature_map, dim)
        fields = sparse_fields(run.feature_map, run.spec.embedding.numeric_as_value)
        rows, extra = self.table_rows(run, settings, fields, budget // dim)
        layout = PerFieldLayout(self.rule, rows, tuple(f.vocab_size for f in fields), getattr(settings, "hash_seed", 0))
        used = layout.parameters_per_dim * dim
        summary = {
            "model": run.spec.name,
            "budget": budget,
            "embedding_parameters": used,
            "per_field_parameters": per_field,
            "budget_fraction": used / per_field,
            "rows": {f.name: r for f, r in zip(fields, layout.rows, strict=True)},
            "vocab": {f.name: f.vocab_size for f in fields},
            "fields_cut": sum(r < f.vocab_size for f, r in zip(fields, layout.rows, strict=True)),
            **extra,
            "settings": settings.model_dump(),
        }
        return Found(summary, dataclasses.asdict(layout))

    def layout(self, state: dict[str, Any]) -> PerFieldLayout:
        from models.budgeted import PerFieldLayout

        return PerFieldLayout(state["rule"], tuple(state["rows"]), tuple(state["vocab"]), state["seed"])
