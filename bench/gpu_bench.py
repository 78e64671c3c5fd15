"""GPU training throughput of AutoInt (and other models) on Frappe-shaped batches, in one short run.

Made for the device tool (a lent GPU host with torch but without torchrec,
fbgemm or polars): it needs only torch, numpy and this project's models/ and
featuremap/ packages (`--trainer` also scikit-learn and pydantic), uses the CLI's default embedding
backend (torchrec) where it imports and says so when it falls back to plain
torch (a host without fbgemm_gpu), and builds random batches with Frappe_x1's 10 fields and
vocabulary sizes (throughput does not depend on the values). For each model
and precision it times `--steps` training steps (Adam, batch 4096, BARS
AutoInt settings) after `--warmup` steps, with batches already on the device
("compute") and copied from pinned host memory each step ("with copies"), in
`--rounds` interleaved rounds over every model and the anchor (medians
printed, each round kept in the JSON).
`--fuxictr DIR` times FuxiCTR's own AutoInt in the same process, on the same
device and batches: the model-zoo file of ../shared/anchors/fuxictr (DIR) on
the `fuxictr` package (2.3.10, importable), BARS settings, its own
`train_step` (Adam, embedding regulariser 0.05, gradient clipping at 10) and
the per-batch loss read of its `train_epoch`, fp32 (its only precision); our
step mirrors models/trainer.py (fused Adam, the loss read each step). The
ratios printed are ours over it, fp32 against fp32 and our default precision
(bf16 on a CUDA GPU) against its fp32. FuxiCTR's dataset-building package
(polars, Ray, h5py) is not imported: batches are given, and the GPU host has
none of them. Without `--fuxictr` no ratio is printed (a figure typed in
could not be from this sitting: the `--anchor SAMPLES_PER_S` flag is gone).

    python bench/gpu_bench.py --device cuda --out $OUT/gpu_bench.json --fuxictr ../shared/anchors/fuxictr
    python bench/gpu_bench.py --device cpu --steps 3 --warmup 1     # the CPU rehearsal
    python bench/gpu_bench.py --device cpu --attention-ab 6 --steps 3  # AutoInt's attention paths, interleaved, per precision
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from featuremap import FIRST_VALUE_ID, FeatureMap, FieldSpec
from models.batching import make_batch
from models.embedding import EmbeddingConfig
from models.registry import build_model

# Frappe_x1 fields and their value counts (5,382 features in all).
FRAPPE = {
    "user": 957,
    "item": 4082,
    "daytime": 7,
    "weekday": 7,
    "isweekend": 2,
    "homework": 3,
    "cost": 2,
    "weather": 9,
    "country": 80,
    "city": 233,
}


def default_backend() -> tuple[str, str]:
    """The CLI's default embedding backend, torchrec, where it imports here; plain torch otherwise, with the reason."""
    try:
        import torchrec  # noqa: F401
    except Exception as exc:  # torchrec without a loadable fbgemm_gpu raises several kinds
        return "torch", f"torch (torchrec does not import here: {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
    return "torchrec", "torchrec (the CLI's default)"


def frappe_map() -> FeatureMap:
    fields = tuple(FieldSpec(name=n, kind="categorical", column=n, vocab_size=FIRST_VALUE_ID + v) for n, v in FRAPPE.items())
    return FeatureMap(label="label", fields=fields)


def random_ids(feature_map: FeatureMap, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Uniform value ids of every field (no padding, no OOV)."""
    return {f.name: rng.integers(FIRST_VALUE_ID, f.vocab_size, rows) for f in feature_map.fields}


def batches(feature_map: FeatureMap, count: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        cols = random_ids(feature_map, size, rng)
        out.append(make_batch(cols, rng.integers(0, 2, size).astype(np.float32), feature_map))
    return out


def train_step(model, optimizer, scaler, batch, dtype: torch.dtype | None = None) -> torch.Tensor:
    """One Adam step on the BCE loss plus BARS AutoInt's embedding regulariser (0.05 / 2), under autocast to `dtype`;
    the loss, not read back (the caller decides when: a read is a host sync on a GPU)."""
    with torch.autocast(batch.label.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(batch)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch.label)
    loss = loss + 0.025 * sum(w.pow(2).sum() for w in model.regularized_tables())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def timed(step, source, device: torch.device, copy, args: argparse.Namespace) -> float:
    """Training samples/s of `step` over `args.steps` batches of `source` after `args.warmup`, each batch passed
    through `copy` first (the host-to-device copy, or nothing for resident batches)."""
    for i in range(args.warmup):
        step(copy(source[i % len(source)]))
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(args.steps):
        step(copy(source[i % len(source)]))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - started)


@dataclass
class Runner:
    """One trainer to time: its identity (`row`), its step and its batches, on the device and on the host."""

    row: dict
    step: Callable
    resident: list
    host: list
    copy: Callable


def ours(model_name: str, precision: str, device: torch.device, args: argparse.Namespace, loss_read: str = "step") -> Runner:
    """Our `model_name` in `precision`; `loss_read` "step" reads the loss back every step as models/trainer.py does,
    "epoch" sums it on the device (read once at the end of an epoch)."""
    feature_map = frappe_map()
    torch.manual_seed(2021)
    model = build_model(model_name, feature_map, EmbeddingConfig(dim=10, backend=args.backend)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as models/trainer.py
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    host = batches(feature_map, 8, args.batch, seed=0)
    if device.type == "cuda":
        host = [type(b)(b.keys, b.values.pin_memory(), b.lengths.pin_memory(), b.dense.pin_memory(), b.label.pin_memory()) for b in host]

    running = torch.zeros((), device=device)

    def step(batch) -> None:
        nonlocal running
        loss = train_step(model, optimizer, scaler, batch, dtype)
        if loss_read == "step":
            float(loss)
        else:
            running = running + loss

    row = {
        "model": model_name,
        "precision": precision,
        "backend": args.backend,
        "loss_read": loss_read,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return Runner(row, step, [b.to(device) for b in host], host, lambda b: b.to(device))


def measure(runners: list[Runner], device: torch.device, args: argparse.Namespace) -> list[dict]:
    """Each runner's samples/s, on-device batches and with host copies, over `args.rounds` interleaved rounds (every
    runner once per round, so that drift on the host hits them alike); the median and every round's figure. On a
    GPU also each runner's peak memory (all runners' weights stay resident: a few MB)."""
    rounds: list[dict[str, list[float]]] = [{"compute": [], "with_copies": []} for _ in runners]
    peaks = [0.0 for _ in runners]
    for _ in range(args.rounds):
        for i, runner in enumerate(runners):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            rounds[i]["compute"].append(timed(runner.step, runner.resident, device, lambda b: b, args))
            rounds[i]["with_copies"].append(timed(runner.step, runner.host, device, runner.copy, args))
            if device.type == "cuda":
                peaks[i] = max(peaks[i], torch.cuda.max_memory_allocated(device) / 2**30)
    return [
        {
            **runner.row,
            "samples_per_s_compute": float(np.median(found["compute"])),
            "samples_per_s_with_copies": float(np.median(found["with_copies"])),
            "rounds": found,
            "peak_memory_gib": peak if device.type == "cuda" else None,
        }
        for runner, found, peak in zip(runners, rounds, peaks, strict=True)
    ]


def profile(runner: Runner, device: torch.device, args: argparse.Namespace) -> None:
    """torch.profiler over `args.profile` steps of `runner` on resident batches: wall time per step, the device's busy
    time per step, and the operators that take the most host and device time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    for i in range(args.warmup):
        runner.step(runner.resident[i % len(runner.resident)])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with profiler(activities=activities) as prof:
        for i in range(args.profile):
            runner.step(runner.resident[i % len(runner.resident)])
        if device.type == "cuda":
            torch.cuda.synchronize()
    wall = (time.perf_counter() - started) / args.profile
    events = prof.key_averages()
    on_device = [e for e in events if e.device_type.name == "CUDA"]  # kernels and copies (operators count them again)
    busy = sum(e.self_device_time_total for e in on_device) / args.profile / 1e3 if device.type == "cuda" else float("nan")
    kernels = sum(e.count for e in on_device) / args.profile
    print(f"profile {runner.row}: {wall * 1e3:.2f} ms a step (profiled), device busy {busy:.2f} ms, {kernels:.0f} kernels a step")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=50))
    if device.type == "cuda":
        print(events.table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=50))


def load_fuxictr_autoint(anchor: Path) -> type:
    """FuxiCTR's AutoInt class from the anchor folder's model-zoo `src/`, on the importable `fuxictr` package.

    Its layers import FuxiCTR's dataset-building package (polars, Ray, h5py) for pretrained embeddings, which the
    BARS AutoInt does not use: that package is registered as an empty one whose `load_pretrain_emb` raises. A
    missing polars (imported by fuxictr.metrics for grouped metrics, which training never calls) is an empty module
    while the anchor imports, and taken out again after (scikit-learn's input checks look for polars in
    `sys.modules`). Model, layers, loss, regulariser, optimizer and train step stay FuxiCTR's own code.
    """
    if importlib.util.find_spec("fuxictr") is None:
        sys.exit(f"error: --fuxictr needs the fuxictr package (2.3.10) importable; setup in {anchor / 'README.md'}")

    def refuse(*_args, **_kwargs):
        raise RuntimeError("pretrained embeddings are not part of the BARS AutoInt anchor")

    preprocess = types.ModuleType("fuxictr.preprocess")
    preprocess.__path__ = []
    tokenizer = types.ModuleType("fuxictr.preprocess.tokenizer")
    tokenizer.load_pretrain_emb = refuse
    sys.modules.setdefault("fuxictr.preprocess", preprocess)
    sys.modules.setdefault("fuxictr.preprocess.tokenizer", tokenizer)
    no_polars = importlib.util.find_spec("polars") is None
    if no_polars:
        sys.modules["polars"] = types.ModuleType("polars")
    spec = importlib.util.spec_from_file_location(
        "fuxictr_anchor_zoo", anchor / "src" / "__init__.py", submodule_search_locations=[str(anchor / "src")]
    )
    zoo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = zoo
    try:
        spec.loader.exec_module(zoo)
    finally:
        if no_polars:
            del sys.modules["polars"]
    return zoo.AutoInt


def fuxictr_runner(anchor: Path, device: torch.device, args: argparse.Namespace) -> Runner:
    """FuxiCTR's AutoInt training samples/s with the BARS Frappe_x1 settings of ../shared/anchors/fuxictr/run.py, on
    batches of the same shape and vocabularies as `measure`'s: its `train_step` plus the loss read its `train_epoch`
    does per batch; batches resident on the device, and host batches that its `get_inputs` copies."""
    autoint = load_fuxictr_autoint(anchor)
    from fuxictr.features import FeatureMap as FuxiFeatureMap

    work = Path(tempfile.mkdtemp(prefix="fuxictr-anchor-"))
    # FuxiCTR's tokenizer adds padding (index 0) and OOV to each field's values.
    features = [{name: {"source": "", "type": "categorical", "padding_idx": 0, "vocab_size": count + 2}} for name, count in FRAPPE.items()]
    (work / "feature_map.json").write_text(json.dumps({"dataset_id": "frappe_x1", "labels": ["label"], "features": features}))
    params = dict(
        model_id="AutoInt_frappe_x1", gpu=(device.index or 0) if device.type == "cuda" else -1, model_root=str(work) + "/", verbose=0,
        metrics=["logloss", "AUC"], task="binary_classification", optimizer="adam", loss="binary_crossentropy",
        learning_rate=1e-3, embedding_regularizer=0.05, net_regularizer=0, embedding_dim=10, dnn_hidden_units=[],
        net_dropout=0, num_heads=4, attention_layers=6, attention_dim=128, use_residual=True, batch_norm=False,
        layer_norm=False, use_scale=False, use_wide=False,
    )  # fmt: skip
    feature_map = FuxiFeatureMap("frappe_x1", str(work))
    feature_map.load(str(work / "feature_map.json"), params)
    torch.manual_seed(2021)
    model = autoint(feature_map, **params)
    model._max_gradient_norm = 10.0  # what its fit() sets before training
    model.train()
    rng = np.random.default_rng(0)
    host = []
    for _ in range(8):
        batch = {name: torch.from_numpy(rng.integers(1, count + 1, args.batch)) for name, count in FRAPPE.items()}
        batch["label"] = torch.from_numpy(rng.integers(0, 2, args.batch).astype(np.float32))
        host.append({k: v.pin_memory() for k, v in batch.items()} if device.type == "cuda" else batch)
    resident = [{k: v.to(device) for k, v in b.items()} for b in host]

    def step(batch) -> None:
        model.train_step(batch).item()

    row = {"model": "fuxictr-autoint", "precision": "fp32", "backend": "fuxictr", "params": sum(p.numel() for p in model.parameters())}
    return Runner(row, step, resident, host, lambda b: b)  # its get_inputs copies host batches to the device


def planted_split(feature_map: FeatureMap, rows: int, seed: int, effects: dict[str, np.ndarray]):
    """Frappe-shaped rows whose labels follow a logistic of per-value effects (`effects`, one array per field)."""
    from models.data import InMemoryData

    rng = np.random.default_rng(seed)
    columns = random_ids(feature_map, rows, rng)
    logit = sum(effects[name][ids] for name, ids in columns.items())
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return InMemoryData(columns, label, feature_map, numeric_as_value=False)


def trainer_check(device: torch.device, args: argparse.Namespace) -> dict:
    """The pipeline's own training loop (models/trainer.fit: early stopping, precision rule, fused Adam, evaluation)
    on `device` with AutoInt and the run's backend, on planted-signal Frappe-shaped splits; the valid AUC it reaches
    beside the planted logits' own AUC (the best any model can do on those rows)."""
    from sklearn.metrics import roc_auc_score

    from models.settings import TrainConfig
    from models.trainer import fit, resolve_precision

    feature_map = frappe_map()
    rng = np.random.default_rng(7)
    effects = {f.name: rng.normal(0, 0.6, f.vocab_size) for f in feature_map.fields}
    train = planted_split(feature_map, args.trainer_rows, 1, effects)
    valid = planted_split(feature_map, min(args.trainer_rows, 100_000), 2, effects)
    oracle = float(roc_auc_score(valid.label, sum(effects[n][ids] for n, ids in valid.columns.items())))
    config = TrainConfig(device=str(device), max_epochs=args.trainer_epochs)
    torch.manual_seed(2021)
    model = build_model("autoint", feature_map, EmbeddingConfig(dim=10, backend=args.backend))
    result = fit(model, train, valid, config)
    found = {
        "device": str(device),
        "precision": {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[resolve_precision(config.precision, device)],
        "epochs": [{"epoch": r.epoch, "valid_auc": r.valid_auc, "samples_per_s": r.train_samples_per_s} for r in result.history],
        "best_valid_auc": result.best_valid_auc,
        "planted_auc": oracle,
    }
    print(
        f"trainer on {device} ({found['precision']}, backend {args.backend}): best valid AUC {result.best_valid_auc:.4f} "
        f"(planted logits {oracle:.4f}); epochs' samples/s " + ", ".join(f"{r.train_samples_per_s:,.0f}" for r in result.history),
        flush=True,
    )
    return found


ATTENTION_PATHS = {  # name: (layers.BLOCK_ATTENTION_MAX, layers.FUSED_ATTENTION, layers.CPU_KERNEL)
    "kernel": (None, True, True),  # the C++ per-head kernel (fp32 on the CPU, where it builds: the default there)
    "fused": (None, True, False),  # the block path with its hand-written backward (the default under bf16 autocast)
    "block": (None, False, False),  # the block path through autograd
    "per_head": (0, False, False),  # per-head einsums
}


def attention_ab(device: torch.device, args: argparse.Namespace) -> dict:
    """AutoInt training samples/s on each attention path (`ATTENTION_PATHS`) in each of `--precisions`, interleaved in
    one process (rounds of `--steps` steps each way on the same model), so host noise hits them alike."""
    from models import layers

    feature_map = frappe_map()
    torch.manual_seed(2021)
    model = build_model("autoint", feature_map, EmbeddingConfig(dim=10, backend="torch")).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    data = [b.to(device) for b in batches(feature_map, 4, args.batch, seed=0)]
    found = {}
    defaults = layers.BLOCK_ATTENTION_MAX, layers.FUSED_ATTENTION, layers.CPU_KERNEL
    for precision in args.precisions.split(","):
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        rates: dict[str, list[float]] = {name: [] for name in ATTENTION_PATHS}
        try:
            for _ in range(args.attention_ab):
                for name, (limit, fused, kernel) in ATTENTION_PATHS.items():
                    layers.BLOCK_ATTENTION_MAX = defaults[0] if limit is None else limit
                    layers.FUSED_ATTENTION, layers.CPU_KERNEL = fused, kernel
                    train_step(model, optimizer, scaler, data[0], dtype)  # warm-up after the switch
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    started = time.perf_counter()
                    for i in range(args.steps):
                        train_step(model, optimizer, scaler, data[i % len(data)], dtype)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    rates[name].append(args.steps * args.batch / (time.perf_counter() - started))
        finally:
            layers.BLOCK_ATTENTION_MAX, layers.FUSED_ATTENTION, layers.CPU_KERNEL = defaults
        medians = {name: float(np.median(r)) for name, r in rates.items()}
        base = medians["per_head"]
        print(
            f"AutoInt {precision}, {args.attention_ab} interleaved rounds of {args.steps} steps (median samples/s): "
            + ", ".join(f"{name} {rate:,.0f} ({rate / base:.2f}x per_head)" for name, rate in medians.items()),
            flush=True,
        )
        found[precision] = {"rounds": rates, "median": medians}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="autoint,autoint+,deepfm,fgcnn")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--loss-read",
        default="step",
        help="when our step reads the loss back: step (as models/trainer.py), epoch (summed on the device), or step,epoch (both, interleaved)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="STEPS",
        help="print torch.profiler tables over this many steps of the anchor and our first model first",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all models (and the anchor); medians printed")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--attention-ab", type=int, metavar="ROUNDS", help="only compare AutoInt's attention paths, interleaved, and exit")
    parser.add_argument("--backend", choices=["torch", "torchrec"], help="embedding backend (default: torchrec where it imports)")
    parser.add_argument(
        "--fuxictr",
        type=Path,
        metavar="DIR",
        help="the FuxiCTR anchor folder (../shared/anchors/fuxictr): time its AutoInt here first and print AutoInt's ratios to it",
    )
    parser.add_argument("--trainer", action="store_true", help="also run the pipeline's training loop on the device (planted-signal data)")
    parser.add_argument("--trainer-rows", type=int, default=1_000_000, help="train rows of --trainer's split")
    parser.add_argument("--trainer-epochs", type=int, default=3, help="most epochs of --trainer")
    args = parser.parse_args()
    if not set(args.loss_read.split(",")) <= {"step", "epoch"}:
        parser.error(f"--loss-read takes step, epoch or step,epoch, not {args.loss_read!r}")
    backend, said = default_backend() if args.backend is None else (args.backend, args.backend)
    args.backend = backend
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        sys.exit(2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    cpu = ""
    if device.type == "cpu":  # as models/trainer.fit does on the CPU: the allocator setting, the kernel built before timing
        from models import kernels

        built, retained = kernels.prepare_cpu_training(attention=True)
        cpu = f"; attention kernel {'built' if built else 'not available'}, freed memory {'kept' if retained else 'returned'}"
    print(
        f"device: {name}; torch {torch.__version__}; python {platform.python_version()}; batch {args.batch}, {args.steps} timed steps; "
        f"backend {said}{cpu}"
    )
    if args.attention_ab:
        ab = attention_ab(device, args)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "attention_ab": ab}, indent=2))
        return
    runners = [fuxictr_runner(args.fuxictr, device, args)] if args.fuxictr else []
    runners += [
        ours(m, precision, device, args, read)
        for m in args.models.split(",")
        for precision in args.precisions.split(",")
        for read in args.loss_read.split(",")
    ]
    if args.profile:  # the anchor's step, if any, and our first
        for runner in runners[: 2 if args.fuxictr else 1]:
            profile(runner, device, args)
    rows = measure(runners, device, args)
    anchor = rows.pop(0) if args.fuxictr else None
    if anchor:
        print(
            f"FuxiCTR AutoInt fp32: {anchor['samples_per_s_compute']:>12,.0f} samples/s on-device batches, "
            f"{anchor['samples_per_s_with_copies']:>12,.0f} with host copies (its own train_step, this process)",
            flush=True,
        )
    for row in rows:
        ratio = ""
        if row["model"] == "autoint" and anchor:
            ratio = (
                f" ({row['samples_per_s_compute'] / anchor['samples_per_s_compute']:.2f}x FuxiCTR fp32 on-device, "
                f"{row['samples_per_s_with_copies'] / anchor['samples_per_s_with_copies']:.2f}x with copies, same rounds)"
            )
        print(
            f"{row['model']:9s} {row['precision']}{'' if args.loss_read == 'step' else ', loss read each ' + row['loss_read']}: "
            f"{row['samples_per_s_compute']:>12,.0f} samples/s on-device batches, "
            f"{row['samples_per_s_with_copies']:>12,.0f} with host copies{ratio}",
            flush=True,
        )
    trainer = trainer_check(device, args) if args.trainer else None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        found = {"device": name, "torch": torch.__version__, "backend": backend, "rows": rows, "anchor": anchor, "trainer": trainer}
        args.out.write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
