"""GPU training throughput of AutoInt (and other models) on Frappe-shaped batches, in one short run.

Made for the device tool (a lent GPU host with torch but without torchrec,
fbgemm, polars or scikit-learn): it needs only torch, numpy and this
project's models/ and featuremap/ packages, uses the CLI's default embedding
backend (torchrec) where it imports and says so when it falls back to plain
torch (a host without fbgemm_gpu), and builds random batches with Frappe_x1's 10 fields and
vocabulary sizes (throughput does not depend on the values). For each model
and precision it times `--steps` training steps (Adam, batch 4096, BARS
AutoInt settings) after `--warmup` steps, with batches already on the device
("compute") and copied from pinned host memory each step ("with copies").
`--anchor` takes FuxiCTR's AutoInt training samples/s measured on the same
host in the same sitting (../shared/anchors/fuxictr/run.py) and prints the ratio.

    python bench/gpu_bench.py --device cuda --out $OUT/gpu_bench.json
    python bench/gpu_bench.py --device cpu --steps 3 --warmup 1     # the CPU rehearsal
    python bench/gpu_bench.py --device cpu --attention-ab 6 --steps 3  # AutoInt's attention paths, interleaved, per precision
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
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


def batches(feature_map: FeatureMap, count: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        cols = {f.name: rng.integers(FIRST_VALUE_ID, f.vocab_size, size) for f in feature_map.fields}
        out.append(make_batch(cols, rng.integers(0, 2, size).astype(np.float32), feature_map))
    return out


def train_step(model, optimizer, scaler, batch, dtype: torch.dtype | None = None) -> None:
    """One Adam step on the BCE loss plus BARS AutoInt's embedding regulariser (0.05 / 2), under autocast to `dtype`."""
    with torch.autocast(batch.label.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(batch)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch.label)
    loss = loss + 0.025 * sum(w.pow(2).sum() for w in model.regularized_tables())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def measure(model_name: str, precision: str, device: torch.device, args: argparse.Namespace) -> dict:
    feature_map = frappe_map()
    torch.manual_seed(2021)
    model = build_model(model_name, feature_map, EmbeddingConfig(dim=10, backend=args.backend)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    host = batches(feature_map, 8, args.batch, seed=0)
    if device.type == "cuda":
        host = [type(b)(b.keys, b.values.pin_memory(), b.lengths.pin_memory(), b.dense.pin_memory(), b.label.pin_memory()) for b in host]
    resident = [b.to(device) for b in host]

    def step(batch) -> None:
        train_step(model, optimizer, scaler, batch, dtype)

    def timed(source, copy: bool) -> float:
        for i in range(args.warmup):
            step(
                source[i % len(source)].to(
                    device,
                )
                if copy
                else source[i % len(source)]
            )
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for i in range(args.steps):
            batch = source[i % len(source)]
            step(batch.to(device) if copy else batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.steps * args.batch / (time.perf_counter() - started)

    compute = timed(resident, copy=False)
    with_copies = timed(host, copy=True)
    return {
        "model": model_name,
        "precision": precision,
        "backend": args.backend,
        "samples_per_s_compute": compute,
        "samples_per_s_with_copies": with_copies,
        "params": sum(p.numel() for p in model.parameters()),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


ATTENTION_PATHS = {  # name: (layers.BLOCK_ATTENTION_MAX, layers.FUSED_ATTENTION)
    "fused": (None, True),  # the block path with its hand-written backward (the default in fp32 and under bf16 autocast)
    "block": (None, False),  # the block path through autograd
    "per_head": (0, False),  # per-head einsums
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
    defaults = layers.BLOCK_ATTENTION_MAX, layers.FUSED_ATTENTION
    for precision in args.precisions.split(","):
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        rates: dict[str, list[float]] = {name: [] for name in ATTENTION_PATHS}
        try:
            for _ in range(args.attention_ab):
                for name, (limit, fused) in ATTENTION_PATHS.items():
                    layers.BLOCK_ATTENTION_MAX = defaults[0] if limit is None else limit
                    layers.FUSED_ATTENTION = fused
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
            layers.BLOCK_ATTENTION_MAX, layers.FUSED_ATTENTION = defaults
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
    parser.add_argument("--out", type=Path)
    parser.add_argument("--attention-ab", type=int, metavar="ROUNDS", help="only compare AutoInt's attention paths, interleaved, and exit")
    parser.add_argument("--backend", choices=["torch", "torchrec"], help="embedding backend (default: torchrec where it imports)")
    parser.add_argument(
        "--anchor",
        type=float,
        metavar="SAMPLES_PER_S",
        help="FuxiCTR's AutoInt training samples/s measured on this host in this sitting: print AutoInt's ratio to it",
    )
    args = parser.parse_args()
    backend, said = default_backend() if args.backend is None else (args.backend, args.backend)
    args.backend = backend
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        sys.exit(2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device: {name}; torch {torch.__version__}; python {platform.python_version()}; batch {args.batch}, {args.steps} timed steps; "
        f"backend {said}"
    )
    if args.attention_ab:
        ab = attention_ab(device, args)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "attention_ab": ab}, indent=2))
        return
    rows = []
    for model_name in args.models.split(","):
        for precision in args.precisions.split(","):
            row = measure(model_name, precision, device, args)
            rows.append(row)
            print(
                f"{model_name:9s} {precision}: {row['samples_per_s_compute']:>12,.0f} samples/s on-device batches, "
                f"{row['samples_per_s_with_copies']:>12,.0f} with host copies"
                + (
                    f" ({row['samples_per_s_compute'] / args.anchor:.2f}x FuxiCTR's {args.anchor:,.0f}, this host and sitting)"
                    if model_name == "autoint" and args.anchor
                    else ""
                ),
                flush=True,
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "backend": backend, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
