"""Unified Embedding against the hashing trick and frequency-capped vocabularies at equal parameter budgets (issue 19).

Per dataset (the long-tailed synthetic data, `data.synthetic_kind: longtail`, and Frappe_x1), per seed and
per budget (fractions of the full per-field tables' embedding parameters), trains one base model (DeepFM by
default; `--base dnn`, an MLP over the embeddings, is the setting of the paper's argument) over each embedding method, set up by the pipeline's own methods (methods/unified.py, hashing.py,
capped.py: their search then apply, as a run with `--search METHOD` does):
- `full`: one table per field (the budget's reference, fraction 1);
- `unified`: Unified Embedding over `--unified-layout` TABLESxCHUNKS; given several layouts, each is trained and
  the one with the best mean valid AUC over the seeds stands for Unified Embedding at that budget (the others are
  listed beside it);
- `hashing`: one hashed table per field, rows split by water-filling;
- `capped`: one table per field of its most frequent values, one min count for all fields.
At fraction 1 the hashing trick and the cap have every value in its own row, i.e. they are the full tables,
so they are not trained again there. Training: Adam 1e-3 (the tables' Adam lazy on the long-tailed data: OPTIMIZER
or `--embedding-optimizer`; the rate constant: LR_SCHEDULE or `--lr-schedule`), batch BATCH[dataset] or
`--batch-size`, early stopping on valid AUC (patience 2, at most EPOCHS[dataset] or `--epochs`), the best epoch's
weights; valid and test AUC and logloss of that epoch.

Output: OUT/results.json (each finished run, so a rerun resumes; --fresh starts over), a markdown table per
dataset (mean ± sd over seeds, and each method's valid and test AUC against the hashing trick's and the full
tables'), a Pareto plot per dataset (AUC against embedding parameters, log scale) written to OUT and to
bench/unified_<dataset>.png, and an MLflow run per dataset with the figures and the plot.

    python -m bench.unified_bench                     # the sweep (3 seeds, 5 budgets, both datasets)
    python -m bench.unified_bench --quick             # a small long-tailed sample, 1 seed, 2 budgets: minutes
    python -m bench.unified_bench --base dnn          # the same sweep over an MLP (plots unified_<dataset>_dnn.png)
    python -m bench.unified_bench --base dcnv2        # over DCN-V2's cross network and MLP
    python -m bench.unified_bench --unified-layout 1x1,1x2,1x5   # Unified Embedding's layout chosen on valid per budget
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FRAPPE = ROOT.parent / "shared" / "data" / "frappe"
METHODS = ("full", "unified", "hashing", "capped")
# BARS Frappe_x1's DeepFM at half the width and without dropout (dropout's random masks were a quarter of a CPU step)
DEEPFM = {"hidden": [200, 200, 200], "dropout": 0.0, "batch_norm": True}
QUICK_DEEPFM = {"hidden": [64, 64], "dropout": 0.0, "batch_norm": False}
# At most this many epochs, early-stopped on valid AUC (patience 2): on the long-tailed data the full tables peak after
# the first epoch (valid AUC falls in the second, bench/RESULTS.md), as CTR models on sparse ids do; Frappe takes ~20.
EPOCHS = {"longtail": 1, "frappe": 40}
# Rows per step and the embedding tables' optimizer (TrainConfig.embedding_optimizer), chosen on the full tables' valid
# AUC over seeds 1-3 with DeepFM and DCN-V2 (bench/RESULTS.md "Lazy Adam"). On the long-tailed data each row is seen
# once (a second epoch drops valid AUC by ~0.05), and valid AUC climbs to the epoch's last step: more, cheaper steps
# pay. Dense Adam moves all 12-13 M embedding parameters every step; lazy Adam only the rows a batch looks up (DeepFM's
# full tables at 1024: 12 against 26 ms a step, a run a third of the time).
# Valid AUC, DeepFM / DCN-V2: adam 1024 0.6754 / 0.6739; lazy_adam 1024 0.6824 / 0.6816, 512 0.6865 / 0.6843,
# 256 0.6901 / 0.6839, 128 0.6879 / 0.6874. 512 is taken: 256 gains 0.0016 on the mean of the two at ~1.6x the time,
# 128 0.0023 at ~2.5x. Frappe keeps BARS' 4096 and dense Adam over its ~20 epochs.
BATCH = {"longtail": 512, "frappe": 4096}
OPTIMIZER = {"longtail": "lazy_adam", "frappe": "adam"}
# The learning rate within training (TrainConfig.lr_schedule), chosen like the batch (bench/RESULTS.md "Annealing, the
# tables' rate, smaller steps, and nine seeds"). Valid AUC at 512, DeepFM / DCN-V2: constant 0.6865 / 0.6843, linear
# 0.6833 / 0.6824, cosine 0.6790 / 0.6789: annealed, the rows met late in the one epoch learn with smaller steps.
LR_SCHEDULE = {"longtail": "constant", "frappe": "constant"}


def ingest(out: Path, dataset: str, rows: int) -> Path:
    """The dataset's encoded splits under OUT/<dataset>/ingest, written once by the pipeline's ingest stage (min count 1)."""
    from pipeline import catalog

    target = out / dataset
    config = target / "config.yaml"
    if dataset == "frappe":
        data = f"data: {{path: {FRAPPE}, format: libsvm}}"
    else:
        data = f"data: {{synthetic_kind: longtail, synthetic_rows: {rows}, synthetic_seed: 7}}"
    text = f"{data}\nencode: {{min_count: 1}}\n"
    if catalog.FEATURE_MAP.at(target).is_file() and config.is_file() and config.read_text() == text:
        return target / "ingest"
    shutil.rmtree(target, ignore_errors=True)  # another --rows: that data is not this data
    target.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "--config",
        str(config),
        "--out",
        str(target),
        "--no-tracking",
        "--stages",
        "ingest",
    ]
    subprocess.run(command, check=True, cwd=ROOT)
    return target / "ingest"


def layout_model(method: str, fraction: float, seed: int, data: tuple, base: str, params: dict, dim: int, layout: tuple[int, int]):
    """The base model over `method`'s tables at `fraction` of the full tables' parameters, with the method's summary."""
    import torch

    from methods import METHODS as REGISTRY
    from methods.base import ModelSpec, SearchRun
    from models.embedding import EmbeddingConfig
    from models.registry import build_model
    from models.trainer import TrainConfig
    from models.unified import per_field_parameters

    feature_map, train, valid, _ = data
    embedding = EmbeddingConfig(dim=dim, backend="torch")
    spec = ModelSpec(base, params, embedding, seed)
    if method == "full":
        torch.manual_seed(seed)
        return build_model(base, feature_map, embedding, params), {}
    budget = int(per_field_parameters(feature_map, dim) * fraction)
    settings: dict[str, Any] = {"budget": budget}
    if method in ("unified", "hashing"):
        settings["hash_seed"] = seed
    if method == "unified":
        settings.update(tables=layout[0], chunks=layout[1])
    chosen = REGISTRY[method]
    typed = chosen.settings(**settings)
    run = SearchRun(feature_map, train, valid, TrainConfig(), spec, None, lambda n: [])  # type: ignore[arg-type]
    found = chosen.search(run, typed)
    return chosen.apply(None, found.state, typed, spec, feature_map).model, found.summary


def protocol(args: argparse.Namespace, dataset: str) -> dict[str, Any]:
    """The dataset's training settings (TrainConfig fields): its defaults above, or the command line's."""
    return {
        "max_epochs": args.epochs or EPOCHS[dataset],
        "batch_size": args.batch_size or BATCH[dataset],
        "embedding_optimizer": args.embedding_optimizer or OPTIMIZER[dataset],
        "lr_schedule": args.lr_schedule or LR_SCHEDULE[dataset],
    }


def run_one(
    method: str,
    fraction: float,
    seed: int,
    data: tuple,
    training: dict[str, Any],
    layout: tuple[int, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train one (method, budget, seed) under `training` (protocol()), Unified Embedding over `layout`; its figures."""
    import torch

    from models.trainer import TrainConfig, TrainHooks, evaluate, fit, resolve_device, resolve_precision, train_report

    params = QUICK_DEEPFM if args.quick else DEEPFM
    model, summary = layout_model(method, fraction, seed, data, args.base, params, args.dim, layout)
    _, train, valid, test = data
    config = TrainConfig(**training, patience=2, seed=seed, precision=args.precision)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    curve: list[tuple[int, float]] = []  # (step, valid AUC) every --eval-steps steps: does one epoch converge?
    steps = 0

    def after_step() -> None:
        nonlocal steps
        steps += 1
        if steps % args.eval_steps == 0:
            model.eval()
            curve.append((steps, evaluate(model, valid, 16_384, device, precision)[0]))
            model.train()

    started = time.perf_counter()
    result = fit(model, train, valid, config, hooks=TrainHooks(after_step=after_step if args.eval_steps else None))
    test_auc, test_logloss = evaluate(model, test, config.batch_size, device, precision)
    return {
        "method": method,
        "layout": layout_name(layout) if method == "unified" else None,
        "fraction": fraction,
        "seed": seed,
        **train_report(model, result, test_auc, test_logloss),
        "valid_auc_by_epoch": [r.valid_auc for r in result.history],
        "valid_auc_by_step": curve,
        "batch_size": config.batch_size,
        "embedding_optimizer": config.embedding_optimizer,
        "lr_schedule": config.lr_schedule,
        "seconds": time.perf_counter() - started,
        "min_count": summary.get("min_count"),
        "torch_threads": torch.get_num_threads(),
    }


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def layout_name(layout: tuple[int, int]) -> str:
    """TABLESxCHUNKS, as --unified-layout takes it."""
    return f"{layout[0]}x{layout[1]}"


def summarise(rows: list[dict]) -> dict[tuple[str, float], dict[str, Any]]:
    """Per (method, fraction): mean and sd of each figure over seeds. Unified Embedding's runs are grouped per layout
    (keys "unified 1x5"), and ("unified", fraction) is the layout with the best mean valid AUC at that fraction (its
    `layout` and `candidates` say which and out of how many). The full tables stand in for the hashing trick and the
    cap at fraction 1 (there every value has its own row)."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        name = f"unified {r.get('layout') or '1x1'}" if r["method"] == "unified" else r["method"]
        groups.setdefault((name, r["fraction"]), []).append(r)
    out: dict[tuple[str, float], dict[str, Any]] = {}
    for key, group in groups.items():
        out[key] = {
            "seeds": len(group),
            "embedding_params": statistics.fmean(r["embedding_params"] for r in group),
            **{f: _mean_sd([r[f] for r in group]) for f in ("valid_auc", "test_auc", "valid_logloss", "test_logloss", "seconds")},
        }
    for fraction in sorted({f for _, f in out}):
        candidates = {name.split(" ", 1)[1]: s for (name, f), s in out.items() if f == fraction and name.startswith("unified ")}
        if candidates:  # chosen on valid only: the test figures of the others are not looked at
            layout, best = max(candidates.items(), key=lambda item: item[1]["valid_auc"][0])
            out[("unified", fraction)] = {**best, "layout": layout, "candidates": len(candidates)}
    full = out.get(("full", 1.0))
    for method in ("hashing", "capped"):
        if full is not None and (method, 1.0) not in out:
            out[(method, 1.0)] = full
    return out


def table(dataset: str, summary: dict[tuple[str, float], dict[str, Any]], fractions: list[float]) -> str:
    """The markdown table of one dataset: each method at each budget, mean ± sd, and the differences that decide."""
    full = summary.get(("full", 1.0))
    lines = [
        f"### {dataset}",
        "",
        "| budget | method | embedding params | valid AUC | test AUC | test logloss | valid − hashing | test − hashing | test − full | s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fraction in fractions:
        hashing = summary.get(("hashing", fraction))
        chosen = summary.get(("unified", fraction), {})
        others = sorted(m for m, f in summary if f == fraction and m.startswith("unified ") and m != f"unified {chosen.get('layout')}")
        for method in [*METHODS, *(others if chosen.get("candidates", 1) > 1 else [])]:
            s = summary.get((method, fraction))
            if s is None or (method == "full" and fraction != 1.0):
                continue
            stood_in = method in ("hashing", "capped") and fraction == 1.0
            versus = (
                f"{s['valid_auc'][0] - hashing['valid_auc'][0]:+.4f} | {s['test_auc'][0] - hashing['test_auc'][0]:+.4f}"
                if hashing is not None and method != "hashing"
                else "— | —"
            )
            to_full = f"{s['test_auc'][0] - full['test_auc'][0]:+.4f}" if full is not None else "—"
            name = f"{method} (= full tables)" if stood_in else method
            if method == "unified":
                name = f"unified {s['layout']}" + (f" (best valid of {s['candidates']})" if s["candidates"] > 1 else "")
            lines.append(
                f"| {fraction:g} | {name} | {s['embedding_params']:,.0f} | {s['valid_auc'][0]:.4f} ± {s['valid_auc'][1]:.4f} | "
                f"{s['test_auc'][0]:.4f} ± {s['test_auc'][1]:.4f} | {s['test_logloss'][0]:.4f} | {versus} | {to_full} | "
                f"{s['seconds'][0]:.0f} |"
            )
    return "\n".join(lines)


def pareto_plot(dataset: str, summary: dict[tuple[str, float], dict[str, Any]], path: Path) -> None:
    """Valid and test AUC (mean, sd as error bars) against embedding parameters, one line per method."""
    from pipeline.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, split in zip(axes, ("valid", "test"), strict=True):
        for method in METHODS:
            points = sorted((s["embedding_params"], s[f"{split}_auc"]) for (m, _), s in summary.items() if m == method)
            if not points:
                continue
            x = [p for p, _ in points]
            style = {"marker": "*", "markersize": 14, "zorder": 5} if method == "full" else {"marker": "o"}
            ax.errorbar(x, [a[0] for _, a in points], yerr=[a[1] for _, a in points], capsize=3, label=method, **style)
        ax.set_xscale("log")
        ax.set_xlabel("embedding parameters")
        ax.set_title(f"{dataset}: {split} AUC")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AUC (mean ± sd over seeds)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_to_mlflow(uri: str, dataset: str, rows: list[dict], summary: dict, plot: Path, args: argparse.Namespace) -> None:
    """One MLflow run per dataset: settings as params, each (method, budget)'s mean AUC as metrics, the plot and rows."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("unified-embedding-budget-sweep")
    with mlflow.start_run(run_name=f"{dataset} budget sweep"):
        mlflow.log_params(
            {
                "dataset": dataset,
                "base": args.base,
                "dim": args.dim,
                "seeds": args.seeds,
                **{"epochs" if k == "max_epochs" else k: v for k, v in protocol(args, dataset).items()},
                "unified_layouts": args.unified_layout,
                **{f"unified_{f:g}_layout": s["layout"] for (m, f), s in summary.items() if m == "unified"},
            }
        )
        for (method, fraction), s in summary.items():
            name = method.replace(" ", "_")  # "unified 1x5": a layout Unified Embedding was tried with
            mlflow.log_metrics({f"{name}_{fraction:g}_valid_auc": s["valid_auc"][0], f"{name}_{fraction:g}_test_auc": s["test_auc"][0]})
        mlflow.log_artifact(str(plot))
        mlflow.log_dict(rows, f"{dataset}_runs.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="longtail,frappe")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budgets", default="1,0.5,0.25,0.125,0.0625", help="fractions of the full tables' embedding parameters")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the long-tailed data (80/10/10 split)")
    parser.add_argument("--epochs", type=int, help="at most this many epochs, early-stopped on valid (default: per dataset, EPOCHS)")
    parser.add_argument(
        "--base",
        default="deepfm",
        choices=["deepfm", "dnn", "dcnv2", "fm", "autoint", "autoint+"],
        help="dnn: an MLP over the embeddings, the setting of the paper's argument; dcnv2: DCN-V2 (cross layers beside an MLP)",
    )
    parser.add_argument("--batch-size", type=int, help="rows per step (default: per dataset, BATCH)")
    parser.add_argument(
        "--embedding-optimizer",
        choices=["adam", "lazy_adam"],
        help="the embedding tables' optimizer (TrainConfig.embedding_optimizer; default: per dataset, OPTIMIZER)",
    )
    parser.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine", "linear"],
        help="the learning rate within training (TrainConfig.lr_schedule; default: per dataset, LR_SCHEDULE)",
    )
    parser.add_argument("--eval-steps", type=int, default=0, help="also record valid AUC every this many steps (the curve inside an epoch)")
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--unified-layout", default="1x1", help="Unified Embedding's TABLESxCHUNKS")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="60k long-tailed rows, seed 1, budgets 1 and 1/4, a small DeepFM")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "unified")
    parser.add_argument("--plots", type=Path, default=ROOT / "bench", help="where the Pareto plots are kept")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///OUT/mlflow.db); 'none' to skip")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds, args.budgets, args.rows = "longtail", "1", "1,0.25", 60_000
    try:
        layouts = [(int(t), int(c)) for t, c in (item.split("x") for item in args.unified_layout.split(","))]
    except ValueError:
        parser.error(f"--unified-layout takes TABLESxCHUNKS[,TABLESxCHUNKS...], got {args.unified_layout!r}")

    import torch

    from bench.common import machine, peak_rss_gib, settings_digest
    from pipeline import catalog
    from pipeline.upstream import load_split

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results: dict[str, dict] = {} if args.fresh or not results_file.is_file() else json.loads(results_file.read_text())
    fractions = [float(f) for f in args.budgets.split(",")]
    # What a stored run depends on beyond its key (dataset, method and layout, budget, seed, base): reused only when the same.
    digest = settings_digest(
        rows=args.rows,
        epochs=args.epochs,
        batch_size=args.batch_size,
        batches=BATCH,
        embedding_optimizer=args.embedding_optimizer,
        optimizers=OPTIMIZER,
        lr_schedule=args.lr_schedule,
        lr_schedules=LR_SCHEDULE,
        eval_steps=args.eval_steps,
        dim=args.dim,
        precision=args.precision,
        quick=args.quick,
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    print(f"machine: {machine()}; torch threads {args.threads}", flush=True)
    for dataset in args.datasets.split(","):
        ingest_dir = ingest(args.out, dataset, args.rows)
        feature_map = catalog.load_feature_map(ingest_dir)
        data = (feature_map, *(load_split(ingest_dir, split, feature_map, False) for split in ("train", "valid", "test")))
        print(
            f"{dataset}: {len(data[1]):,} / {len(data[2]):,} / {len(data[3]):,} rows, {sum(f.vocab_size for f in feature_map.fields):,} ids",
            flush=True,
        )
        for seed in seeds:
            for fraction in fractions:
                for method, layout in [(m, lay) for m in methods for lay in (layouts if m == "unified" else [(1, 1)])]:
                    if method != "unified" and (method == "full") != (fraction == 1.0):
                        continue  # the full tables only at 1, where hashing and capped are the full tables
                    name = method if layout == (1, 1) else f"{method}@{layout_name(layout)}"
                    key = f"{dataset}|{name}|{fraction:g}|{seed}|{args.base}|{digest}"
                    if key in results:
                        continue
                    r = run_one(method, fraction, seed, data, protocol(args, dataset), layout, args)
                    results[key] = {"dataset": dataset, **r, "base": args.base, "digest": digest}
                    catalog.write_json(results_file, results)
                    curve = ", ".join(f"{step}: {auc:.4f}" for step, auc in r["valid_auc_by_step"][-4:])
                    print(
                        f"  {key}: valid {r['valid_auc']:.4f}, test {r['test_auc']:.4f}, {r['embedding_params']:,} embedding params, "
                        f"{r['epochs']} epoch(s), {r['seconds']:.0f} s" + (f"; valid AUC by step ... {curve}" if curve else ""),
                        flush=True,
                    )
        rows = [
            r
            for key, r in results.items()
            if r["dataset"] == dataset
            and r.get("digest") == digest
            and r["base"] == args.base
            and r["seed"] in seeds
            and r["fraction"] in fractions
            and (r["method"] != "unified" or r.get("layout") in {layout_name(lay) for lay in layouts})
        ]
        summary = summarise(rows)
        print("\n" + table(dataset, summary, fractions) + "\n", flush=True)
        plot = args.out / (f"unified_{dataset}.png" if args.base == "deepfm" else f"unified_{dataset}_{args.base}.png")
        pareto_plot(dataset, summary, plot)
        if not args.quick:
            args.plots.mkdir(parents=True, exist_ok=True)
            (args.plots / plot.name).write_bytes(plot.read_bytes())
        uri = args.tracking_uri or f"sqlite:///{(args.out / 'mlflow.db').resolve()}"
        if uri != "none":
            log_to_mlflow(uri, dataset, rows, summary, plot, args)
    print(f"machine: {machine()}; peak RSS {peak_rss_gib():.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
