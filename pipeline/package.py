"""A trained model packaged to score new raw data: weights, model spec, fitted encoder and feature map.

The train stage writes OUT/train/package/ and logs it to MLflow beside the
registered model; `python -m pipeline predict` scores a raw file with a
package from a local run directory, a `runs:/<run id>` URI or a
`models:/<name>/<version>` URI. Raw rows are read with the training run's
reader settings and joins, then encoded by the fitted encoder (values never
seen in training go to each field's OOV id).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featuremap import OOV_ID, FeatureMap
from methods import METHODS
from pipeline import catalog
from pipeline.assemble import gbdt_map
from pipeline.config import PipelineConfig
from pipeline.errors import UserError

PACKAGE = catalog.PACKAGE.name
SPEC = "model.json"
WEIGHTS = "model.pt"
ENCODER = "encoder"
GBDT = "gbdt"
DEEP = "deep"  # the deep model's key among a blend's weights
METHODS_DIR = "methods"


def write_package(
    directory: Path,
    model,
    applied,
    spec,
    cfg: PipelineConfig,
    ingest_dir: Path,
    feature_map: FeatureMap,
    methods: dict[str, dict],
    chosen: dict | None = None,
    boosters: dict | None = None,
    derivers: list | None = None,
    precision: str = "float32",
) -> None:
    """Write weights, spec (model, settings, reader config, each applied search method's entry, the chosen candidate),
    the fitted encoder and the boosters the chosen candidate scores with."""
    import torch

    directory.mkdir(parents=True)
    torch.save(model.state_dict(), directory / WEIGHTS)
    for method, state in derivers or []:  # what a deriving method needs to add its fields to raw rows
        (directory / METHODS_DIR / method.name).mkdir(parents=True)
        method.save(state, directory / METHODS_DIR / method.name)
    for name, fitted in (boosters or {}).items():
        (directory / GBDT).mkdir(exist_ok=True)
        fitted.kind.save(fitted.booster, directory / GBDT / f"{name}.{fitted.kind.suffix}")
    encoder_dir = directory / ENCODER
    shutil.copytree(ingest_dir / catalog.VOCABULARIES.name, encoder_dir / catalog.VOCABULARIES.name)
    for name in (catalog.ENCODER.name, catalog.FEATURE_MAP.name):
        shutil.copy2(ingest_dir / name, encoder_dir / name)
    package_spec = {
        "model": applied.name,
        "params": applied.params,
        "embedding": dataclasses.asdict(spec.embedding),
        "seed": spec.seed,
        "data": cfg.data.model_dump(mode="json", exclude={"path", "synthetic_rows", "synthetic_seed", "synthetic_kind"}),
        "schema": cfg.schema_.model_dump(mode="json"),
        "batch_size": cfg.train.batch_size,
        "precision": precision,  # the deep model's autocast in training (float32, bfloat16, float16): predict scores so
        "fields": [f.name for f in feature_map.fields],  # the model's fields (a ranking budget may keep fewer than encoded)
        "methods": methods,  # what each applied search method needs to rebuild the model's structure
        "chosen": chosen or {"name": applied.name, "kind": "deep", "gbdt": None, "weight": None},  # what predict scores with
    }
    catalog.write_json(directory / SPEC, package_spec)


def _packaged_methods(spec: dict) -> dict[str, dict]:
    """The package's method entries; older packages kept a method's under its own keys (each method's `legacy_entry`)."""
    entries = dict(spec.get("methods", {}))
    for name, method in METHODS.items():
        if name not in entries and (entry := method.legacy_entry(spec)) is not None:
            entries[name] = entry
    return entries


def find_package(reference: str, tracking_uri: str | None) -> Path:
    """A local package directory for `reference`: a run directory, a package directory or an MLflow URI."""
    if reference.startswith(("runs:/", "models:/")):
        from pipeline.tracking import download_package

        return download_package(reference, tracking_uri)
    path = Path(reference)
    for candidate in (path / "train" / PACKAGE, path / PACKAGE, path):
        if (candidate / SPEC).is_file():
            return candidate
    raise UserError(f"{reference}: no trained model package found (looked for train/{PACKAGE}/{SPEC}); run the train stage first")


def load_package(directory: Path):
    """(model in eval mode, encoder, feature map, spec, the ingest's feature map of its fields, the deriving methods and
    their states) from a package directory; a damaged or incomplete one (a file missing, cut short or edited) is a
    UserError."""
    try:
        return _load_package(directory)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # json, torch.load, the specs' fields: not a crash
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(
            f"{directory}: the model package is damaged or incomplete ({type(exc).__name__}: {first}); retrain it or fetch it again"
        ) from exc


def _load_package(directory: Path):
    import json

    import torch

    from features.encode import Encoder
    from methods.base import ModelSpec
    from models.embedding import EmbeddingConfig
    from pipeline.assemble import assemble

    spec = json.loads((directory / SPEC).read_text())
    feature_map = FeatureMap.load(directory / ENCODER / catalog.FEATURE_MAP.name)
    if spec.get("fields") is not None:
        keep = set(spec["fields"])
        feature_map = dataclasses.replace(feature_map, fields=tuple(f for f in feature_map.fields if f.name in keep))
    base_map, derivers = feature_map, []
    for name in _packaged_methods(spec):
        method = METHODS.get(name)
        if method is not None and method.derives:
            state = method.load(directory / METHODS_DIR / name)
            if state is None:
                raise UserError(f"{directory}: the package lacks {name}'s files ({METHODS_DIR}/{name}); retrain it")
            derivers.append((method, state))
            feature_map = method.derived_map(state, feature_map)
    embedding = {k: v for k, v in spec["embedding"].items() if k not in ("shared", "multiplex")}  # shared tables: a method's entry
    model_spec = ModelSpec(spec["model"], spec["params"], EmbeddingConfig(**embedding), spec.get("seed", 0))
    model = assemble(feature_map, model_spec, packaged=_packaged_methods(spec)).model
    try:
        model.load_state_dict(torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{directory}: the package's weights do not fit the model it describes ({first}); retrain it") from exc
    model.eval()
    return model, Encoder.load(directory / ENCODER), feature_map, spec, base_map, derivers


def score(directory: Path, data: Path, fmt: str | None, device_name: str = "auto") -> tuple[pl.DataFrame, dict[str, float]]:
    """Click probabilities for every row of the raw file `data` (with the label when the file has one), and metrics."""
    from sklearn.metrics import log_loss, roc_auc_score

    from features.ingest import read_for_scoring
    from models.batching import dense_fields, sparse_fields
    from models.data import InMemoryData
    from models.trainer import predict, resolve_device, resolve_precision
    from pipeline.params import ingest_params

    started = time.perf_counter()
    model, encoder, feature_map, spec, base_map, derivers = load_package(directory)
    data_section = {**spec["data"], "path": str(data), **({"format": fmt} if fmt else {})}
    try:
        cfg = PipelineConfig.model_validate({"data": data_section, "schema": spec["schema"]})
    except ValueError as exc:
        raise UserError(f"{directory / SPEC}: unreadable model spec ({str(exc).splitlines()[0]})") from exc
    # The fields training read as text (ids, lists) are read as text here too: rows whose ids look like numbers would
    # lose 0123's zero, and a list column without a separator in these rows would read as numbers.
    as_text = tuple(f.name for f in base_map.fields if f.name in encoder.vocabs and encoder.vocabs[f.name]["value"].dtype == pl.String)
    raw = read_for_scoring(data, ingest_params(cfg), as_text=as_text)
    try:
        if feature_map.label in raw.collect_schema():  # labels read as training read them, or a one-line error
            encoder.check_labels(raw, str(data))
        # Only the fields the package scores with: a column the run dropped (rank selection) need not be sent.
        encoded = encoder.transform(raw, require_label=False, fields={f.name for f in base_map.fields}).collect(engine="streaming")
    except pl.exceptions.ColumnNotFoundError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{data}: a feature the model was trained on is missing ({first}); give the same columns as training") from exc
    except pl.exceptions.PolarsError as exc:
        raise UserError(f"could not read the input {data}: {str(exc).strip().splitlines()[0]}") from exc
    if encoded.height == 0:
        raise UserError(f"{data}: no rows to score")
    infinite = [f.name for f in base_map.fields if f.value_column in encoded.columns and encoded[f.value_column].is_infinite().any()]
    if infinite:  # as ingest refuses them in valid and test: an infinite input would score as NaN
        raise UserError(
            f"{data}: column {infinite[0]!r} has infinite values (or values past float32's range once standardised); replace them"
        )
    numeric_as_value = spec["embedding"].get("numeric_as_value", False)
    columns: dict = {}
    for spec_field in sparse_fields(base_map, numeric_as_value):
        column = encoded[spec_field.column]
        if isinstance(column.dtype, pl.List):
            offsets = np.zeros(encoded.height + 1, dtype=np.int64)
            np.cumsum(column.list.len().fill_null(0).to_numpy(), out=offsets[1:])
            columns[spec_field.column] = (column.explode().drop_nulls().to_numpy(), offsets)
        else:
            columns[spec_field.column] = column.to_numpy()
    for spec_field in dense_fields(base_map, numeric_as_value):
        columns[spec_field.value_column] = encoded[spec_field.value_column].to_numpy()
    derived: dict = {}
    for method, state in derivers:  # the fields a search method derived, from the train tables it packaged
        derived |= method.derive(state, {**columns, **derived}, None)
    columns |= derived
    has_label = feature_map.label in encoded.columns
    labels = encoded[feature_map.label].to_numpy() if has_label else np.zeros(encoded.height, dtype=np.int8)
    rows = InMemoryData(columns, labels, feature_map, numeric_as_value)
    device = resolve_device(device_name)
    model.to(device)
    chosen = spec.get("chosen") or {"kind": "deep"}  # packages written before the run chose among candidates: the deep model
    # The parts it scores with and their weights: the blend's, or the one chosen model's.
    weights = blend_weights(chosen) or {DEEP if chosen["kind"] == "deep" else chosen["gbdt"]: 1.0}
    used = {name: w for name, w in weights.items() if w > 0}
    scored = {}
    if DEEP in used:
        scored[DEEP], _ = predict(
            model, rows.batches(spec["batch_size"]), device, resolve_precision(scoring_precision(spec, device), device)
        )
    if set(used) - {DEEP}:
        from features.tabular import tabular, tabular_columns
        from models.baselines import KINDS

        columns, categorical, dtype = tabular_columns(gbdt_map(feature_map, derivers))
        frame = encoded.with_columns(pl.Series(name, values) for name, values in derived.items()) if derived else encoded
        x = tabular(frame, columns, dtype)
        for name in set(used) - {DEEP}:
            kind = KINDS[name]
            scored[name] = kind.predict(kind.load(directory / GBDT / f"{name}.{kind.suffix}", columns, categorical), x)
    if len(used) == 1:
        probs = next(iter(scored.values()))
    else:
        from models.blend import blend

        probs = blend([scored[name] for name in used], list(used.values()))
    out = pl.DataFrame({"probability": probs.astype(np.float64)})
    metrics = {"rows": float(encoded.height), "seconds": time.perf_counter() - started}
    if has_label:
        out = out.with_columns(pl.Series(feature_map.label, labels))
        if 0 < labels.sum() < labels.size:
            metrics["auc"] = float(roc_auc_score(labels, probs))
            metrics["logloss"] = float(log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1]))
    oov = {f.name: float((encoded[f.column] == OOV_ID).mean()) for f in base_map.fields if not isinstance(encoded[f.column].dtype, pl.List)}
    metrics["oov_share_max"] = max(oov.values(), default=0.0)
    return out, metrics


def scoring_precision(spec: dict, device: Any) -> str:
    """The precision setting that scores as training did: its recorded autocast (float16 needs CUDA: float32 elsewhere);
    `auto` for packages from before it was recorded."""
    trained = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(spec.get("precision", ""), "auto")
    return "fp32" if trained == "fp16" and device.type != "cuda" else trained


def blend_weights(chosen: dict) -> dict[str, float]:
    """A blend entry's weight per part (DEEP: the deep model); packages before k-part blends kept the deep model's
    weight and one baseline. Empty for any other kind."""
    if chosen.get("kind") != "blend":
        return {}
    if chosen.get("weights") is not None:
        return dict(chosen["weights"])
    return {DEEP: chosen["weight"], chosen["gbdt"]: 1.0 - chosen["weight"]}


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def check_writable(path: Path) -> None:
    """A UserError now if the predictions cannot be written to `path` (its folder cannot be made, or written to)."""
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch()
        tmp.unlink()
    except OSError as exc:
        raise UserError(f"{path}: cannot write the predictions there ({exc.strerror or exc})") from exc


def write_predictions(frame: pl.DataFrame, path: Path) -> None:
    """Write predictions as parquet (or CSV for a .csv name) through a temporary file and a rename; a write that fails
    (a full disk) leaves neither. (`check_writable` says before any scoring whether the place can take them.)"""
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: could not write the predictions ({exc.strerror or exc})") from exc
    print(f"predict: {frame.height:,} rows -> {path}", file=sys.stderr)


def probabilities(directory: Path, rows: Path) -> np.ndarray:
    """Click probabilities of the raw rows in parquet file `rows` from the package in `directory` (its chosen kind)."""
    scored, _ = score(directory, rows, "parquet", "cpu")
    return scored["probability"].to_numpy()
