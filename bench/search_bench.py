"""Search benchmark: each search method against the unsearched model, on Frappe_x1 and the synthetic default.

For every dataset it runs the pipeline once without search (the baseline's
test AUC and one plain training's wall time) and once per method, each into
its own output directory, then prints, side by side: what the method kept
(values, parameters, pair modes), the final train stage's validation AUC
against the baseline's (what a setting is chosen on), its test AUC against the
baseline's (read only there, reported), and the search's wall time over one
plain training.

    python -m bench.search_bench [--datasets synthetic,frappe] [--methods optfs,dnis,optinter,optuna] [--seed N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.common import machine
from features import synthetic

ROOT = Path(__file__).resolve().parent.parent
DATA = {"synthetic": None, "frappe": ROOT.parent / "shared" / "data" / "frappe"}
# Settings per dataset: Frappe's table has 5,382 values and 50 steps per epoch, so OptFS's lambda and gate learning
# rate are raised from the official code's Criteo-scale values (1e-8 over millions of values, thousands of steps).
BASE = {
    "synthetic": {"data": {"synthetic_rows": 200_000}, "train": {"model": "deepfm", "embedding_regularizer": 0.0}},
    "frappe": {
        "data": {"format": "libsvm"},
        "encode": {"min_count": 1},
        "train": {
            "model": "deepfm",
            "embedding_regularizer": 0.05,
            "params": {"hidden": [400, 400, 400], "dropout": 0.2, "batch_norm": True},
        },
    },
}
SEARCH = {
    "optfs": {"epochs": 10, "gamma": 1000.0, "l1": 1e-6, "gate_lr": 0.01},
    "dnis": {"freq_blocks": 4, "warmup_epochs": 2, "search_epochs": 2, "prune_ratio": 0.5},
    "optinter": {"max_pairs": 20, "compare": True},  # the defaults: 10 search epochs, arch lr 0.01, anneal 0.001
    "optuna": {"trials": 12, "max_epochs": 10},
}
# Per-dataset changes to SEARCH, chosen on the searched model's validation AUC (bench/RESULTS.md "Search", one seed):
# on the synthetic data (197,073 values, 49 steps per epoch) lambda 1e-6 closes 82 % of the values, useful long-tail
# ones included (valid AUC 0.7092), 1e-7 keeps 56 % (0.7141). On Frappe DNIS warms up for 8 epochs (of the DeepFM's
# ~17): after 2 (the model at valid AUC 0.944 of its final 0.984) the entry magnitudes it prunes by are far from
# trained (the 50 %-cut model's valid AUC 0.9808 with warm-up 2, 0.9829 with 8, both rewound).
SEARCH_BY_DATASET = {
    "synthetic": {"optfs": {"l1": 1e-7}},
    "frappe": {"dnis": {"warmup_epochs": 8}, "optinter": {"dropout": 0.2, "batch_norm": True}},  # the DeepFM's MLP
}
# Train settings for one method's run: the synthetic OptInter run (search, retrain and the uniform comparisons)
# with the embedding regulariser (field embeddings and cross tables); without it every pair's memorised noise crosses
# overfit alike.
TRAIN_BY_RUN = {("synthetic", "optinter"): {"embedding_regularizer": 0.05}}
OVERRIDES: dict[str, dict] = {}  # --set method.key=value, over both


def run(dataset: str, method: str | None, out: Path, quick: bool, seed: int | None = None) -> dict:
    """One pipeline run; its metrics.json and search summary."""
    config = json.loads(json.dumps(BASE[dataset]))
    if seed is not None:
        config.setdefault("train", {})["seed"] = seed
    if quick:
        config.setdefault("train", {})["max_epochs"] = 2
        config["data"] = {**config.get("data", {}), **({"synthetic_rows": 20_000} if dataset == "synthetic" else {})}
    if not method:  # the unsearched model: no search method at all (the pipeline's default runs the encodings)
        config["search"] = {"methods": []}
    else:
        settings = {**SEARCH[method], **SEARCH_BY_DATASET.get(dataset, {}).get(method, {}), **OVERRIDES.get(method, {})}
        config["search"] = {"methods": [method], "baseline": False, method: settings}
        config["train"] = {**config.get("train", {}), **TRAIN_BY_RUN.get((dataset, method), {})}
    name = f"{dataset}-{method or 'baseline'}" + (f"-seed{seed}" if seed is not None else "")
    target = out / name
    config["out"] = str(target)
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "pipeline", "run", "--config", str(path), "--no-tracking"]
    if DATA[dataset] is not None:
        command += ["--data", str(DATA[dataset])]
    if method == "optinter":
        command += ["--stages", "ingest,rank,search,train"]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    report = json.loads((target / "metrics.json").read_text())
    summary = json.loads((target / "search" / f"{method}.json").read_text()) if method else {}
    return {"report": report, "search": summary, "seconds": seconds}


def describe(method: str, summary: dict, report: dict) -> str:
    if method == "optfs":
        return f"{summary['kept_values']:,}/{summary['total_values']:,} values kept ({summary['kept_fraction']:.1%}), dropped {summary['dropped_fields'] or 'none'}"
    if method == "dnis":
        return f"embedding params {summary['embedding_params_after']:,}/{summary['embedding_params_before']:,} (cut {summary['params_cut']:.1%})"
    if method == "optinter":
        uniform = ", ".join(f"all-{m} {auc:.4f}" for m, auc in summary.get("valid_auc_all_mode", {}).items())
        planted = {frozenset(p) for p in synthetic.INTERACTIONS}
        found = [f"{p['a']}×{p['b']}: {p['mode']}" for p in summary["pairs"] if frozenset((p["a"], p["b"])) in planted]
        others = [p["mode"] for p in summary["pairs"] if frozenset((p["a"], p["b"])) not in planted]
        shown = (
            f"planted {', '.join(found) or 'not among candidates'}; others naive {others.count('naive')}/{len(others)}; " if found else ""
        )
        return f"modes {summary['modes']}, {shown}memorised rows {summary['memorised_rows']:,}; valid AUC {uniform}"
    chosen = summary["chosen"]
    return f"chosen {chosen['config']['model']} d={chosen['config']['embedding_dim']} ({int(chosen['params']):,} params), pruned {summary['pruned']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="synthetic,frappe")
    parser.add_argument("--methods", default="optfs,dnis,optinter,optuna")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "search")
    parser.add_argument("--quick", action="store_true", help="2 epochs and small data: checks the bench runs, measures nothing")
    parser.add_argument("--set", action="append", default=[], help="override a search setting, e.g. optinter.arch_split=valid")
    parser.add_argument("--seed", type=int, default=None, help="train.seed of every run (the search's too); default: the config's")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for item in args.set:
        key, value = item.split("=", 1)
        method, name = key.split(".", 1)
        OVERRIDES.setdefault(method, {})[name] = yaml.safe_load(value)
    print(f"machine: {machine()}")
    rows = []
    for dataset in args.datasets.split(","):
        base = run(dataset, None, args.out, args.quick, args.seed)
        plain_seconds = base["report"]["train_seconds"]  # one plain training (the baseline run's train stage)
        for method in args.methods.split(","):
            result = run(dataset, method, args.out, args.quick, args.seed)
            summary, report = result["search"], result["report"]
            # the deep model's figures on both sides (the chosen candidate may be a GBDT or a blend, which no search
            # method changes)
            searched, plain = report["candidates"][report["deep_model"]], base["report"]["candidates"][base["report"]["deep_model"]]
            rows.append(
                f"| {dataset} | {method} | {describe(method, summary, report)} | {searched['valid_auc']:.6f} | {plain['valid_auc']:.6f} | "
                f"{searched['valid_auc'] - plain['valid_auc']:+.6f} | {searched['test_auc']:.6f} | {plain['test_auc']:.6f} | "
                f"{searched['test_auc'] - plain['test_auc']:+.6f} | {summary['seconds'] / plain_seconds:.1f}x |"
            )
            print(rows[-1], flush=True)
    print(
        "\n| dataset | method | kept | valid AUC | baseline valid AUC | valid difference | test AUC | baseline test AUC "
        "| test difference | search time / one training |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
