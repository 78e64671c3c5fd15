"""Statistical encodings: out-of-fold smoothed target statistics and counts of categorical fields and of the rank
stage's top pairs, as derived numeric fields (docs/methods/encodings.md; the computation is features/target_stats.py).

The search stage fits the tables on train rows (never valid or test); train, the GBDT baselines,
the package and predict then see the derived fields like any numeric field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from featuremap import FeatureMap
from featuremap.errors import InputError
from methods.base import DerivingMethod, Found, SearchRun, Settings, rank_derived, ranking_line, spaced_rows

TABLES = "encodings_tables.npz"
META = "encodings.meta.json"


class EncodingsSettings(Settings):
    """Statistical encodings of categorical fields and top pairs (docs/methods/encodings.md)."""

    min_cardinality: int = Field(20, ge=2)
    """Encode the (selected) single-valued categorical fields with at least this many values."""
    pairs: int = Field(10, ge=0)
    """Also encode the crosses of this many pairs of categorical fields, chosen by `pair_order`."""
    pair_order: Literal["greedy", "gain"] = "greedy"
    """greedy: forward selection by what each pair's out-of-fold statistic adds to a logistic model of the single fields' statistics and the pairs already taken, among the rank stage's top `pair_pool` pairs by interaction gain and by adjusted MI; gain: the rank stage's top pairs by interaction gain."""
    pair_pool: int = Field(30, ge=1)
    """greedy: the candidates, the rank stage's top pairs by interaction gain and by adjusted MI (this many of each)."""
    select_rows: int = Field(1_000_000, ge=1000)
    """greedy: evenly spaced train rows the selection fits on."""
    smoothing: Annotated[float, Field(gt=0)] | Literal["auto"] = "auto"
    """a in (positives + a · prior) / (count + a): how far a rare key's statistic shrinks toward the train click rate; auto: estimated per encoding from the spread of its keys' click rates (empirical Bayes)."""
    folds: int = Field(5, ge=2)
    """Folds of the out-of-fold statistics of train rows."""
    bins: int = Field(16, ge=2)
    """Quantile buckets of each derived value, for models that embed numeric fields."""
    seed: int = 0
    """Seed of the fold assignment."""


def _fields(feature_map: FeatureMap, min_cardinality: int) -> list[Any]:
    return [f for f in feature_map.fields if f.kind == "categorical" and f.vocab_size >= min_cardinality]


class Encodings(DerivingMethod):
    name = "encodings"
    settings = EncodingsSettings
    headline = ("fields", "pairs")
    applied_flag = "encodings"
    files = (TABLES, META)

    def pair_budget(self, settings: EncodingsSettings) -> dict[str, int]:
        if not settings.pairs:
            return {}
        if settings.pair_order == "gain":
            return {"gain": settings.pairs}
        return {"gain": settings.pair_pool, "adjusted_mi_pair": settings.pair_pool}

    def search(self, run: SearchRun, settings: EncodingsSettings) -> Found:
        from features.target_stats import fit_encoding, fold_of

        specs = {f.name: f for f in run.feature_map.fields}
        groups = [(f"te__{f.name}", (f.name,)) for f in _fields(run.feature_map, settings.min_cardinality)]
        selection: list[dict[str, Any]] = []
        if settings.pairs:
            try:
                ranked, selection = self._pairs(run, settings)
            except InputError:  # no rank output, or no pair of single-valued fields: the fields alone
                ranked = []
            groups += [(f"te__{a}_x_{b}", (a, b)) for a, b in ranked]
        if not groups:  # the default method on data it has nothing for: it adds no field, and says so
            note = f"nothing to encode: no categorical field has {settings.min_cardinality}+ values and no pair was ranked"
            summary = {"fields": [], "pairs": [], "train_keys": {}, "smoothing": {}, "ranking": [], "pair_selection": selection}
            return Found(
                {**summary, "settings": settings.model_dump(), "note": note},
                {"encodings": [], "folds": settings.folds, "seed": settings.seed},
            )
        train = run.train
        fold = fold_of(len(train), settings.folds, settings.seed)
        strength = None if settings.smoothing == "auto" else settings.smoothing  # None: estimated per encoding
        encodings, statistics = [], []
        for name, sources in groups:
            columns = tuple(specs[s].column for s in sources)
            cards = tuple(specs[s].vocab_size for s in sources)
            encoding, statistic = fit_encoding(name, columns, cards, train.columns, train.label, strength, settings.bins, fold)
            encodings.append(encoding)
            statistics.append(statistic)
        summary = {
            "fields": [name for name, sources in groups if len(sources) == 1],
            "pairs": [name for name, sources in groups if len(sources) > 1],
            "train_keys": {e.name: int(e.table.keys.size) for e in encodings},
            "smoothing": {e.name: e.smoothing for e in encodings},  # each encoding's prior strength a, given or estimated
            "ranking": self._ranking(encodings, statistics, train),
            "pair_selection": selection,  # greedy: each pair taken, in order, with the log loss it took off
            "settings": settings.model_dump(),
        }
        return Found(summary, {"encodings": encodings, "folds": settings.folds, "seed": settings.seed})

    @staticmethod
    def _pairs(run: SearchRun, settings: EncodingsSettings) -> tuple[list[tuple[str, ...]], list[dict[str, Any]]]:
        """The pairs to encode (both fields categorical), and for `greedy` each pick's log-loss drop."""
        from features.target_stats import fold_of, forward_select, out_of_fold_statistic, standardised_logit

        specs = {f.name: f for f in run.feature_map.fields if f.kind == "categorical"}  # ids in every model's data
        if settings.pair_order == "gain":
            return [(a, b) for a, b in run.ranked_pairs(settings.pairs) if a in specs and b in specs], []
        pool = [*run.ranked_pairs(settings.pair_pool), *run.ranked_pairs(settings.pair_pool, "adjusted_mi_pair")]
        pool = [p for p in dict.fromkeys(pool) if p[0] in specs and p[1] in specs]
        if not pool:
            return [], []
        train = run.train
        rows = spaced_rows(len(train), settings.select_rows)
        columns = {specs[n].column: np.asarray(train.columns[specs[n].column])[rows] for n in specs}
        labels = train.label[rows].astype(np.float64)
        fold = fold_of(rows.size, settings.folds, settings.seed)

        def statistic(sources: tuple[str, ...]) -> np.ndarray:
            cards = tuple(specs[s].vocab_size for s in sources)
            keys = tuple(specs[s].column for s in sources)
            return standardised_logit(out_of_fold_statistic(keys, cards, columns, labels, fold))

        base = [statistic((name,)) for name in specs]
        picks = forward_select(base, {p: statistic(p) for p in pool}, labels, settings.pairs)
        return [p.sources for p in picks], [{"pair": "_x_".join(p.sources), "logloss_drop": p.logloss_drop} for p in picks]

    @staticmethod
    def _ranking(encodings: list[Any], statistics: list[Any], train: Any) -> list[dict[str, Any]]:
        """The derived fields ranked like any feature: the rank stage's score on the train rows' out-of-fold bucket ids
        (`statistics`: each encoding's out-of-fold train values, as its fit computed them)."""
        from features.target_stats import others_log_count

        columns: dict[str, Any] = {}
        for e, statistic in zip(encodings, statistics, strict=True):  # as transform_train gives them, without a second pass
            columns |= e.columns(statistic, others_log_count(e.table, e.key(train.columns)))
        return rank_derived([spec for e in encodings for spec in e.specs()], columns, train.label)

    def save(self, state: dict[str, Any], directory: Path) -> list[str]:
        arrays, meta = {}, []
        for i, e in enumerate(state["encodings"]):
            for part in ("keys", "counts", "positives"):
                arrays[f"{i}_{part}"] = getattr(e.table, part)
            arrays[f"{i}_edges"], arrays[f"{i}_count_edges"] = e.edges, e.count_edges
            scalars = ("name", "sources", "radix", "prior", "smoothing", "mean", "std", "count_mean", "count_std")
            meta.append({k: getattr(e, k) for k in scalars})
        np.savez(directory / TABLES, **arrays)
        (directory / META).write_text(json.dumps({"encodings": meta, "folds": state["folds"], "seed": state["seed"]}))
        return [TABLES, META]

    def load(self, directory: Path) -> dict[str, Any] | None:
        from features.target_stats import Encoding, KeyTable

        if not (directory / META).is_file():
            return None
        meta = json.loads((directory / META).read_text())
        encodings = []
        with np.load(directory / TABLES) as stored:
            for i, m in enumerate(meta["encodings"]):
                table = KeyTable(stored[f"{i}_keys"], stored[f"{i}_counts"], stored[f"{i}_positives"])
                encodings.append(
                    Encoding(
                        **{**m, "sources": tuple(m["sources"]), "radix": tuple(m["radix"])},
                        table=table,
                        edges=stored[f"{i}_edges"],
                        count_edges=stored[f"{i}_count_edges"],
                    )
                )
        return {"encodings": encodings, "folds": meta["folds"], "seed": meta["seed"]}

    def derived_map(self, state: dict[str, Any], feature_map: FeatureMap) -> FeatureMap:
        known = {f.name for f in feature_map.fields}
        added = tuple(spec for e in state["encodings"] for spec in e.specs())
        clash = sorted(known & {spec.name for spec in added})
        if clash:
            raise ValueError(f"the input already has field(s) {', '.join(clash)}, the names of derived encodings; rename them")
        return dataclasses.replace(feature_map, fields=(*feature_map.fields, *added))

    def derive(self, state: dict[str, Any], columns: dict[str, Any], labels: Any | None) -> dict[str, Any]:
        from features.target_stats import fold_of

        out: dict[str, Any] = {}
        if labels is None:
            for e in state["encodings"]:
                out |= e.transform(columns)
            return out
        fold = fold_of(len(labels), state["folds"], state["seed"])
        for e in state["encodings"]:
            out |= e.transform_train(columns, labels, fold)
        return out

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        if not summary["train_keys"]:
            return [f"Encodings: {summary.get('note', 'none')}"]
        strength = summary.get("smoothing", {})
        keys = ", ".join(
            f"{name} ({count:,} keys" + (f", a = {strength[name]:.3g})" if name in strength else ")")
            for name, count in summary["train_keys"].items()
        )
        lines = [f"Encodings: out-of-fold target statistics and counts of {keys}"]
        return lines + ranking_line("Encodings", summary.get("ranking", []))
