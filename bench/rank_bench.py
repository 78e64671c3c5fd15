"""Ranking benchmark: our MI ranking against OutRank and scikit-learn, in one run, on the same data.

Data (as in ../shared/ANCHORS.md): 500,000 rows x 30 integer categorical
columns; 4 informative (cardinalities 2, 5, 10 and a Zipf 20k-value id) and 26
pure-noise columns of cardinality 2 to 100,000 (uniform and Zipf); a binary
label from a logistic model of the informative ones (positive rate ~0.26).

Prints, per method: wall time, M cells/s, the ratio to ours, and where the 4
informative columns landed. Our in-process figures are measured from encoded
parquet (reading included). OutRank runs from its own venv (bench/.venv-outrank,
`pip install outrank "xxhash<4"`) on a CSV of the same data, as a whole process;
our rank CLI (`python -m pipeline rank --data data.csv`: parse, encode and rank,
the columns declared categorical) runs as a whole process on the same CSV in the
same sitting, and the two process walls are printed as a ratio with both top 4s.

    python -m bench.rank_bench [--rows 500000] [--skip-outrank]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import machine, timed
from featuremap import FIRST_VALUE_ID, FeatureMap, FieldSpec
from features.information import mutual_information
from features.ranking import RankParams, rank_features
from pipeline import catalog

INFORMATIVE = ["inf_c2", "inf_c5", "inf_c10", "inf_zipf20k"]
NOISE_CARDS = [2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000]
OUTRANK_VENV = Path(__file__).resolve().parent / ".venv-outrank"


def make_data(rows: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Integer columns (ids from 0) and a 0/1 label with the planted structure."""
    rng = np.random.default_rng(seed)

    def zipf(k: int) -> np.ndarray:
        return np.minimum(np.exp(rng.random(rows) * np.log(k + 1)).astype(np.int64) - 1, k - 1)

    cols = {
        "inf_c2": rng.integers(0, 2, rows),
        "inf_c5": rng.integers(0, 5, rows),
        "inf_c10": rng.integers(0, 10, rows),
        "inf_zipf20k": zipf(20_000),
    }
    effects = {name: rng.normal(0, s, int(c.max()) + 1) for (name, c), s in zip(cols.items(), (0.6, 0.5, 0.4, 0.7), strict=True)}
    logit = -1.65 + sum(effects[n][cols[n]] for n in cols)
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    for i in range(26):
        k = NOISE_CARDS[i % len(NOISE_CARDS)] if i < len(NOISE_CARDS) else NOISE_CARDS[-(i - len(NOISE_CARDS)) - 1]
        cols[f"noise_{'zipf' if i % 2 else 'u'}{k}_{i}"] = zipf(k) if i % 2 else rng.integers(0, k, rows)
    return {name: c.astype(np.int32) for name, c in cols.items()}, label


def planted_ranks(order: list[str]) -> list[int]:
    """1-based ranks of the informative columns in a ranked list of names."""
    return sorted(order.index(name) + 1 for name in INFORMATIVE)


def write_encoded(cols: dict[str, np.ndarray], label: np.ndarray, directory: Path) -> FeatureMap:
    """Write the columns as encoded parquet (ids shifted past the reserved ids) and return its feature map."""
    frame = pl.DataFrame({"label": label, **{n: c + FIRST_VALUE_ID for n, c in cols.items()}})
    frame.write_parquet(directory / "train.parquet", row_group_size=1 << 18)
    fields = tuple(FieldSpec(name=n, kind="categorical", column=n, vocab_size=int(c.max()) + 1 + FIRST_VALUE_ID) for n, c in cols.items())
    return FeatureMap(label="label", fields=fields, splits={"train": {"rows": label.size}})


def ours(directory: Path, fm: FeatureMap, score: str, pairs: bool = False):
    def batches():
        names = [f.column for f in fm.fields]
        for batch in catalog.iter_batches(directory / "train.parquet", [*names, "label"], 1 << 18):
            label = batch.pop("label")
            yield batch, label

    params = RankParams(score=score, pair_budget=1000 if pairs else 0, permutations=5)
    return rank_features(batches(), fm, params)


def plain_numpy(cols: dict[str, np.ndarray], label: np.ndarray) -> list[str]:
    scores = {n: mutual_information(np.bincount(c * 2 + label, minlength=2 * (int(c.max()) + 1)).reshape(-1, 2)) for n, c in cols.items()}
    return sorted(scores, key=lambda n: -scores[n])


def sklearn_mi(cols: dict[str, np.ndarray], label: np.ndarray) -> list[str]:
    from sklearn.feature_selection import mutual_info_classif

    names = list(cols)
    scores = mutual_info_classif(np.column_stack([cols[n] for n in names]), label, discrete_features=True, random_state=0)
    return [names[i] for i in np.argsort(-scores, kind="stable")]


def our_cli(cols: dict[str, np.ndarray], workdir: Path) -> tuple[float, list[str]]:
    """Our rank CLI as a whole process on OutRank's CSV (written by `outrank` first): wall seconds and its order."""
    config = workdir / "cli.yaml"
    config.write_text("schema:\n  categorical: [" + ", ".join(cols) + "]\n")
    out = workdir / "cli_out"
    cmd = [sys.executable, "-m", "pipeline", "rank", "--data", str(workdir / "outrank_data" / "data.csv"), "--config", str(config)]
    start = time.perf_counter()
    subprocess.run([*cmd, "--out", str(out), "--no-tracking"], check=True, capture_output=True, cwd=Path(__file__).resolve().parent.parent)
    return time.perf_counter() - start, pl.read_csv(out / "rank" / "ranking.csv")["feature"].to_list()


def outrank(cols: dict[str, np.ndarray], label: np.ndarray, workdir: Path) -> tuple[float, list[str]] | None:
    exe = OUTRANK_VENV / "bin" / "outrank"
    if not exe.exists():
        print(
            f"OutRank not installed at {OUTRANK_VENV}; skipping it (python -m venv {OUTRANK_VENV} && {OUTRANK_VENV}/bin/pip install outrank 'xxhash<4')"
        )
        return None
    data_dir = workdir / "outrank_data"
    data_dir.mkdir()
    pl.DataFrame({"label": label, **cols}).write_csv(data_dir / "data.csv")
    out = workdir / "outrank_out"
    cmd = [str(exe), "--task", "ranking", "--data_path", str(data_dir), "--data_source", "csv-raw", "--heuristic", "MI-numba-randomized"]
    cmd += ["--target_ranking_only", "True", "--interaction_order", "1", "--subsampling", "1", "--label_column", "label"]
    cmd += ["--num_threads", "2", "--output_folder", str(out), "--disable_tqdm", "True"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print("OutRank failed:", proc.stderr[-1500:])
        return None
    # `--task ranking` writes pairwise_ranks.tsv: (FeatureA, FeatureB, Score); the label's pairs are the ranking.
    table = pl.read_csv(out / "pairwise_ranks.tsv", separator="\t")
    table = table.filter(pl.col("FeatureA").str.starts_with("label-") & ~pl.col("FeatureB").str.starts_with("label-"))
    names = [n.split("-(")[0] for n in table.sort("Score", descending=True)["FeatureB"].to_list()]
    return wall, names


def method_study(sizes: list[int], seeds: int) -> None:
    """Which correction finds the planted features best at each data size (in memory, no IO)."""
    print("\n## Score choice: planted features in the top 4 (mean over seeds) and time per run")
    print("| rows | plain | shifted (OutRank) | expected (I - E[I]) | standardized ((I - E[I]) / sd) | permutation z (R=5) | chi2 z |")
    print("|---|---|---|---|---|---|---|")
    scores = ["plain", "shifted", "expected", "standardized", "permutation", "chi2"]
    for rows in sizes:
        found = {s: [] for s in scores}
        seconds = {s: [] for s in scores}
        for seed in range(seeds):
            cols, label = make_data(rows, 100 + seed)
            fm = FeatureMap(
                label="label",
                fields=tuple(FieldSpec(name=n, kind="categorical", column=n, vocab_size=int(c.max()) + 1) for n, c in cols.items()),
                splits={"train": {"rows": rows}},
            )
            for s in scores:
                start = time.perf_counter()
                result = rank_features(iter([(cols, label)]), fm, RankParams(score=s, pair_budget=0, permutations=5, seed=seed))
                seconds[s].append(time.perf_counter() - start)
                top = set(result.ranking["feature"].head(4).to_list())
                found[s].append(len(top & set(INFORMATIVE)))
        cells = " | ".join(f"{np.mean(found[s]):.2f}/4 ({np.mean(seconds[s]):.2f} s)" for s in scores)
        print(f"| {rows:,} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-outrank", action="store_true")
    parser.add_argument("--study-sizes", default="5000,20000,100000")
    parser.add_argument("--study-seeds", type=int, default=10)
    args = parser.parse_args()
    print(f"# Ranking benchmark\n\nmachine: {machine()}\n")
    cols, label = make_data(args.rows, args.seed)
    cells = args.rows * len(cols)
    print(f"data: {args.rows:,} rows x {len(cols)} columns = {cells / 1e6:.1f} M cells, positive rate {label.mean():.3f}\n")
    workdir = Path(tempfile.mkdtemp(prefix="rank_bench_"))
    try:
        fm = write_encoded(cols, label, workdir)
        rows = []
        t_ours, result = timed(lambda: ours(workdir, fm, "standardized"), repeat=3)
        rows.append(
            ("ours: standardized (I - E[I]) / sd[I], from parquet (default)", t_ours, planted_ranks(result.ranking["feature"].to_list()))
        )
        memory = {n: c + FIRST_VALUE_ID for n, c in cols.items()}
        t, result = timed(lambda: rank_features(iter([(memory, label)]), fm, RankParams(pair_budget=0)), repeat=3)
        rows.append(
            ("ours: standardized, encoded arrays in memory (no parquet decoding)", t, planted_ranks(result.ranking["feature"].to_list()))
        )
        t, result = timed(lambda: ours(workdir, fm, "expected"), repeat=3)
        rows.append(("ours: expected-MI correction I - E[I], from parquet", t, planted_ranks(result.ranking["feature"].to_list())))
        t, result = timed(lambda: ours(workdir, fm, "permutation"), repeat=2)
        rows.append(("ours: permutation z-score (R=5), from parquet", t, planted_ranks(result.ranking["feature"].to_list())))
        t, result = timed(lambda: ours(workdir, fm, "shifted"), repeat=2)
        rows.append(("ours: OutRank's shifted baseline, from parquet", t, planted_ranks(result.ranking["feature"].to_list())))
        t_numpy, order = timed(lambda: plain_numpy(cols, label), repeat=3)
        rows.append(("numpy bincount plain MI (uncorrected), in memory", t_numpy, planted_ranks(order)))
        t, order = timed(lambda: sklearn_mi(cols, label))
        rows.append(("sklearn mutual_info_classif(discrete_features=True)", t, planted_ranks(order)))
        if not args.skip_outrank:
            found = outrank(cols, label, workdir)
            if found is not None:
                rows.append(("OutRank 0.97.5 MI-numba-randomized --subsampling 1 (process wall)", found[0], planted_ranks(found[1])))
                cli = our_cli(cols, workdir)
                rows.append(("ours: `python -m pipeline rank --data data.csv` (process wall, same CSV)", cli[0], planted_ranks(cli[1])))
                print(
                    f"whole processes from the same CSV: OutRank {found[0]:.1f} s / ours {cli[0]:.1f} s = {found[0] / cli[0]:.1f}x; "
                    f"top 4 OutRank {found[1][:4]}, ours {cli[1][:4]}\n"
                )
        t_pairs, result = timed(lambda: ours(workdir, fm, "standardized", pairs=True))
        print("| method | wall s | M cells/s | time / ours | informative columns ranked |")
        print("|---|---|---|---|---|")
        for name, seconds, ranks in rows:
            print(f"| {name} | {seconds:.3f} | {cells / seconds / 1e6:.1f} | {seconds / t_ours:.1f}x | {', '.join(map(str, ranks))} |")
        print(f"\nmachine state: plain numpy bincount MI ran at {cells / t_numpy / 1e6:.0f} M cells/s in this sitting")
        top_pairs = result.pairs.head(3).select("feature_a", "feature_b", "gain").rows()
        print(f"\nwith all {result.pairs.height} pairs, redundancy and 3MR on a {min(args.rows, 1_000_000):,}-row sample: {t_pairs:.2f} s")
        print(f"top pairs by gain: {top_pairs}")
        method_study([int(s) for s in args.study_sizes.split(",") if s], args.study_seeds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
