"""Data checks between two fitted encoders: schema changes, click-rate change and per-field drift.

Both sides are what ingest saved (`feature_map.json`, `encoder.json`, `vocab/*.parquet` with each
train value's count), so the champion's training data is compared with today's without reading
either raw file again. A vocabulary field's drift is its population stability index (PSI) over the
champion's most frequent train values plus one bucket for the rest, with a term for an influx of values it never saw
(beyond the Good-Turing rate of its values seen once: `features.quality.population_stability_index`);
a numeric field's is the shift of its train mean in the champion's train standard deviations.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from features.encode import vocab_path
from features.quality import population_stability_index

TOP_VALUES = 100  # the champion's most frequent train values each get a bucket; the rest share one


@dataclass(frozen=True)
class FittedData:
    """What one ingest fitted: field kinds, train click rate, numeric means and sds, the vocabulary files."""

    kinds: dict[str, str]
    click_rate: float
    numeric: dict[str, tuple[float, float]]
    directory: Path  # the ingest output (vocabularies: `features.encode.vocab_path`)
    min_count: int = 1  # the encoder's: above 1, the vocabularies lack the values seen fewer times

    @classmethod
    def load(cls, directory: Path) -> FittedData:
        """From an ingest output (or a package's encoder/ folder)."""
        feature_map = json.loads((directory / "feature_map.json").read_text())
        encoder = json.loads((directory / "encoder.json").read_text())
        kinds = {f["name"]: f["kind"] for f in feature_map["fields"]}
        stats = encoder.get("stats", {})
        numeric = {
            name: (float(stats[name]["mean"]), float(stats[name]["std"] or 0.0))
            for name, kind in kinds.items()
            if kind == "numeric" and stats.get(name, {}).get("mean") is not None
        }
        min_count = int(encoder.get("params", {}).get("min_count", 1))
        return cls(kinds, float(feature_map["splits"]["train"]["positive_rate"]), numeric, directory, min_count)


@dataclass
class DataChecks:
    """The three checks and whether each passes."""

    schema_changes: list[str] = field(default_factory=list)
    click_rate: tuple[float, float] = (0.0, 0.0)  # (champion's, today's)
    click_rate_change: float = 0.0  # relative: today's / champion's - 1
    drift: dict[str, float] = field(default_factory=dict)  # field -> PSI (vocabulary) or mean shift in sds (numeric)
    numeric: set[str] = field(default_factory=set)  # the fields whose drift is a mean shift

    def failures(self, max_click_rate_change: float, max_psi: float, max_mean_shift: float) -> list[str]:
        """One line per failed check (none: the data checks pass)."""
        failed = []
        if self.schema_changes:
            failed.append("schema changed: " + "; ".join(self.schema_changes))
        if abs(self.click_rate_change) > max_click_rate_change:
            failed.append(
                f"train click rate {self.click_rate[1]:.4f} against the champion's {self.click_rate[0]:.4f} "
                f"({self.click_rate_change:+.0%}, limit ±{max_click_rate_change:.0%})"
            )
        drifted = [(name, value) for name, value in self.drift.items() if value > (max_mean_shift if name in self.numeric else max_psi)]
        if drifted:
            shown = ", ".join(
                f"{name} ({'mean shift' if name in self.numeric else 'PSI'} {value:.3f})"
                for name, value in sorted(drifted, key=lambda d: -d[1])
            )
            failed.append(f"drift against the champion's train data: {shown} (limits: PSI {max_psi:g}, mean shift {max_mean_shift:g} sd)")
        return failed


def vocabulary_psi(champion: pl.DataFrame, today: pl.DataFrame, top: int = TOP_VALUES, new_bucket: bool = True) -> float:
    """PSI of a field's train value counts (frames of value, count) over the champion's `top` values and the rest, and
    (`new_bucket`) a term for values the champion never saw arriving beyond the Good-Turing rate of its values seen
    once. Without it (vocabularies cut by a min_count lack the values seen once, and so the estimate) they are only
    part of the rest."""
    joined = (
        champion.select("value", pl.col("count").alias("expected"))
        .join(today.select("value", pl.col("count").alias("actual")), on="value", how="full", coalesce=True)
        .fill_null(0)
    )
    # at most the champion's own values get buckets: values new today always fall in the rest
    expected, actual = joined["expected"].to_numpy(), joined["actual"].to_numpy()
    return population_stability_index(expected, actual, min(top, champion.height), new_bucket=new_bucket)


def compare(champion: FittedData, today: FittedData) -> DataChecks:
    """Schema changes, the click rate's relative change and each shared field's drift, champion -> today."""
    changes = []
    added = sorted(set(today.kinds) - set(champion.kinds))
    removed = sorted(set(champion.kinds) - set(today.kinds))
    retyped = sorted(n for n in set(today.kinds) & set(champion.kinds) if today.kinds[n] != champion.kinds[n])
    if added:
        changes.append("new field(s) " + ", ".join(added))
    if removed:
        changes.append("missing field(s) " + ", ".join(removed))
    if retyped:
        changes.append("kind changed: " + ", ".join(f"{n} {champion.kinds[n]} -> {today.kinds[n]}" for n in retyped))
    drift: dict[str, float] = {}
    numeric: set[str] = set()
    for name in sorted(set(today.kinds) & set(champion.kinds)):
        if name in retyped:
            continue
        if name in champion.numeric and name in today.numeric:
            mean, sd = champion.numeric[name]
            drift[name] = abs(today.numeric[name][0] - mean) / sd if sd > 0 else (0.0 if today.numeric[name][0] == mean else math.inf)
            numeric.add(name)
            continue
        old, new = vocab_path(champion.directory, name), vocab_path(today.directory, name)
        if old.is_file() and new.is_file():
            old_counts, new_counts = pl.read_parquet(old), pl.read_parquet(new)
            if old_counts["value"].dtype != new_counts["value"].dtype:
                changes.append(f"{name}: values read as {new_counts['value'].dtype} (champion: {old_counts['value'].dtype})")
                continue
            drift[name] = vocabulary_psi(old_counts, new_counts, new_bucket=champion.min_count == today.min_count == 1)
    rate_change = today.click_rate / champion.click_rate - 1 if champion.click_rate > 0 else math.inf
    return DataChecks(changes, (champion.click_rate, today.click_rate), rate_change, drift, numeric)
