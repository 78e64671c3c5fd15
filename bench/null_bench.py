"""Calibration of the rank stage's significance test on pure noise: the permutation null's mean and sd of I(X;Y) as
`features.information.null_moments` computes them against a Monte Carlo over permuted labels, and the share of noise
features whose p-value (`null_upper_tail`) falls below 0.05 and 0.01 (calibrated: about 5 % and 1 %).

    python -m bench.null_bench [--draws 1000] [--seed 0]

Each case fixes a feature's value counts (uniform or Zipf over its values) and the label's click rate, then permutes
the labels: the exact null the test claims. Cases span few and many values, dense and sparse counts, and click rates
from 0.5 % to 99 %.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import machine
from features.information import mutual_information, null_moments, null_upper_tail

# (rows, values, click rate, value law)
CASES = [
    (20_000, 2, 0.2, "uniform"),
    (20_000, 5, 0.2, "uniform"),
    (20_000, 50, 0.2, "uniform"),
    (20_000, 3_000, 0.2, "uniform"),
    (20_000, 50, 0.005, "uniform"),
    (20_000, 60, 0.01, "uniform"),
    (20_000, 60, 0.99, "uniform"),
    (200_000, 400, 0.01, "uniform"),
    (20_000, 3_000, 0.05, "uniform"),
    (20_000, 8_000, 0.05, "uniform"),
    (50_000, 10_000, 0.05, "zipf"),
    (50_000, 10_000, 0.01, "zipf"),
    (100_000, 200, 0.03, "zipf"),
]


def values(rng: np.random.Generator, rows: int, levels: int, law: str) -> np.ndarray:
    if law == "uniform":
        return rng.integers(0, levels, rows)
    weights = 1.0 / np.arange(1, levels + 1)
    return rng.choice(levels, rows, p=weights / weights.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"# The rank test's null on pure noise\n\nmachine: {machine()}\ndraws per case: {args.draws}\n")
    print("| rows | values | click rate | law | null mean (code / MC) | null sd (code / MC) | p < 0.05 | p < 0.01 | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rows, levels, rate, law in CASES:
        started = time.perf_counter()
        x = values(rng, rows, levels, law)
        x = np.unique(x, return_inverse=True)[1]  # values seen at least once
        y = (np.arange(rows) < round(rate * rows)).astype(np.int64)
        counts = np.bincount(x)
        mean, sd = null_moments(counts, np.bincount(y, minlength=2))
        mis, ps = np.empty(args.draws), np.empty(args.draws)
        for i in range(args.draws):
            positives = np.bincount(x, weights=rng.permutation(y), minlength=counts.size)
            mi = mutual_information(np.column_stack([counts - positives, positives]))
            mis[i], ps[i] = mi, null_upper_tail(mi, mean, sd)
        print(
            f"| {rows:,} | {counts.size:,} | {rate:g} | {law} | {mean:.3e} / {mis.mean():.3e} | {sd:.3e} / {mis.std(ddof=1):.3e} "
            f"| {100 * (ps < 0.05).mean():.1f} % | {100 * (ps < 0.01).mean():.1f} % | {time.perf_counter() - started:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
