"""Statistical encodings of categorical fields and crossed pairs, fitted on train only (docs/methods/encodings.md).

For a key k (a field's id, or a pair's crossed ids) with n train rows of which p are positive,
the smoothed target statistic is (p + a · prior) / (n + a) (an m-estimate shrunk toward the train
click rate), and the count is n. The prior strength a is given, or estimated per encoding by empirical
Bayes (`empirical_bayes_strength`): the keys' click rates as draws from a beta prior whose mean is the
train rate and whose variance is the keys' between-key variance, so that a field whose keys differ
(an item's rate) shrinks little and one whose keys barely differ (a pair seen once per key) shrinks
to the prior. A train row never sees its own label: its statistic comes from
the other folds of a seeded K-fold split of train (out-of-fold target encoding), and its count is
n − 1 (the other train rows), so that train and scored rows see the same quantity. Rows of valid,
test and predict use the tables of all train rows. Each encoding becomes a numeric field: its
standardised value, and a quantile bucket id for models that embed numeric fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from featuremap import FieldSpec
from features.buckets import quantile_edges

FIRST_BUCKET = 3  # ids 0, 1, 2 are padding, OOV and missing for every field


@dataclass
class KeyTable:
    """Train counts and positives of the keys of one field or crossed pair (sorted keys, for a binary search)."""

    keys: np.ndarray
    counts: np.ndarray
    positives: np.ndarray

    @classmethod
    def fit(cls, keys: np.ndarray, labels: np.ndarray) -> KeyTable:
        unique, inverse = np.unique(keys, return_inverse=True)
        return cls(unique, np.bincount(inverse, minlength=unique.size), np.bincount(inverse, weights=labels, minlength=unique.size))

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(count, positives) of each key; 0 for keys never seen in train."""
        at = np.clip(np.searchsorted(self.keys, keys), 0, max(self.keys.size - 1, 0))
        found = self.keys[at] == keys if self.keys.size else np.zeros(keys.size, dtype=bool)
        return np.where(found, self.counts[at], 0).astype(np.float64), np.where(found, self.positives[at], 0.0)


@dataclass
class Encoding:
    """One encoded field or pair: its sources, the train table, and how its value is bucketed and standardised."""

    name: str  # the derived field's name, e.g. te__inf_zipf20k or te__pair_a_x_pair_b
    sources: tuple[str, ...]  # the source fields' id columns
    radix: tuple[int, ...]  # key = sum(id_i * radix_i)
    table: KeyTable
    prior: float
    smoothing: float
    edges: np.ndarray  # quantile edges of the train rows' (out-of-fold) statistic
    mean: float
    std: float
    count_edges: np.ndarray  # quantile edges of the train rows' log count (of the other train rows)
    count_mean: float
    count_std: float

    def key(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        out = np.zeros(len(columns[self.sources[0]]), dtype=np.int64)
        for source, radix in zip(self.sources, self.radix, strict=True):
            out += np.asarray(columns[source], dtype=np.int64) * radix
        return out

    def statistic(self, counts: np.ndarray, positives: np.ndarray, prior: float | None = None) -> np.ndarray:
        prior = self.prior if prior is None else prior
        return (positives + self.smoothing * prior) / (counts + self.smoothing)

    @property
    def count_name(self) -> str:
        return "cnt__" + self.name.removeprefix("te__")

    def specs(self) -> list[FieldSpec]:
        """The derived numeric fields, statistic and log count (bucket ids in `column`, the standardised value in
        `value_column`)."""
        return [
            FieldSpec(
                name=name,
                kind="numeric",
                column=name,
                vocab_size=FIRST_BUCKET + len(edges) + 1,
                value_column=name + "__num",
                bucketing="quantile",
                stats={"mean": mean, "std": std, "train_keys": float(self.table.keys.size)},
            )
            for name, edges, mean, std in (
                (self.name, self.edges, self.mean, self.std),
                (self.count_name, self.count_edges, self.count_mean, self.count_std),
            )
        ]

    def columns(self, statistic: np.ndarray, log_count: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name, values, edges, mean, std in (
            (self.name, statistic, self.edges, self.mean, self.std),
            (self.count_name, log_count, self.count_edges, self.count_mean, self.count_std),
        ):
            out[name] = (FIRST_BUCKET + np.searchsorted(edges, values, side="right")).astype(np.int32)
            out[name + "__num"] = ((values - mean) / std).astype(np.float32)
        return out

    def transform(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The derived columns of rows that are not train rows (valid, test, predict): the whole train table."""
        counts, positives = self.table.lookup(self.key(columns))
        return self.columns(self.statistic(counts, positives), np.log1p(counts))

    def transform_train(self, columns: Mapping[str, np.ndarray], labels: np.ndarray, fold: np.ndarray) -> dict[str, np.ndarray]:
        """The derived columns of the train rows: out-of-fold statistics, counts of the other train rows."""
        keys = self.key(columns)
        return self.columns(out_of_fold(self, keys, labels.astype(np.float64), fold), others_log_count(self.table, keys))


def others_log_count(table: KeyTable, keys: np.ndarray) -> np.ndarray:
    """log(1 + the number of *other* train rows with each train row's key): what a scored row's count is to train."""
    return np.log1p(np.maximum(table.lookup(keys)[0] - 1, 0))


MIN_STRENGTH, MAX_STRENGTH = 0.1, 1e4  # the estimated prior strength's range


def empirical_bayes_strength(table: KeyTable) -> float:
    """The prior strength a = α + β of a beta prior on the keys' click rates, by the method of moments.

    With N rows, K keys of nᵢ rows and pᵢ positives, and the train rate μ, the row-weighted
    variance of the keys' observed rates, V = Σ nᵢ (pᵢ/nᵢ − μ)² / N, has expectation
    τ² + K (μ(1 − μ) − τ²) / N, where τ² is the variance of the true rates (binomial noise adds
    rᵢ(1 − rᵢ)/nᵢ per key, and E[r(1 − r)] = μ(1 − μ) − τ²); so τ² = (V − K μ(1 − μ)/N) / (1 − K/N),
    and a beta prior with mean μ and variance τ² has α + β = μ(1 − μ) / τ² − 1. Clipped to
    [0.1, 10⁴]: no excess variance (every key alike, or each key seen once) means full shrinkage."""
    counts = table.counts.astype(np.float64)
    rows = counts.sum()
    if rows == 0 or table.keys.size < 2 or table.keys.size >= rows:
        return MAX_STRENGTH
    mean = table.positives.sum() / rows
    noise = mean * (1 - mean)
    if noise == 0:
        return MAX_STRENGTH
    spread = float((counts * (table.positives / np.maximum(counts, 1) - mean) ** 2).sum() / rows)
    share = table.keys.size / rows  # K / N
    between = (spread - noise * share) / (1 - share)
    if between <= 0:
        return MAX_STRENGTH
    return float(np.clip(noise / between - 1, MIN_STRENGTH, MAX_STRENGTH))


def fold_of(rows: int, folds: int, seed: int) -> np.ndarray:
    """A seeded assignment of rows to `folds` folds of near-equal size."""
    return np.random.default_rng(seed).permutation(rows) % folds


def out_of_fold(encoding: Encoding, keys: np.ndarray, labels: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each train row's statistic from the other folds' rows (its own label never enters)."""
    out = np.empty(keys.size, dtype=np.float64)
    for k in np.unique(fold):
        held = fold == k
        table = KeyTable.fit(keys[~held], labels[~held])
        out[held] = encoding.statistic(*table.lookup(keys[held]), prior=float(labels[~held].mean()))  # the other folds' rate
    return out


def _draft(
    name: str,
    sources: tuple[str, ...],
    cardinalities: tuple[int, ...],
    columns: Mapping[str, np.ndarray],
    labels: np.ndarray,
    smoothing: float | None,
) -> tuple[Encoding, np.ndarray, KeyTable]:
    """The encoding's statistic before its edges and scaling (prior strength given, or estimated from the train table),
    the train rows' keys and their table."""
    radix = tuple(int(np.prod(cardinalities[i + 1 :], dtype=np.int64)) for i in range(len(cardinalities)))
    empty = KeyTable.fit(np.zeros(1, np.int64), np.zeros(1))
    draft = Encoding(name, sources, radix, empty, float(labels.mean()), 1.0, np.zeros(0), 0.0, 1.0, np.zeros(0), 0.0, 1.0)
    keys = draft.key(columns)
    table = KeyTable.fit(keys, labels)
    draft.smoothing = empirical_bayes_strength(table) if smoothing is None else smoothing
    return draft, keys, table


def out_of_fold_statistic(
    sources: tuple[str, ...], cardinalities: tuple[int, ...], columns: Mapping[str, np.ndarray], labels: np.ndarray, fold: np.ndarray
) -> np.ndarray:
    """The train rows' out-of-fold statistic of `sources` (prior strength estimated), as `fit_encoding` computes it,
    without the bucket edges, counts and scaling that only a kept encoding needs: what scoring a candidate takes."""
    labels = labels.astype(np.float64)
    draft, keys, _ = _draft("", sources, cardinalities, columns, labels, None)
    return out_of_fold(draft, keys, labels, fold)


def fit_encoding(
    name: str,
    sources: tuple[str, ...],
    cardinalities: tuple[int, ...],
    columns: Mapping[str, np.ndarray],
    labels: np.ndarray,
    smoothing: float | None,
    bins: int,
    fold: np.ndarray,
) -> tuple[Encoding, np.ndarray]:
    """The encoding of `sources` fitted on train rows, and the train rows' out-of-fold statistic (`smoothing` None:
    the prior strength estimated from the train table, `empirical_bayes_strength`)."""
    labels = labels.astype(np.float64)
    draft, keys, table = _draft(name, sources, cardinalities, columns, labels, smoothing)
    statistic = out_of_fold(draft, keys, labels, fold)
    log_count = others_log_count(table, keys)
    encoding = Encoding(
        name,
        sources,
        draft.radix,
        table,
        draft.prior,
        draft.smoothing,
        quantile_edges(statistic, bins),
        float(statistic.mean()),
        float(statistic.std()) or 1.0,
        quantile_edges(log_count, bins),
        float(log_count.mean()),
        float(log_count.std()) or 1.0,
    )
    return encoding, statistic


@dataclass
class PairPick:
    """A pair chosen by `forward_select`: its sources and the in-sample log loss it took off the logistic model."""

    sources: tuple[str, ...]
    logloss_drop: float


def _logistic(features: np.ndarray, labels: np.ndarray, ridge: float = 1e-3, steps: int = 25) -> np.ndarray:
    """Probabilities of a ridge-penalised logistic regression on `features` (a column of ones included), by Newton steps."""
    weights = np.zeros(features.shape[1])
    eye = ridge * np.eye(features.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(features @ weights)))
        hessian = (features * (p * (1 - p))[:, None]).T @ features + eye
        step = np.linalg.solve(hessian, features.T @ (labels - p) - ridge * weights)
        weights += step
        if np.abs(step).max() < 1e-6:
            break
    return 1 / (1 + np.exp(-(features @ weights)))


def _log_loss(labels: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def standardised_logit(statistic: np.ndarray) -> np.ndarray:
    """A target statistic as a model input: its logit, standardised (float32)."""
    s = np.clip(statistic, 1e-4, 1 - 1e-4)
    z = np.log(s / (1 - s))
    return ((z - z.mean()) / (z.std() or 1.0)).astype(np.float32)


def forward_select(
    base: list[np.ndarray], candidates: Mapping[tuple[str, ...], np.ndarray], labels: np.ndarray, k: int, alpha: float = 0.05
) -> list[PairPick]:
    """Up to `k` candidates chosen one at a time for what each adds to a logistic model of the label (docs/methods/encodings.md).

    `base` and `candidates` are per-row inputs of train rows (out-of-fold statistics: a row's own label never enters).
    The model starts from `base`; each step takes the candidate with the largest score statistic (Rao's test of a zero
    coefficient: (Σ rᵢ xᵢ)² / Σ wᵢ xᵢ², r = y − p, w = p(1 − p), the log-likelihood gain of adding it to first order),
    adds it and refits, so that a candidate that repeats what is already in is not taken again. The selection stops
    when the step's likelihood-ratio statistic 2·n·(loss drop) is below the χ²₁ quantile at `alpha` over the candidates
    left (Bonferroni): what is left adds no more than the best of that many noise columns would."""
    from scipy.stats import chi2

    labels = labels.astype(np.float64)
    features = np.column_stack([np.ones(labels.size), *base])
    p = _logistic(features, labels)
    loss = _log_loss(labels, p)
    left, picks = dict(candidates), []
    while left and len(picks) < k:
        residual, weight = labels - p, p * (1 - p)
        scores = {key: float(residual @ x) ** 2 / max(float(weight @ (x.astype(np.float64) ** 2)), 1e-12) for key, x in left.items()}
        key = max(scores, key=scores.__getitem__)
        threshold = chi2.isf(alpha / len(left), 1)
        trial = np.column_stack([features, left.pop(key)])
        p_trial = _logistic(trial, labels)
        new_loss = _log_loss(labels, p_trial)
        if 2 * labels.size * (loss - new_loss) < threshold:
            break
        features, p = trial, p_trial
        picks.append(PairPick(key, loss - new_loss))
        loss = new_loss
    return picks
