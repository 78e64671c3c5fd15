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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featuremap import OOV_ID, FeatureMap
from methods import METHODS
from models.metrics import metrics_of
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


# Rows scored at a time: the raw rows are encoded and scored in chunks of about this many rows (rounded to whole
# batches, so that the deep model's batches are those of one pass), and the predictions written as each is done,
# so memory stays flat whatever the input's size (4.2 M rows at once peaked at 5.9 GB; bench/RESULTS.md, "Scoring in chunks").
SCORE_ROWS = 1 << 20
PROBABILITY = "probability"


class Scoring:
    """The predictions of a raw file's rows, chunk by chunk: iterate for frames of `keep` (the input's columns to carry,
    e.g. a request id), `probability` and, when the file has it, the label; `metrics` is complete once the last chunk
    is out (rows, seconds, and with labels AUC and logloss; the largest share of values unseen in train)."""

    def __init__(
        self, directory: Path, data: Path, fmt: str | None, device_name: str = "auto", keep: tuple[str, ...] = (), rows: int | None = None
    ) -> None:
        from features.ingest import read_for_scoring
        from models.trainer import resolve_device, resolve_precision
        from pipeline.params import ingest_params

        self.started = time.perf_counter()
        self.model, self.encoder, self.feature_map, self.spec, self.base_map, self.derivers = load_package(directory)
        self.directory, self.data = directory, data
        batch = self.spec["batch_size"]  # whole batches a chunk: the deep model sees the batches of one pass
        self.rows = batch * max(1, round((rows or SCORE_ROWS) / batch))
        data_section = {**self.spec["data"], "path": str(data), **({"format": fmt} if fmt else {})}
        try:
            cfg = PipelineConfig.model_validate({"data": data_section, "schema": self.spec["schema"]})
        except ValueError as exc:
            raise UserError(f"{directory / SPEC}: unreadable model spec ({str(exc).splitlines()[0]})") from exc
        label, keep = self.feature_map.label, tuple(dict.fromkeys(keep))  # a column named twice is kept once
        if PROBABILITY in keep:
            raise UserError(f"--keep {PROBABILITY}: the predictions have that column already; keep other columns")
        # The fields training read as text (ids, lists) are read as text here too: rows whose ids look like numbers
        # would lose 0123's zero, and a list column without a separator in these rows would read as numbers.
        # A kept column that is no feature is copied as the file writes it: read as text (an id 00123 keeps its zeros).
        vocabs, fields = self.encoder.vocabs, {f.name for f in self.base_map.fields}
        as_text = tuple(f.name for f in self.base_map.fields if f.name in vocabs and vocabs[f.name]["value"].dtype == pl.String)
        as_text += tuple(name for name in keep if name not in fields)
        raw = read_for_scoring(data, ingest_params(cfg), as_text=as_text)
        try:
            names = raw.collect_schema().names()
            missing = [name for name in keep if name not in names]
            if missing:
                raise UserError(f"{data}: no column {missing[0]!r} to keep (--keep); the file has {', '.join(names[:12])}")
            self.has_label = label in names
            if self.has_label and label in keep:  # predictions carry it already, as the 0/1 training read
                raise UserError(f"--keep {label}: the predictions have the label already (as 0/1); keep other columns")
            if self.has_label:  # labels read as training read them, or a one-line error
                self.encoder.check_labels(raw, str(data))
            raw = raw.with_columns(pl.col(name).alias(_KEPT + name) for name in keep)
            # Only the fields the package scores with: a column the run dropped (rank selection) need not be sent.
            kept = [_KEPT + name for name in keep]
            self.encoded = self.encoder.transform(raw, require_label=False, fields=fields, passthrough=kept)
        except pl.exceptions.PolarsError as exc:
            raise _input_error(data, exc) from exc
        self.keep = keep
        schema = self.encoded.collect_schema()
        self.kept_types = {name: schema[_KEPT + name] for name in keep}
        self.device = resolve_device(device_name)
        self.model.to(self.device)
        self.precision = resolve_precision(scoring_precision(self.spec, self.device), self.device)
        chosen = self.spec.get("chosen") or {"kind": "deep"}  # packages before the run chose among candidates: deep
        # The parts it scores with and their weights: the blend's, or the one chosen model's.
        weights = blend_weights(chosen) or {DEEP if chosen["kind"] == "deep" else chosen["gbdt"]: 1.0}
        self.used = {name: w for name, w in weights.items() if w > 0}
        self.boosters = self._boosters()
        self.metrics: dict[str, float] = {}

    def _boosters(self) -> dict[str, tuple[Any, Any]]:
        from models.baselines import KINDS

        if not set(self.used) - {DEEP}:
            return {}
        from features.tabular import tabular_columns

        self.tabular = tabular_columns(gbdt_map(self.feature_map, self.derivers))
        columns, categorical, _ = self.tabular
        boosters = {}
        for name in set(self.used) - {DEEP}:
            kind = KINDS[name]
            boosters[name] = (kind, kind.load(self.directory / GBDT / f"{name}.{kind.suffix}", columns, categorical))
        return boosters

    def __iter__(self) -> Iterator[pl.DataFrame]:
        rows = 0
        labels, probs = [], []
        oov = {f.name: 0 for f in self.base_map.fields}
        for chunk in self._chunks():
            scored = self._score(chunk)
            rows += chunk.height
            for f in self.base_map.fields:
                if not isinstance(chunk[f.column].dtype, pl.List):
                    oov[f.name] += int((chunk[f.column] == OOV_ID).sum())
            kept = [chunk[_KEPT + name].alias(name) for name in self.keep]
            out = pl.DataFrame([*kept, pl.Series(PROBABILITY, scored.astype(np.float64))])
            if self.has_label:
                label = chunk[self.feature_map.label]
                out = out.with_columns(label)
                labels.append(label.to_numpy())
                probs.append(scored)
            yield out
        if rows == 0:
            raise UserError(f"{self.data}: no rows to score")
        self.metrics = {"rows": float(rows), "seconds": time.perf_counter() - self.started}
        if labels:  # the train stage's metrics to the bit; ~100 bytes a row at this point (bench/RESULTS.md)
            y, p = np.concatenate(labels), np.concatenate(probs)
            del labels, probs
            if 0 < y.sum() < y.size:
                self.metrics["auc"], self.metrics["logloss"] = metrics_of(y, p)
        self.metrics["oov_share_max"] = max((count / rows for count in oov.values()), default=0.0)

    def _chunks(self) -> Iterator[pl.DataFrame]:
        """The encoded rows, `rows` at a time (polars streams them: the next is read while one is scored, no more)."""
        batches = self.encoded.collect_batches(chunk_size=self.rows, engine="streaming")
        while True:
            try:
                chunk = next(batches)
            except StopIteration:
                return
            except pl.exceptions.PolarsError as exc:
                raise _input_error(self.data, exc) from exc
            if chunk.height:
                yield chunk

    def _score(self, encoded: pl.DataFrame) -> np.ndarray:
        """The click probabilities of one chunk of encoded rows."""
        from models.batching import dense_fields, sparse_fields
        from models.data import InMemoryData
        from models.trainer import predict

        infinite = [
            f.name for f in self.base_map.fields if f.value_column in encoded.columns and encoded[f.value_column].is_infinite().any()
        ]
        if infinite:  # as ingest refuses them in valid and test: an infinite input would score as NaN
            raise UserError(
                f"{self.data}: column {infinite[0]!r} has infinite values (or values past float32's range once standardised); replace them"
            )
        numeric_as_value = self.spec["embedding"].get("numeric_as_value", False)
        columns: dict = {}
        for spec_field in sparse_fields(self.base_map, numeric_as_value):
            column = encoded[spec_field.column]
            if isinstance(column.dtype, pl.List):
                offsets = np.zeros(encoded.height + 1, dtype=np.int64)
                np.cumsum(column.list.len().fill_null(0).to_numpy(), out=offsets[1:])
                columns[spec_field.column] = (column.explode().drop_nulls().to_numpy(), offsets)
            else:
                columns[spec_field.column] = column.to_numpy()
        for spec_field in dense_fields(self.base_map, numeric_as_value):
            columns[spec_field.value_column] = encoded[spec_field.value_column].to_numpy()
        derived: dict = {}
        for method, state in self.derivers:  # the fields a search method derived, from the train tables it packaged
            derived |= method.derive(state, {**columns, **derived}, None)
        columns |= derived
        scored = {}
        if DEEP in self.used:
            labels = np.zeros(encoded.height, dtype=np.int8)  # predict reads no label
            rows = InMemoryData(columns, labels, self.feature_map, numeric_as_value)
            scored[DEEP], _ = predict(self.model, rows.batches(self.spec["batch_size"]), self.device, self.precision)
        if self.boosters:
            from features.tabular import tabular

            names, _, dtype = self.tabular
            frame = encoded.with_columns(pl.Series(name, values) for name, values in derived.items()) if derived else encoded
            x = tabular(frame, names, dtype)
            for name, (kind, booster) in self.boosters.items():
                scored[name] = kind.predict(booster, x)
        if len(self.used) == 1:
            return next(iter(scored.values()))
        from models.blend import blend

        return blend([scored[name] for name in self.used], list(self.used.values()))


_KEPT = "__kept__"  # the prefix of a kept input column while it travels beside the encoded ones


def _input_error(data: Path, exc: pl.exceptions.PolarsError) -> UserError:
    """The one-line error for what polars raised reading or encoding `data`: a missing feature column, or else the file."""
    first = str(exc).strip().splitlines()[0]
    if isinstance(exc, pl.exceptions.ColumnNotFoundError):
        return UserError(f"{data}: a feature the model was trained on is missing ({first}); give the same columns as training")
    return UserError(f"could not read the input {data}: {first}")


def score(directory: Path, data: Path, fmt: str | None, device_name: str = "auto") -> tuple[pl.DataFrame, dict[str, float]]:
    """Click probabilities for every row of the raw file `data` (with the label when the file has one), and metrics: the
    whole file's at once (for `predict`'s own output, `write_predictions` streams a `Scoring`)."""
    scoring = Scoring(directory, data, fmt, device_name)
    frames = list(scoring)
    return pl.concat(frames), scoring.metrics


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


def probabilities(directory: Path, rows: Path) -> np.ndarray:
    """Click probabilities of the raw rows in parquet file `rows` from the package in `directory` (its chosen kind)."""
    scored, _ = score(directory, rows, "parquet", "cpu")
    return scored["probability"].to_numpy()
