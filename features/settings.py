"""The ranking's and the quality report's settings: the one copy of their defaults (the config's `rank`
section extends RankParams, and `rank.quality` is QualityParams). No polars here, so the config loads light."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScoreName = Literal["plain", "shifted", "expected", "standardized", "permutation", "chi2"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class QualityParams(_Settings):
    """Thresholds of the data-quality flags."""

    rare_count: int = Field(10, ge=1)
    """A value seen fewer times in train is rare (OOV rows count as rare)."""
    near_unique_ratio: float = Field(0.5, gt=0, le=1)
    """Distinct values / rows at or above this flags an id-like column."""
    leakage_ratio: float = Field(0.9, gt=0, le=1)
    """Chance-corrected I(F;Y) / H(Y) at or above this flags possible label leakage (corrected, or every unique row id would be flagged)."""
    psi_bins: int = Field(20, ge=1)
    """Bins of the population stability index: the most frequent train values, plus one for the rest; an out-of-vocabulary share above train's Good-Turing unseen rate adds its own term."""
    drift_psi: float = Field(0.25, gt=0)
    """PSI against valid/test above this flags drift (the usual 0.25 'significant shift' rule)."""


class RankParams(_Settings):
    """Feature and pair ranking (docs/methods/ranking.md)."""

    score: ScoreName = "standardized"
    """Plain MI, OutRank's shifted baseline, I − E[I], (I − E[I]) / sd[I], a permutation z-score or a G-test."""
    permutations: int = Field(5, ge=2)
    """Label permutations of the permutation score."""
    pair_budget: int = Field(1000, ge=0)
    """Most pairs evaluated (among the top-ranked features)."""
    pair_rows: int = Field(1_000_000, ge=1)
    """Rows sampled to cross pairs."""
    pair_max_values: int = Field(1024, ge=1)
    """Each side of a pair capped to its most frequent values."""
    redundancy_weight: float = Field(1.0, ge=0)
    """3MR's weight on redundancy."""
    combined_weight: float = Field(1.0, ge=0)
    """3MR's weight on positive pair gain."""
    seed: int = 0
    """Seed of permutations and samples."""


class SelectParams(_Settings):
    """Which features go on to search and train, decided from the ranking (docs/methods/ranking.md#selection)."""

    enabled: bool = True
    """Keep only the selected features downstream; false: every feature (the table is still written)."""
    fdr: float = Field(0.05, gt=0, lt=1)
    """Benjamini–Hochberg false discovery rate over the features' p-values, and separately over the pairs' gain p-values."""
    drop_flags: list[Literal["constant", "near_unique", "label_leakage", "drift", "low_coverage"]] = Field(
        default_factory=lambda: ["constant", "near_unique", "label_leakage"]
    )
    """Quality flags that drop a feature whatever its test (an id-like column, a leak, no variation)."""
    keep_pair_fields: bool = True
    """Keep both fields of a pair whose interaction gain is significant, even when neither is significant alone."""
