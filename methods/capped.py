"""Frequency-capped vocabularies: one table per field holding only the values seen most often, at a parameter budget.

The other baseline Unified Embedding is measured against (issue 19). The vocabulary is numbered most
frequent first (features/encode.py), so capping a field keeps a prefix of its ids and sends the rest to
its out-of-vocabulary row, as a higher `encode.min_count` would at ingest. One min count for all fields is
chosen from the train counts to fill the budget (ties broken by field, then id); quantile-binned fields
(not numbered by frequency) are kept whole. Docs: docs/methods/budgeted.md; torch side: models/budgeted.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from methods.base import Found, SearchRun
from methods.layouts import BudgetSettings, PerFieldMethod, budget_of

if TYPE_CHECKING:
    import numpy as np

    from featuremap import FieldSpec
    from models.data import InMemoryData


class CappedSettings(BudgetSettings):
    """Frequency-capped vocabularies: per-field tables of the most frequent values at a budget (docs/methods/budgeted.md)."""


def train_counts(train: InMemoryData, field: FieldSpec) -> np.ndarray | None:
    """A field's count per id over the train rows; None for quantile bins (kept whole: not numbered by frequency)."""
    import numpy as np

    if field.bucketing == "quantile":
        return None
    column = train.columns[field.column]
    ids = column[0] if isinstance(column, tuple) else column
    return np.bincount(np.asarray(ids, dtype=np.int64), minlength=field.vocab_size)[: field.vocab_size]


class FrequencyCap(PerFieldMethod):
    name = "capped"
    settings = CappedSettings
    headline = ("budget", "budget_fraction", "min_count")
    applied_flag = "frequency_cap"

    def search(self, run: SearchRun, settings: CappedSettings) -> Found:
        import dataclasses

        from models.batching import sparse_fields
        from models.budgeted import PerFieldLayout, capped_rows

        dim = run.spec.embedding.dim
        budget, per_field = budget_of(settings, run.feature_map, dim)
        fields = sparse_fields(run.feature_map, run.spec.embedding.numeric_as_value)
        vocab = [f.vocab_size for f in fields]
        rows, min_count = capped_rows(vocab, [train_counts(run.train, f) for f in fields], budget // dim)
        layout = PerFieldLayout("cap", rows, tuple(vocab))
        summary = {**self.summary(run, layout, budget, per_field), "min_count": min_count, "settings": settings.model_dump()}
        return Found(summary, dataclasses.asdict(layout))

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        return [
            f"Frequency cap: {summary['model']} over one table per field of its values seen at least {summary['min_count']:,} times "
            f"in train, {summary['embedding_parameters']:,} embedding parameters ({summary['budget_fraction']:.1%} of full tables)"
        ]
