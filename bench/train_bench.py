"""Training benchmark: BARS reproduction on Frappe_x1 and training throughput, one run.

Ingests ../shared/data/frappe with the BARS settings (min count 1), then
trains each model with its BARS Frappe_x1 settings (embedding 10, Adam 1e-3,
batch 4096, patience 2, lr x 0.1 on plateau, seed 2021) and reports valid /
test AUC and logloss, parameters, training samples/s and epochs, side by side
with the published BARS test AUC. Models use the configuration's default embedding
backend (what a user of the CLI gets).

AutoInt is measured against FuxiCTR's AutoInt in the same sitting:
`--fuxictr PYTHON` (the interpreter of the venv that
../shared/anchors/fuxictr/README.md sets up; default $FUXICTR_PYTHON) runs
../shared/anchors/fuxictr/run.py on this host in the same run (before ours
with `--throughput`, after our models otherwise): with
`--throughput EPOCHS` its training samples/s over the same epochs (fp32 against
fp32, and our default precision against its default, fp32), otherwise its full
run's valid and test AUC beside our AutoInt's. The bench also measures the host's
fp32 and bf16 matrix-multiply rates to show its state.

Unified embedding runs as AutoInt (or --unified-base) over shared hashed
tables at a sweep of parameter budgets (fractions of the per-field tables'
size), with that model's BARS settings.

Results go to OUT/results.json after each model (rerunning skips models that
are done; --fresh starts over) and a markdown table is printed at the end.

    python -m bench.train_bench [--models autoint,deepfm,...] [--precision auto] [--out bench/out/train]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.common import machine, peak_rss_gib, settings_digest
from methods.base import ModelSpec
from methods.unified import UnifiedSettings, layout_for
from models.embedding import EmbeddingConfig
from models.registry import build_model
from models.trainer import TrainConfig, cpu_bf16_pays, evaluate, fit, resolve_device, resolve_precision, train_report
from models.unified import shared_model
from pipeline import catalog
from pipeline.config import TrainSection
from pipeline.upstream import feature_ranks, load_split

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "frappe"

# Published BARS Frappe_x1 test AUC (reczoo/BARS) and each model's settings there.
BARS_TEST_AUC = {"lr": 0.9356, "fm": 0.9671, "deepfm": 0.9842, "dcnv2": 0.9845, "autoint": 0.9831, "autoint+": 0.9848}
SETTINGS: dict[str, tuple[dict, float]] = {  # model -> (model params, embedding regulariser)
    "lr": ({}, 0.0),
    "fm": ({}, 0.0),
    "deepfm": ({"hidden": [400, 400, 400], "dropout": 0.2, "batch_norm": True}, 0.05),
    # BARS DCNv2_frappe_x1 (tuner config 03, run 1, seed 2021): parallel, 4 full-rank cross layers
    "dcnv2": ({"structure": "parallel", "cross_layers": 4, "hidden": [400, 400, 400], "dropout": 0.4, "batch_norm": True}, 0.05),
    "autoint": ({}, 0.05),
    "autoint+": ({}, 0.1),
    "fgcnn": ({}, 0.05),
}
ANCHOR = ROOT.parent / "shared" / "anchors" / "fuxictr" / "run.py"
BACKEND = TrainSection().backend  # the embedding backend a user of the CLI gets


def matmul_gflops(dtype: torch.dtype) -> float:
    """The host's current matrix-multiply rate (a [40960 x 128] @ [128 x 384] product, as in AutoInt)."""
    a, w = torch.randn(40960, 128, dtype=dtype), torch.randn(128, 384, dtype=dtype)
    for _ in range(3):
        a @ w
    start = time.perf_counter()
    for _ in range(10):
        a @ w
    return 2 * 40960 * 128 * 384 * 10 / (time.perf_counter() - start) / 1e9


def ingest(out: Path, rank: bool = False) -> Path:
    """Encoded Frappe splits under out/frappe (made once with the pipeline's own ingest stage), and with `rank` the
    rank stage's output beside them."""
    target = out / "frappe"
    config = ROOT / "configs" / "frappe.yaml"
    command = [sys.executable, "-m", "pipeline", "run", "--config", str(config), "--data", str(DATA), "--out", str(target), "--no-tracking"]
    if not catalog.FEATURE_MAP.at(target).is_file():
        subprocess.run([*command, "--stages", "ingest"], check=True, cwd=ROOT)
    if rank and not catalog.RANKING.at(target).is_file():
        subprocess.run([*command, "--stages", "rank"], check=True, cwd=ROOT)
    return target / "ingest"


def build(model_name: str, params: dict, feature_map, ranks=None):
    """The model; "unified" is params["base"] over Unified Embedding's layout from the method's settings in `params`."""
    embedding = EmbeddingConfig(dim=10, backend=BACKEND)
    if model_name != "unified":
        return build_model(model_name, feature_map, embedding, params)
    own = {k: v for k, v in params.items() if k != "base" and k not in UnifiedSettings.model_fields}
    settings = UnifiedSettings(**{k: v for k, v in params.items() if k in UnifiedSettings.model_fields})
    layout = layout_for(settings, feature_map, ModelSpec(params["base"], own, embedding, 2021), ranks)
    return shared_model(params["base"], feature_map, embedding, layout, own)


def run_one(
    name: str, model_name: str, params: dict, regularizer: float, precision: str, data, max_epochs: int, ranks=None, seed: int = 2021
) -> dict:
    """Train one model with BARS settings (seed 2021, as BARS); its figures as a dict."""
    feature_map, train, valid, test = data
    torch.manual_seed(seed)
    model = build(model_name, params, feature_map, ranks)
    config = TrainConfig(embedding_regularizer=regularizer, precision=precision, max_epochs=max_epochs, seed=seed)
    started = time.perf_counter()
    result = fit(
        model,
        train,
        valid,
        config,
        on_epoch=lambda r: print(
            f"  {name} epoch {r.epoch}: valid AUC {r.valid_auc:.6f}, {r.train_samples_per_s:.0f} samples/s", flush=True
        ),
    )
    device = resolve_device(config.device)
    test_auc, test_logloss = evaluate(model, test, config.batch_size, device, resolve_precision(precision, device))
    return {
        "name": name,
        "model": model_name,
        "params_setting": params,
        "embedding_regularizer": regularizer,
        "precision": precision,
        "seed": seed,
        "autocast": str(resolve_precision(precision, device)),
        "backend": BACKEND,
        **train_report(model, result, test_auc, test_logloss),
        "wall_s": time.perf_counter() - started,
    }


def anchor_metrics(stdout: str) -> dict[str, float]:
    """The valid and test AUC and logloss that ../shared/anchors/fuxictr/run.py --full prints, as `valid_auc`,
    `test_logloss`, ...: FuxiCTR's `evaluate` returns a dict or an OrderedDict (2.3.10), of floats or numpy floats."""
    found = {}
    for split, body in re.findall(r"\b(valid|test) (?:OrderedDict\(\[|\{)([^\n]*)", stdout):
        values = dict(re.findall(r"'(\w+)'[,:]\s*(?:np\.float64\()?([-+\d.eE]+)", body))
        found |= {f"{split}_auc": float(values["AUC"]), f"{split}_logloss": float(values["logloss"])}
    return found


def fuxictr(python: str | None, work: Path, epochs: int | None, threads: int) -> dict | None:
    """FuxiCTR's AutoInt (../shared/anchors/fuxictr/run.py) run now on this host: the training samples/s of each of
    `epochs` epochs, or with `epochs` None its full run's valid and test AUC and logloss. None without `python`."""
    if not python:
        print("FuxiCTR anchor: not run (pass --fuxictr PYTHON or set FUXICTR_PYTHON; setup in ../shared/anchors/fuxictr/README.md)")
        return None
    command = [python, str(ANCHOR), str(work), "--threads", str(threads), *(["--epochs", str(epochs)] if epochs else ["--full"])]
    print(f"FuxiCTR anchor: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the FuxiCTR anchor failed (exit {done.returncode}): {(done.stderr or done.stdout)[-3000:]}")
    found: dict = {"wall_s": time.perf_counter() - started}
    rates = [float(x.replace(",", "")) for x in re.findall(r"epoch \d+: ([\d,]+) training samples/s", done.stdout)]
    if rates:
        found |= {"samples_per_s_by_epoch": rates, "samples_per_s": statistics.median(rates)}
    found |= anchor_metrics(done.stdout)
    if epochs is None and "test_auc" not in found:
        raise SystemExit(f"the FuxiCTR anchor printed no valid/test metrics: {done.stdout[-3000:]}")
    print(f"FuxiCTR anchor ({found['wall_s']:.0f} s): " + ", ".join(f"{k} {v}" for k, v in found.items() if k != "wall_s"), flush=True)
    return found


def throughput(data, epochs: int, host: dict, anchor: dict | None) -> None:
    """AutoInt training samples/s, fp32 and the default precision, each from a fresh model, against FuxiCTR's in the same
    sitting (fp32 is its default)."""
    rates = {}
    for precision in ("fp32", "auto"):
        r = run_one(f"autoint {precision}", "autoint", *SETTINGS["autoint"], precision, data, epochs)
        rates[precision] = r["train_samples_per_s"]
        against = (
            f", {r['train_samples_per_s'] / anchor['samples_per_s']:.2f}x FuxiCTR's {anchor['samples_per_s']:,.0f} (fp32, this sitting)"
            if anchor and "samples_per_s" in anchor
            else ""
        )
        print(
            f"AutoInt {precision} ({r['autocast'] if r['autocast'] != 'None' else 'fp32'}, backend {r['backend']}): "
            f"{r['train_samples_per_s']:,.0f} samples/s (median of {epochs} epochs){against}; valid AUC after {epochs} epochs "
            f"{r['valid_auc']:.6f}",
            flush=True,
        )
    print(
        f"host now: fp32 matmul {host['fp32_gflops']:.0f} GFLOPS, bf16 {host['bf16_gflops']:.0f} GFLOPS; "
        f"default/fp32 speed-up {rates['auto'] / rates['fp32']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lr,fm,deepfm,dcnv2,fgcnn,autoint,autoint+,unified")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--fp32-autoint", action="store_true", help="also train AutoInt in fp32 (the precision comparison)")
    parser.add_argument("--budgets", default="0.25,0.125", help="unified embedding budgets, as fractions of the per-field tables")
    parser.add_argument(
        "--layouts",
        default="1x1",
        help="unified embedding layouts to sweep, as TABLESxCHUNKS, f at the end for field vectors (e.g. 1x1,2x2,1x10f)",
    )
    parser.add_argument(
        "--unified-base", default="autoint", choices=["autoint", "autoint+", "deepfm", "fm"], help="model over the shared tables"
    )
    parser.add_argument(
        "--chunk-counts",
        default="uniform",
        choices=["uniform", "cardinality", "rank"],
        help="unified embedding chunks per feature: CHUNKS each, or 1..CHUNKS by vocabulary size or by the rank stage's order",
    )
    parser.add_argument(
        "--unified-regularizer", type=float, help="embedding regulariser of the unified runs (default: the base model's BARS setting)"
    )
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument(
        "--seeds", default="2021", help="seeds of weights and batch order; each but BARS' 2021 adds ' seed S' to the run's name"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "train")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument(
        "--throughput", type=int, metavar="EPOCHS", help="only time AutoInt for EPOCHS epochs in fp32 and the default precision, then exit"
    )
    parser.add_argument(
        "--fuxictr",
        default=os.environ.get("FUXICTR_PYTHON"),
        metavar="PYTHON",
        help="the anchor venv's interpreter: run FuxiCTR's AutoInt in the same sitting (default $FUXICTR_PYTHON)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results = {} if args.fresh or not results_file.is_file() else json.loads(results_file.read_text())
    # What a stored run depends on beyond its name: reused (and shown) only when the same.
    digest = settings_digest(
        precision=args.precision,
        max_epochs=args.max_epochs,
        threads=args.threads,
        chunk_counts=args.chunk_counts,
        unified_regularizer=args.unified_regularizer,
    )
    ingest_dir = ingest(args.out, rank=args.chunk_counts == "rank")
    feature_map = catalog.load_feature_map(ingest_dir)
    data = (feature_map, *(load_split(ingest_dir, split, feature_map, False) for split in ("train", "valid", "test")))
    per_field = sum(f.vocab_size for f in feature_map.fields) * 10
    host = {"fp32_gflops": matmul_gflops(torch.float32), "bf16_gflops": matmul_gflops(torch.bfloat16)}
    print(
        f"machine: {machine()}; torch threads {args.threads}; matmul fp32 {host['fp32_gflops']:.0f} GFLOPS, bf16 {host['bf16_gflops']:.0f} GFLOPS "
        f"({host['bf16_gflops'] / host['fp32_gflops']:.1f}x; precision auto takes {'bf16' if cpu_bf16_pays() else 'fp32'} on this CPU)"
    )

    if args.throughput:
        throughput(data, args.throughput, host, fuxictr(args.fuxictr, args.out / "fuxictr", args.throughput, args.threads))
        return
    jobs = []
    for name in args.models.split(","):
        if name == "unified":
            for fraction in (float(f) for f in args.budgets.split(",")):
                for layout in args.layouts.split(","):
                    field_vectors = layout.endswith("f")
                    tables, chunks = (int(x) for x in layout.removesuffix("f").split("x"))
                    base = args.unified_base
                    name = f"unified@{fraction:g}" + (f" {tables}t{chunks}c" if (tables, chunks) != (1, 1) else "")
                    name += " +field vectors" if field_vectors else ""
                    name += f" ({base})" if base != "autoint" else ""
                    base_params, regularizer = SETTINGS[base]
                    if args.unified_regularizer is not None:
                        regularizer = args.unified_regularizer
                        name += f" reg {regularizer:g}"
                    multiplex = {"budget": int(per_field * fraction), "tables": tables, "chunks": chunks, "field_vectors": field_vectors}
                    if args.chunk_counts != "uniform" and chunks > 1:
                        name += f" chunks by {args.chunk_counts}"
                        multiplex["chunk_counts"] = args.chunk_counts
                    jobs.append((name, "unified", {"base": base, **base_params, **multiplex}, regularizer, args.precision))
        else:
            jobs.append((name, name, *SETTINGS[name], args.precision))
    if args.fp32_autoint:
        jobs.append(("autoint fp32", "autoint", *SETTINGS["autoint"], "fp32"))
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(name if seed == 2021 else f"{name} seed {seed}", *job, seed) for seed in seeds for name, *job in jobs]
    trained_now = set()  # the anchor's full run is compared with these only: the same sitting
    for name, model_name, params, regularizer, precision, seed in jobs:
        if results.get(name, {}).get("digest") == digest:
            print(f"{name}: done before with these settings and code (test AUC {results[name]['test_auc']:.6f}); skipped")
            continue
        print(f"{name}: training", flush=True)
        ranks = (lambda: feature_ranks(ingest_dir.parent)) if params.get("chunk_counts") == "rank" else None
        run = run_one(name, model_name, params, regularizer, precision, data, args.max_epochs, ranks, seed)
        results[name] = {**run, "host": host, "digest": digest}
        trained_now.add(name)
        catalog.write_json(results_file, results)

    print(f"\nmachine: {machine()}; peak RSS {peak_rss_gib():.1f} GiB")
    print(
        "| model | valid AUC | valid logloss | test AUC | test logloss | BARS test AUC | params | embedding params | samples/s | epochs (best) | precision |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in (r for r in results.values() if r.get("digest") == digest):
        bars = BARS_TEST_AUC.get(r["model"] if not r["name"].startswith("unified") else "")
        print(
            f"| {r['name']} | {r['valid_auc']:.6f} | {r['valid_logloss']:.6f} | {r['test_auc']:.6f} | {r['test_logloss']:.6f} | "
            f"{bars if bars else '—'} | {r['params']:,} | {r['embedding_params']:,} | {r['train_samples_per_s']:,.0f} | "
            f"{r['epochs']} ({r['best_epoch']}) | {r['autocast'] if r['autocast'] != 'None' else 'fp32'} |"
        )
    autoint = [r for name, r in results.items() if r["model"] == "autoint" and name in trained_now]
    anchor = fuxictr(args.fuxictr, args.out / "fuxictr", None, args.threads) if autoint else None
    for r in autoint if anchor else []:
        print(
            f"AutoInt ({r['name']}, {r['autocast']}, backend {r.get('backend', '?')}) against FuxiCTR's full run in this sitting: "
            f"test AUC {r['test_auc']:.6f} vs {anchor['test_auc']:.6f} ({r['test_auc'] - anchor['test_auc']:+.6f}), "
            f"valid AUC {r['valid_auc']:.6f} vs {anchor['valid_auc']:.6f}; wall {r['wall_s']:.0f} s vs {anchor['wall_s']:.0f} s"
        )
    full = results.get("autoint")
    for r in results.values():
        if r["name"].startswith("unified") and full:
            base = results.get(r["params_setting"].get("base", "autoint"))  # the same model with per-field tables
            own = (
                f"; {r['embedding_params'] / base['embedding_params']:.3f} of {base['name']}'s, test AUC {r['test_auc'] - base['test_auc']:+.6f} against it"
                if base and base is not full
                else ""
            )
            print(
                f"{r['name']}: {r['embedding_params'] / full['embedding_params']:.3f} of AutoInt's embedding parameters, "
                f"test AUC {r['test_auc'] - full['test_auc']:+.6f} against it{own}"
            )


if __name__ == "__main__":
    main()
