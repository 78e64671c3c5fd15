"""The hashing trick (Weinberger et al., 2009): one hashed table per field at a parameter budget.

The baseline Unified Embedding is measured against (issue 19): rows are split among the fields by
water-filling (a field smaller than its share keeps its whole vocabulary, the larger ones share the rest
evenly) and each field's ids are hashed into its own rows with a salted hash, so collisions stay within a
field. No search: the layout is fixed in the search stage (docs/methods/budgeted.md); the torch side is
models/budgeted.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from methods.layouts import BudgetSettings, PerFieldMethod

if TYPE_CHECKING:
    from featuremap import FieldSpec
    from methods.base import SearchRun


class HashingSettings(BudgetSettings):
    """The hashing trick: one hashed table per field at a parameter budget (docs/methods/budgeted.md)."""

    hash_seed: int = 0
    """Seed of the per-field hash salts."""


class HashingTrick(PerFieldMethod):
    name = "hashing"
    settings = HashingSettings
    headline = ("budget", "budget_fraction", "fields_cut")
    applied_flag = "hashing_trick"
    rule = "hash"

    def table_rows(
        self, run: SearchRun, settings: HashingSettings, fields: list[FieldSpec], rows: int
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        from models.budgeted import hashed_rows

        return hashed_rows([f.vocab_size for f in fields], rows), {}

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        return [
            f"Hashing trick: {summary['model']} over one hashed table per field, {summary['embedding_parameters']:,} embedding "
            f"parameters ({summary['budget_fraction']:.1%} of full tables; {summary['fields_cut']} field(s) hashed into fewer rows than values)"
        ]
