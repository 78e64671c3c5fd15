"""Unified Embedding (Coleman et al., 2023): features multiplexed over a few shared hashed tables at a parameter budget.

It has no search of its own: the search stage fixes the layout (budget, tables, chunk counts, taken
from the rank stage's order when `chunk_counts: rank`), and train builds the configured model over it
(docs/methods/unified.md). The torch side is models/unified.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from featuremap import FeatureMap
from methods.base import Found, ModelSpec, SearchRun
from methods.layouts import BudgetSettings, LayoutMethod, budget_of

if TYPE_CHECKING:
    from models.base import CTRModel
    from models.unified import SharedLayout


class UnifiedSettings(BudgetSettings):
    """Unified Embedding: shared hashed tables at a parameter budget (docs/methods/unified.md)."""

    tables: int = Field(1, ge=1)
    """Shared tables; the (feature, chunk) lookups go to them round-robin."""
    chunks: int = Field(1, ge=1)
    """The most chunks per feature, each embedding_dim / chunks wide, each with its own salted hash."""
    chunk_counts: Literal["uniform", "cardinality", "rank"] | dict[str, int] = "uniform"
    """Chunks per feature: uniform (every feature `chunks`), cardinality (by log vocabulary), rank (by the rank stage's order) or {field: count}."""
    field_vectors: bool = False
    """A learned vector per feature added to its embedding (out of the budget), so a shared row's feature stays known."""
    hash_seed: int = 0
    """Seed of the hash salts."""


def layout_for(
    settings: UnifiedSettings, feature_map: FeatureMap, spec: ModelSpec, ranks: Callable[[], dict[str, int]] | None = None
) -> SharedLayout:
    """The shared-table layout `settings` give over `feature_map`; `ranks` (the rank stage's rank per feature) for `chunk_counts: rank`."""
    from models.unified import SharedLayout, chunks_by_rank, feature_chunks

    rule: Any = settings.chunk_counts
    if rule == "rank":
        if ranks is None:
            raise ValueError("chunk_counts 'rank' needs the rank stage's ranking")
        ranked = ranks()
        last = max(ranked.values(), default=0) + 1  # fields the rank stage never saw (an earlier method's derived ones) rank last
        order = sorted((f.name for f in feature_map.fields), key=lambda name: (ranked.get(name, last), name))
        rule = chunks_by_rank({name: i + 1 for i, name in enumerate(order)}, settings.chunks)
    return SharedLayout(
        budget=budget_of(settings, feature_map, spec.embedding.dim)[0],
        tables=settings.tables,
        chunks=settings.chunks,
        seed=settings.hash_seed,
        field_vectors=settings.field_vectors,
        feature_chunks=feature_chunks(rule, feature_map, spec.embedding, settings.chunks),
    )


def _layout(state: dict[str, Any]) -> SharedLayout:
    from models.unified import SharedLayout

    chunks = state.get("feature_chunks")
    return SharedLayout(**{**state, "feature_chunks": tuple(chunks) if chunks is not None else None})


class Unified(LayoutMethod):
    name = "unified"
    settings = UnifiedSettings
    headline = ("budget", "budget_fraction", "rows_per_table")
    applied_flag = "unified_embedding"

    def search(self, run: SearchRun, settings: UnifiedSettings) -> Found:
        from models.unified import shared_model

        layout = layout_for(settings, run.feature_map, run.spec, run.ranks)
        model = shared_model(run.spec.name, run.feature_map, run.spec.embedding, layout, run.spec.params)  # the layout fits
        per_field = budget_of(settings, run.feature_map, run.spec.embedding.dim)[1]
        counts = model.embedding.bags.counts
        summary = {
            "model": run.spec.name,
            "budget": layout.budget,
            "per_field_parameters": per_field,
            "budget_fraction": layout.budget / per_field,
            "tables": layout.tables,
            "rows_per_table": model.embedding.bags.rows,
            "chunks": layout.chunks,
            "chunk_counts": dict(zip(model.embedding.keys, counts, strict=True)),
            "field_vectors": layout.field_vectors,
            "settings": settings.model_dump(),
        }
        return Found(summary, dataclasses.asdict(layout))

    def layout(self, state: dict[str, Any]) -> SharedLayout:
        return _layout(state)

    def legacy_entry(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """Packages written when Unified Embedding was the model `unified`: its settings sat in the model's params."""
        if spec.get("model") != "unified":
            return None
        own = {k: v for k, v in spec["params"].items() if k in UnifiedSettings.model_fields}
        rest = {k: v for k, v in spec["params"].items() if k != "base" and k not in UnifiedSettings.model_fields}
        return {"settings": own, "model": spec["params"].get("base", "autoint"), "params": rest}

    def restore(self, model: CTRModel | None, entry: dict[str, Any], spec: ModelSpec, feature_map: FeatureMap) -> CTRModel:
        if "layout" not in entry:  # a legacy entry: the layout its settings give (chunk counts by rank were stored as a mapping)
            name, params = entry.get("model", spec.name), entry.get("params", spec.params)
            layout = layout_for(UnifiedSettings(**entry["settings"]), feature_map, ModelSpec(name, params, spec.embedding, spec.seed))
            entry = {**entry, "layout": dataclasses.asdict(layout)}
        return super().restore(model, entry, spec, feature_map)

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        return [
            f"Unified Embedding: {summary['model']} over {summary['tables']} shared table(s) of {summary['rows_per_table']:,} rows, "
            f"{summary['budget']:,} embedding parameters ({summary['budget_fraction']:.1%} of one table per field)"
        ]
