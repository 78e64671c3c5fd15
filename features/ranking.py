"""Feature ranking by mutual information with the label, corrected for cardinality.

One streaming pass over batches of encoded ids fills per-field (value, label)
count tables with numpy bincount; every score is then computed from counts.
Scores (a registry, `SCORES`):
- plain:        I(F;Y), biased upward by cardinality (for comparison);
- shifted:      I(F;Y) - I(F_shifted;Y), OutRank's MI-numba-randomized baseline
                (rows of value v take the label v's count rows earlier);
- expected:     I(F;Y) - E[I(F;Y)] under independence given the marginals
                (the adjusted-MI correction: an effect size in nats);
- standardized: (I - E[I]) / sd[I], both moments of the same hypergeometric null,
                computed analytically (a z-score without permutations); the
                default, chosen by the planted-feature study in bench/rank_bench.py;
- permutation:  (I - mean) / sd over R label permutations (a z-score);
- chi2:         the G-test statistic standardised, (2N·I - df) / sqrt(2·df).
Pairs (crossed features on a row sample) and OutRank's 3MR order: features/pairs.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from featuremap import FIRST_VALUE_ID, FeatureMap
from featuremap.errors import InputError
from features.information import (
    chi2_pvalue,
    entropy,
    mutual_information,
    mutual_information_and_entropy,
    null_moments,
    null_upper_tail,
)
from features.pairs import PairStats, choose_pairs, mrmr_order, pair_stats
from features.settings import RankParams

Batch = Mapping[str, np.ndarray]
_THREADS = min(4, os.cpu_count() or 1)


class ContingencyCounter:
    """Per-field (value, label) counts, plus what the shifted and permutation baselines need.

    `update` takes one batch; counts from separate counters can be `merge`d,
    so shards can be counted apart and combined.
    """

    def __init__(self, cardinalities: Mapping[str, int], permutations: int = 0, shifted: bool = False, seed: int = 0):
        self.cardinalities = dict(cardinalities)
        self.tables = {f: np.zeros((v, 2), dtype=np.int64) for f, v in self.cardinalities.items()}
        self.permuted = {f: np.zeros((permutations, v), dtype=np.int64) for f, v in self.cardinalities.items()}
        self.shifted = {f: np.zeros((v, 2), dtype=np.int64) for f, v in self.cardinalities.items()} if shifted else None
        self.permutations = permutations
        self.rng = np.random.default_rng(seed)

    def update(self, batch: Batch, label: np.ndarray) -> None:
        """Count one batch of ids (one int array per field) against its 0/1 labels.

        Fields are counted on threads: the gathers and table updates release the
        GIL, and each field's tables are touched by one task only.
        """
        y = np.asarray(label)
        positives = np.flatnonzero(y)
        subsets = [self.rng.choice(y.size, positives.size, replace=False) for _ in range(self.permutations)]
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            list(pool.map(lambda name: self._count_field(name, batch[name], y, positives, subsets), self.cardinalities))

    def _count_field(self, name: str, codes: np.ndarray, y: np.ndarray, positives: np.ndarray, subsets: list[np.ndarray]) -> None:
        size = self.cardinalities[name]
        total = np.bincount(codes, minlength=size)
        if total.size > size:
            raise InputError(
                f"field {name!r} has id {total.size - 1} beyond its vocabulary ({size}); the feature map does not match the data"
            )
        pos = np.bincount(codes[positives], minlength=size)
        table = self.tables[name]
        table[:, 1] += pos
        table[:, 0] += total - pos
        for r, subset in enumerate(subsets):
            self.permuted[name][r] += np.bincount(codes[subset], minlength=size)
        if self.shifted is not None:
            n = y.size
            moved = y[(np.arange(n) - total[codes]) % n]
            spos = np.bincount(codes[np.flatnonzero(moved)], minlength=size)
            self.shifted[name][:, 1] += spos
            self.shifted[name][:, 0] += total - spos

    def merge(self, other: ContingencyCounter) -> ContingencyCounter:
        """Add another counter's counts into this one."""
        for name in self.cardinalities:
            self.tables[name] += other.tables[name]
            self.permuted[name] += other.permuted[name]
            if self.shifted is not None and other.shifted is not None:
                self.shifted[name] += other.shifted[name]
        return self

    @property
    def rows(self) -> int:
        """Rows counted so far."""
        first = next(iter(self.tables.values()))
        return int(first.sum())


@dataclass
class FieldStats:
    """Everything measured for one feature; a row of ranking.csv."""

    feature: str
    kind: str
    cardinality: int
    levels: int
    mi: float
    expected_mi: float
    null_sd: float
    chi2_p: float
    entropy: float
    shifted_mi: float | None = None
    perm_mean: float | None = None
    perm_sd: float | None = None
    perm_p: float | None = None
    score: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def _score_plain(s: FieldStats, rows: int) -> float:
    return s.mi


def _score_shifted(s: FieldStats, rows: int) -> float:
    return s.mi - (s.shifted_mi or 0.0)


def _score_expected(s: FieldStats, rows: int) -> float:
    return s.mi - s.expected_mi


def _score_standardized(s: FieldStats, rows: int) -> float:
    return (s.mi - s.expected_mi) / max(s.null_sd, 1e-12)


def _score_permutation(s: FieldStats, rows: int) -> float:
    sd = s.perm_sd if s.perm_sd and s.perm_sd > 0 else 1e-12
    return (s.mi - (s.perm_mean or 0.0)) / sd


def _score_chi2(s: FieldStats, rows: int) -> float:
    df = max(s.levels - 1, 1)
    return (2.0 * rows * s.mi - df) / np.sqrt(2.0 * df)


SCORES: dict[str, Callable[[FieldStats, int], float]] = {
    "plain": _score_plain,
    "shifted": _score_shifted,
    "expected": _score_expected,
    "standardized": _score_standardized,
    "permutation": _score_permutation,
    "chi2": _score_chi2,
}


def field_stats(counter: ContingencyCounter, kinds: Mapping[str, str], score: str) -> list[FieldStats]:
    """Per-feature statistics and the chosen score, from a filled counter (fields on threads)."""
    rows = counter.rows
    classes = next(iter(counter.tables.values())).sum(axis=0)

    def one(name: str) -> FieldStats:
        table = counter.tables[name]
        values = table[:, 0] + table[:, 1]
        mi, value_entropy = mutual_information_and_entropy(table)
        levels = int(np.count_nonzero(values))  # missing and OOV are levels of the variable too
        expected, null_sd = null_moments(values, classes)
        s = FieldStats(
            feature=name,
            kind=kinds[name],
            cardinality=int(np.count_nonzero(values[FIRST_VALUE_ID:])),
            levels=levels,
            mi=mi,
            expected_mi=expected,
            null_sd=null_sd,
            chi2_p=chi2_pvalue(mi, rows, levels, 2),
            entropy=value_entropy,
        )
        if counter.shifted is not None:
            s.shifted_mi = mutual_information(counter.shifted[name])
        if counter.permutations:
            perm = np.array([mutual_information(np.column_stack([values - p, p])) for p in counter.permuted[name]])
            s.perm_mean, s.perm_sd = float(perm.mean()), float(perm.std(ddof=1))
            s.perm_p = float((1 + np.sum(perm >= mi)) / (1 + perm.size))
        s.score = float(SCORES[score](s, rows))
        return s

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        return list(pool.map(one, counter.tables))


# -- the stage's computation ----------------------------------------------------------------------


@dataclass
class RankResult:
    """Outputs of ranking: per-feature table, pair table and the label's summary."""

    ranking: pl.DataFrame
    pairs: pl.DataFrame
    counter: ContingencyCounter
    label_entropy: float
    positive_rate: float


@dataclass
class Counted:
    """One pass's counts over a range of train rows: the contingency counter and the pair sample's rows."""

    counter: ContingencyCounter
    sample: dict[str, list[np.ndarray]]
    labels: list[np.ndarray]

    def merge(self, later: Counted) -> Counted:
        """This range's counts plus those of the range that follows it (samples stay in row order)."""
        self.counter.merge(later.counter)
        for col, parts in later.sample.items():
            self.sample[col].extend(parts)
        self.labels.extend(later.labels)
        return self


def samples_pairs(feature_map: FeatureMap, params: RankParams) -> bool:
    """Whether the pass keeps a row sample: pairs are scored (a pair budget and two fields at least)."""
    return params.pair_budget > 0 and len(feature_map.fields) > 1


def sample_step(feature_map: FeatureMap, params: RankParams) -> int:
    """The pair sample takes every this-many-th train row (at most `params.pair_rows` rows)."""
    total_rows = int(feature_map.splits.get("train", {}).get("rows", 0)) or params.pair_rows
    return max(1, -(-total_rows // params.pair_rows))


def _new_counter(feature_map: FeatureMap, params: RankParams) -> ContingencyCounter:
    """An empty contingency counter for the feature map's fields, with what `params.score` needs."""
    if params.score not in SCORES:
        raise InputError(f"rank.score {params.score!r} is unknown; use one of {', '.join(SCORES)}")
    return ContingencyCounter(
        {spec.rank_column: spec.rank_cardinality for spec in feature_map.fields},
        permutations=params.permutations if params.score == "permutation" else 0,
        shifted=params.score == "shifted",
        seed=params.seed,
    )


def count_batches(batches: Iterable[tuple[Batch, np.ndarray]], feature_map: FeatureMap, params: RankParams, first_row: int = 0) -> Counted:
    """Count batches of (ids per rank column, labels) that start at train row `first_row`, and keep the pair sample's
    rows among them: every k-th row of the whole split by its row number, so ranges counted apart and merged in order
    give the same sample as one pass."""
    counter = _new_counter(feature_map, params)
    columns = [spec.rank_column for spec in feature_map.fields]
    step = sample_step(feature_map, params)
    sampling = samples_pairs(feature_map, params)
    counted = Counted(counter, {col: [] for col in columns}, [])
    seen = first_row
    for batch, label in batches:
        counter.update(batch, label)
        if sampling:
            take = slice((-seen) % step, None, step)
            for col in columns:
                counted.sample[col].append(np.array(batch[col][take]))
            counted.labels.append(np.array(label[take]))
        seen += label.size
    return counted


def rank_features(batches: Iterable[tuple[Batch, np.ndarray]], feature_map: FeatureMap, params: RankParams) -> RankResult:
    """Rank the feature map's fields from batches of (ids per rank column, labels): one pass (`count_batches`), then
    `rank_counted`."""
    return rank_counted(count_batches(batches, feature_map, params), feature_map, params)


def rank_counted(counted: Counted, feature_map: FeatureMap, params: RankParams) -> RankResult:
    """Scores, pairs and 3MR order from the train split's counts and pair sample."""
    columns = {spec.rank_column: spec for spec in feature_map.fields}
    counter = counted.counter
    sampling = samples_pairs(feature_map, params)
    if counter.rows == 0:
        raise InputError("train split has no rows to rank")
    kinds = {col: spec.kind for col, spec in columns.items()}
    stats = field_stats(counter, kinds, params.score)
    stats.sort(key=lambda s: (-s.score, s.feature))
    names = {col: spec.name for col, spec in columns.items()}
    classes = next(iter(counter.tables.values())).sum(axis=0)
    label_entropy = entropy(classes)
    ranked_cols = [s.feature for s in stats]
    pairs: list[PairStats] = []
    if sampling:
        sample = {col: np.concatenate(parts) for col, parts in counted.sample.items()}
        pairs = pair_stats(sample, np.concatenate(counted.labels), choose_pairs(ranked_cols, params.pair_budget), params.pair_max_values)
    relevance = {s.feature: max(s.mi - s.expected_mi, 0.0) for s in stats}
    order = {col: i + 1 for i, col in enumerate(mrmr_order(relevance, pairs, params.redundancy_weight, params.combined_weight))}
    rows = []
    for rank, s in enumerate(stats, start=1):
        rows.append(
            {
                "rank": rank,
                "feature": names[s.feature],
                "kind": s.kind,
                "cardinality": s.cardinality,
                "mi": s.mi,
                "score": s.score,
                "expected_mi": s.expected_mi,
                "adjusted_mi": s.mi - s.expected_mi,
                "null_sd": s.null_sd,
                "p_value": null_upper_tail(s.mi, s.expected_mi, s.null_sd),
                "mi_over_label_entropy": s.mi / label_entropy if label_entropy > 0 else 0.0,
                "chi2_p": s.chi2_p,
                "shifted_mi": s.shifted_mi,
                "perm_mean": s.perm_mean,
                "perm_sd": s.perm_sd,
                "perm_p": s.perm_p,
                "entropy": s.entropy,
                "order_3mr": order[s.feature],
            }
        )
    ranking = pl.DataFrame(rows, infer_schema_length=None)
    pair_rows = sorted(pairs, key=lambda p: (-p.gain, p.feature_a, p.feature_b))
    pair_frame = pl.DataFrame(
        [
            {
                "rank": i + 1,
                "feature_a": names[p.feature_a],
                "feature_b": names[p.feature_b],
                "cardinality": p.cardinality,
                "mi_pair": p.mi_pair,
                "expected_mi_pair": p.expected_mi_pair,
                "adjusted_mi_pair": p.mi_pair - p.expected_mi_pair,
                "null_sd_pair": p.null_sd_pair,
                "gain": p.gain,
                "gain_p": null_upper_tail(
                    p.gain + p.expected_mi_pair, p.expected_mi_pair, p.null_sd_pair
                ),  # the cross's MI beyond both singles
                "redundancy": p.redundancy,
                "redundancy_norm": p.redundancy_norm,
            }
            for i, p in enumerate(pair_rows)
        ],
        schema={
            "rank": pl.Int64,
            "feature_a": pl.String,
            "feature_b": pl.String,
            "cardinality": pl.Int64,
            "mi_pair": pl.Float64,
            "expected_mi_pair": pl.Float64,
            "adjusted_mi_pair": pl.Float64,
            "null_sd_pair": pl.Float64,
            "gain": pl.Float64,
            "gain_p": pl.Float64,
            "redundancy": pl.Float64,
            "redundancy_norm": pl.Float64,
        },
    )
    return RankResult(
        ranking=ranking,
        pairs=pair_frame,
        counter=counter,
        label_entropy=label_entropy,
        positive_rate=float(classes[1] / classes.sum()),
    )
