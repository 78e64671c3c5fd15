"""Logistic regression over one-hot fields and the crosses of chosen pairs: the "wide" baseline.

The linear model CTR systems ran for years before deep models (McMahan et al., "Ad Click
Prediction: a View from the Trenches", 2013; the wide part of Wide & Deep, Cheng et al. 2016): a
weight per field value and per value of each crossed pair. With every pair crossed it is Poly2
(Chang et al. 2010); here only the pairs the caller names are crossed (the train stage names the
pairs whose interaction gain the rank stage found significant), so the model stays small and a
pure pairwise effect, which no single field shows, still gets its own weights.

Inputs are the GBDT baselines' matrix (features/tabular.py): a categorical column's values are its
encoded ids, one weight each; a numeric column is cut at its train quantiles (`bins` bins, missing
its own bin), one weight per bin. A cross is the pair of its fields' codes. Values (and crosses)
not seen in train rows get no weight. L2-regularised (scikit-learn's newton-cg); the strength C is
picked from a grid on the validation rows' AUC (from the strongest penalty up, stopping at the first
that does worse), the way the GBDTs early-stop on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from models.gbdt import BaselineKind, GBDTConfig, GBDTResult, metrics_of

C_GRID = (0.1, 0.3, 1.0, 3.0)  # inverse L2 strengths, tried from the strongest penalty up
BINS = 16
MAX_ITER = 100  # Newton steps
_SHIFT = np.int64(1 << 32)  # a cross's key: code_a · 2^32 + code_b (codes are below 2^31)


@dataclass
class WideModel:
    """A fitted wide model: how to code each input block, its vocabulary, and the weights."""

    names: list[str]
    blocks: list[list[str]]  # one column (a field) or two (a cross)
    edges: dict[str, np.ndarray]  # a numeric column's bin edges; categorical columns have none
    vocab: list[np.ndarray]  # per block, the sorted keys seen in train rows
    coef: np.ndarray
    intercept: float
    C: float

    def codes(self, x: np.ndarray, column: str) -> np.ndarray:
        """The column's integer codes: the id itself, or the numeric value's bin (missing: the last bin)."""
        values = x[:, self.names.index(column)]
        if column in self.edges:
            edges = self.edges[column]
            return np.where(np.isnan(values), len(edges) + 1, np.searchsorted(edges, values, side="right")).astype(np.int64)
        return np.nan_to_num(values, nan=-1.0).astype(np.int64)

    def keys(self, x: np.ndarray, block: list[str]) -> np.ndarray:
        keys = self.codes(x, block[0])
        return keys * _SHIFT + self.codes(x, block[1]) if len(block) == 2 else keys

    def columns(self, x: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per block, each row's design column (its key's, offset by the blocks before) and whether train saw the key
        (a key it did not see sets no column)."""
        offset = 0
        for block, vocab in zip(self.blocks, self.vocab, strict=True):
            keys = self.keys(x, block)
            at = np.minimum(np.searchsorted(vocab, keys), max(len(vocab) - 1, 0))
            seen = vocab[at] == keys if len(vocab) else np.zeros(len(keys), dtype=bool)
            yield at + offset, seen
            offset += len(vocab)

    def design(self, x: np.ndarray) -> sp.csr_matrix:
        """The one-hot rows of `x` (one column per seen key of each block; an unseen key sets none): what the fit reads.

        Built as CSR directly: a row's columns, one per block, already ascend (each block's are offset past the ones
        before), so the row-major (rows × blocks) table of columns, less the unseen keys, is the CSR's index array.
        The coordinate form it replaces held two int64 indices per entry and sorted them: on 2 M rows x 36 blocks 4.4x the
        time and 5.8x the peak memory (bench/RESULTS.md)."""
        width = sum(len(v) for v in self.vocab)
        kind = np.int32 if width < 2**31 else np.int64
        table = np.empty((len(x), len(self.blocks)), dtype=kind)
        seen = np.empty((len(x), len(self.blocks)), dtype=bool)
        for j, (column, known) in enumerate(self.columns(x)):
            table[:, j], seen[:, j] = column, known
        indptr = np.zeros(len(x) + 1, dtype=np.int64)
        np.cumsum(seen.sum(axis=1), out=indptr[1:])
        indices = table[seen]  # row-major: row by row, blocks in order
        del table, seen
        return sp.csr_matrix((np.ones(len(indices), dtype=np.float64), indices, indptr), shape=(len(x), width))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Click probabilities of the rows of `x`: the intercept plus each block's weight of the row's key, gathered
        (the design matrix's product, without building it: 4.2 M rows took 17.8 s through the matrix, 3.3 s so)."""
        from scipy.special import expit

        logit = np.zeros(len(x), dtype=np.float64)
        for column, seen in self.columns(x):
            logit += np.where(seen, self.coef.take(column, mode="clip"), 0.0)
        return expit(logit + self.intercept)


class Wide(BaselineKind):
    """The wide model as a baseline: `config.params` may set `columns` (the inputs it uses; default all), `pairs`
    (column pairs to cross), `C` (a grid of strengths) and `bins`."""

    name, suffix, family = "wide", "npz", "linear"

    def fit(self, train, valid, names, categorical, config: GBDTConfig) -> GBDTResult:
        from sklearn.linear_model import LogisticRegression

        started = time.perf_counter()
        params = {"C": list(C_GRID), "bins": BINS, "columns": list(names), "pairs": [], **config.params}
        columns = [c for c in params["columns"] if c in names]
        pairs = [list(p) for p in params["pairs"] if p[0] in columns and p[1] in columns]
        x, y = train
        kinds = set(categorical)
        edges = {}
        for column in columns:
            if column not in kinds:
                values = x[:, names.index(column)]
                values = values[~np.isnan(values)]
                quantiles = np.linspace(0, 1, params["bins"] + 1)[1:-1]
                edges[column] = np.unique(np.quantile(values, quantiles)) if len(values) else np.zeros(0)
        blocks = [[c] for c in columns] + pairs
        model = WideModel(list(names), blocks, edges, [], np.zeros(0), 0.0, 0.0)
        model.vocab = [np.unique(model.keys(x, block)) for block in blocks]
        design, checked = model.design(x), model.design(valid[0])
        best, tried = None, []
        # From the strongest penalty up, stopping at the first that does worse on valid (validation AUC is unimodal
        # in C here, as it is in a GBDT's rounds). Newton-CG takes ~8 Newton steps where lbfgs took 130-190
        # iterations and 2-3x the time: lbfgs's own update grows with the number of weights.
        for c in sorted(params["C"]):
            fitted = LogisticRegression(C=c, solver="newton-cg", max_iter=MAX_ITER).fit(design, y)
            probs = fitted.predict_proba(checked)[:, 1]
            auc = metrics_of(valid[1], probs)[0]
            tried.append(c)
            if best is not None and auc <= best[0]:
                break
            best = (auc, probs, c, fitted.coef_[0], float(fitted.intercept_[0]), int(fitted.n_iter_[0]))
        _, probs, model.C, model.coef, model.intercept, iterations = best
        auc, logloss = metrics_of(valid[1], probs)
        crosses = ", ".join(f"{a} × {b}" for a, b in pairs) or "none"
        params = {**params, "C_tried": tried, "C_chosen": model.C, "weights": int(model.coef.size), "crosses": crosses}
        return GBDTResult(model, auc, logloss, iterations, len(y), time.perf_counter() - started, params)

    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray:
        return booster.predict(x)

    def save(self, booster: Any, path: Path) -> None:
        layout = {"names": booster.names, "blocks": booster.blocks, "edges": list(booster.edges), "C": booster.C}
        arrays = {f"vocab{i}": v for i, v in enumerate(booster.vocab)} | {
            f"edges{i}": booster.edges[c] for i, c in enumerate(booster.edges)
        }
        with path.open("wb") as handle:  # np.savez would append .npz to a str path that lacks it
            np.savez(handle, layout=np.array(json.dumps(layout)), coef=booster.coef, intercept=np.array(booster.intercept), **arrays)

    def load(self, path: Path, names: list[str], categorical: list[str]) -> Any:
        with np.load(path) as saved:
            layout = json.loads(str(saved["layout"]))
            edges = {c: saved[f"edges{i}"] for i, c in enumerate(layout["edges"])}
            vocab = [saved[f"vocab{i}"] for i in range(len(layout["blocks"]))]
            return WideModel(layout["names"], layout["blocks"], edges, vocab, saved["coef"], float(saved["intercept"]), layout["C"])
