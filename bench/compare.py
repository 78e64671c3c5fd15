"""The default pipeline against the GBDTs a user tries first, per dataset and seed, in one sitting (issue 15).

    python -m bench.compare [--datasets frappe,movielens,synthetic,criteo] [--seeds 1,2,3] [--no-catboost]

Per dataset and seed:
- the pipeline with its defaults and no flags but the dataset's reader config and the seed
  (`train.seed`), as a whole process (`python -m pipeline run`): the chosen model's test AUC and
  logloss, which candidate it chose, and the wall time;
- LightGBM and CatBoost with their defaults on the same encoded splits the run wrote (all train
  rows, early-stopped on valid, the same seed, categorical fields declared categorical), their
  test figures and fit time.
Mean ± sd over the seeds; the anchors come from the same sitting and host, never from constants.
Data: ../shared/data (Frappe_x1, MovieLens small split by time, the Criteo sample) and the
built-in synthetic default (200,000 rows). Results accumulate in OUT/results.json (--fresh
starts over), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from bench.common import machine, settings_digest
from pipeline import catalog

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {
    "frappe": ROOT / "configs" / "frappe.yaml",
    "movielens": ROOT / "configs" / "movielens.yaml",
    "synthetic": None,
    "criteo": ROOT / "configs" / "criteo.yaml",
}


def run_pipeline(dataset: str, seed: int, out: Path) -> dict:
    """The default pipeline as a whole process; its metrics.json and wall time."""
    config = yaml.safe_load(DATASETS[dataset].read_text()) if DATASETS[dataset] else {}
    config.pop("out", None)
    config.setdefault("train", {})["seed"] = seed
    path = out / "config.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "pipeline", "run", "--config", str(path), "--out", str(out / "run"), "--no-tracking", "--force"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{dataset} seed {seed}: the pipeline failed:\n{done.stderr[-2000:]}")
    report = json.loads((out / "run" / catalog.METRICS).read_text())
    deep = report["candidates"][report["deep_model"]]
    return {
        "chosen": report["model"],
        "kind": report["kind"],
        "test_auc": report["test_auc"],
        "test_logloss": report["test_logloss"],
        "valid_auc": report["valid_auc"],
        "deep_test_auc": deep["test_auc"],
        "deep_valid_auc": deep["valid_auc"],
        "wall_s": wall,
    }


def run_gbdt(kind_name: str, ingest_dir: Path, seed: int) -> dict:
    """A GBDT with its library's defaults on the run's encoded splits (every train row), early-stopped on valid."""
    import polars as pl

    from features.tabular import tabular, tabular_columns
    from models.baselines import KINDS
    from models.gbdt import GBDTConfig, metrics_of

    feature_map = catalog.load_feature_map(ingest_dir)
    columns, categorical, dtype = tabular_columns(feature_map)
    splits = {}
    for split in ("train", "valid", "test"):
        frame = pl.read_parquet(catalog.split_file(ingest_dir, split), columns=[*columns, feature_map.label])
        splits[split] = (tabular(frame, columns, dtype), frame[feature_map.label].cast(pl.Int8).to_numpy())
    kind = KINDS[kind_name]
    started = time.perf_counter()
    fitted = kind.fit(splits["train"], splits["valid"], columns, categorical, GBDTConfig(seed=seed))
    seconds = time.perf_counter() - started
    auc, logloss = metrics_of(splits["test"][1], kind.predict(fitted.booster, splits["test"][0]))
    return {"test_auc": auc, "test_logloss": logloss, "valid_auc": fitted.valid_auc, "wall_s": seconds, "rounds": fitted.best_iteration}


def _stat(values: list[float], digits: int = 4) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="frappe,movielens,synthetic,criteo")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--no-catboost", action="store_true", help="skip CatBoost (slow on 2 cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "compare")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    results_file = args.out / "results.json"
    results = {} if args.fresh or not results_file.is_file() else json.loads(results_file.read_text())
    anchors = ["lightgbm"] + ([] if args.no_catboost else ["catboost"])
    digest = settings_digest()
    print(f"machine: {machine()}")
    for dataset in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            key = f"{dataset}/{seed}"
            done = results.get(key, {})
            if done.get("digest") != digest:  # made by other code: measured again
                done = {"digest": digest}
            out = args.out / dataset / f"seed{seed}"
            if "pipeline" not in done:
                done["pipeline"] = run_pipeline(dataset, seed, out)
            for name in anchors:
                if name not in done:
                    done[name] = run_gbdt(name, out / "run" / "ingest", seed)
            results[key] = done
            args.out.mkdir(parents=True, exist_ok=True)
            catalog.write_json(results_file, results)
            p = done["pipeline"]
            line = f"{key}: pipeline {p['test_auc']:.4f} ({p['chosen']}, {p['kind']}, {p['wall_s']:.0f} s)"
            print(line + "".join(f"; {n} {done[n]['test_auc']:.4f} ({done[n]['wall_s']:.0f} s)" for n in anchors if n in done), flush=True)

    print(
        "\n| dataset | pipeline default: test AUC | test logloss | chosen | deep model: test AUC | "
        + " | ".join(f"{n}: test AUC | test logloss" for n in anchors)
        + " | pipeline wall s | "
        + " | ".join(f"{n} fit s" for n in anchors)
        + " |"
    )
    print("|---" * (6 + 3 * len(anchors)) + "|")
    for dataset in args.datasets.split(","):
        runs = [v for k, v in results.items() if k.split("/")[0] == dataset and v.get("digest") == digest]
        if not runs:
            continue
        pipe = [r["pipeline"] for r in runs]
        chosen = ", ".join(sorted({f"{p['chosen']} ({p['kind']})" for p in pipe}))
        cells = [
            _stat([p["test_auc"] for p in pipe]),
            _stat([p["test_logloss"] for p in pipe]),
            chosen,
            _stat([p["deep_test_auc"] for p in pipe]),
        ]
        for name in anchors:
            cells += [_stat([r[name]["test_auc"] for r in runs if name in r]), _stat([r[name]["test_logloss"] for r in runs if name in r])]
        cells.append(_stat([p["wall_s"] for p in pipe], 0))
        cells += [_stat([r[name]["wall_s"] for r in runs if name in r], 0) for name in anchors]
        print(f"| {dataset} ({len(runs)} seeds) | " + " | ".join(cells) + " |")
    for dataset in args.datasets.split(","):
        runs = [v for k, v in results.items() if k.split("/")[0] == dataset and v.get("digest") == digest]
        for name in anchors:
            pairs = [(r["pipeline"]["test_auc"], r[name]["test_auc"]) for r in runs if name in r]
            if pairs:
                diff = np.array([a - b for a, b in pairs])
                print(f"{dataset}: pipeline − {name} test AUC {diff.mean():+.4f} (per seed {', '.join(f'{d:+.4f}' for d in diff)})")


if __name__ == "__main__":
    main()
