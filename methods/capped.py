"""Frequency-capped vocabularies: one table per field holding only the values seen most often, at a parameter budget.

The other baseline Unified Embedding is measured against (issue 19). The vocabulary is numbered most
frequent first (features/encode.py), so capping a field keeps a prefix of its ids and sends the rest to
its out-of-vocabulary row, as a higher `encode.min_count` would at ingest. One min count for all fields is
chosen from the train counts to fill the budget (ties broken by field, then id); quantile-binned fields
(not numbered by frequency) are kept whole. Docs: docs/methods/budgeted.md; torch side: models/budgeted.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from methods.layouts import BudgetSettings, PerFieldMethod

if TYPE_CHECKING:
    import numpy as np

    from featuremap import FieldSpec
    from methods.base import SearchRun
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
    rule = "cap"

    def table_rows(
        self, run: SearchRun, settings: CappedSettings, fields: list[FieldSpec], rows: int
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        from models.budgeted import capped_rows

        capped, min_count = capped_rows([f.vocab_size for f in fields], [train_counts(run.train, f) for f in fields], rows)
        return capped, {"min_count": min_count}

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        kept = f"its values seen at least {summary['min_count']:,} times in train" if summary["min_count"] else "all its values"
        return [
            f"Frequency cap: {summary['model']} over one table per field of {kept}, "
            f"{summary['embedding_parameters']:,} embedding parameters ({summary['budget_fraction']:.1%} of full tables)"
        ]
