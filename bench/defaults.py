"""Choose defaults on validation: the pipeline's variants per dataset and seed, validation figures only (issue 15).

    python -m bench.defaults [--datasets synthetic,movielens,criteo,frappe] [--seeds 1,2,3]
        [--variant NAME=YAML ...]

Each variant is a config overlay (YAML, merged over the dataset's config), run as a whole
process. Only validation AUCs are read and printed (the chosen candidate's, the deep model's,
the LightGBM baseline's); the test split's figures are never looked at here, so that a default
picked from this table is picked on validation. bench/compare.py then reports test once for the
chosen defaults. Results accumulate in OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from bench.common import machine, settings_digest
from bench.compare import DATASETS, ROOT
from pipeline import catalog

VARIANTS = {
    "neither": "rank: {select: {enabled: false}}\nsearch: {methods: []}",
    "selection": "rank: {select: {enabled: true}}\nsearch: {methods: []}",
    "encodings": "rank: {select: {enabled: false}}\nsearch: {methods: [encodings]}",
    "both": "rank: {select: {enabled: true}}\nsearch: {methods: [encodings]}",
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run(dataset: str, seed: int, overlay: str, out: Path) -> dict:
    config = yaml.safe_load(DATASETS[dataset].read_text()) if DATASETS[dataset] else {}
    config.pop("out", None)
    config = _merge(config, yaml.safe_load(overlay) or {})
    config.setdefault("train", {})["seed"] = seed
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "pipeline", "run", "--config", str(out / "config.yaml"), "--out", str(out / "run"), "--no-tracking"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{dataset} seed {seed}: the pipeline failed:\n{done.stderr[-2000:]}")
    report = json.loads((out / "run" / catalog.METRICS).read_text())
    candidates = report["candidates"]
    searched = {}  # each search method's numeric summary (kept fraction, memorised rows, ...): validation-side figures only
    for name in config.get("search", {}).get("methods", []):
        summary = catalog.method_summary(name).at(out / "run")
        if summary.is_file():
            found = json.loads(summary.read_text())
            searched[name] = {k: v for k, v in found.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {
        "chosen": report["model"],
        "valid_auc": report["valid_auc"],
        "deep_valid_auc": candidates[report["deep_model"]]["valid_auc"],
        "deep_epochs": report.get("epochs"),  # how long the deep model trained: epochs and seconds
        "deep_seconds": candidates[report["deep_model"]].get("seconds"),
        "lightgbm_valid_auc": candidates.get("lightgbm", {}).get("valid_auc"),
        "search": searched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="synthetic,movielens,criteo,frappe")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--variant", action="append", default=[], help="NAME=YAML overlay (default: selection x encodings)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "defaults")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or VARIANTS
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    digests = {name: settings_digest(overlay=overlay) for name, overlay in variants.items()}
    print(f"machine: {machine()}")
    for dataset in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for name, overlay in variants.items():
                key = f"{dataset}/{seed}/{name}"
                if results.get(key, {}).get("digest") != digests[name]:  # a variant is its overlay, under this code
                    results[key] = {**run(dataset, seed, overlay, args.out / dataset / f"seed{seed}" / name), "digest": digests[name]}
                    args.out.mkdir(parents=True, exist_ok=True)
                    catalog.write_json(results_file, results)
                r = results[key]
                shown = {"kept_fraction", "memorised_rows", "valid_auc_after"}
                found = "; ".join(
                    f"{m} " + ", ".join(f"{k} {v:.4g}" for k, v in s.items() if k in shown)
                    for m, s in r.get("search", {}).items()
                    if shown & set(s)
                )
                trained = f" ({r['deep_epochs']} epochs, {r['deep_seconds']:.0f} s)" if r.get("deep_seconds") is not None else ""
                print(
                    f"{key}: valid AUC chosen {r['valid_auc']:.4f} ({r['chosen']}), deep {r['deep_valid_auc']:.6f}{trained}"
                    + (f"; {found}" if found else ""),
                    flush=True,
                )
    print("\n| dataset | " + " | ".join(f"{n}: chosen valid AUC | deep valid AUC" for n in variants) + " |")
    print("|---" * (1 + 2 * len(variants)) + "|")
    for dataset in args.datasets.split(","):
        cells = []
        for name in variants:
            runs = [
                v for k, v in results.items() if k.startswith(f"{dataset}/") and k.endswith(f"/{name}") and v.get("digest") == digests[name]
            ]
            for field in ("valid_auc", "deep_valid_auc"):
                values = [r[field] for r in runs]
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.4f} ± {sd:.4f}" if values else "—")
            kept = [s["kept_fraction"] for r in runs for s in r.get("search", {}).values() if "kept_fraction" in s]
            if kept:  # a selection method's share of feature values kept, beside the deep model's AUC
                cells[-1] += f" (kept {statistics.mean(kept):.1%})"
        print(f"| {dataset} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
