"""Ingest: read, split and encode the input; the encoded splits, the fitted encoder and the feature map."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import polars as pl

from featuremap.errors import InputError
from features.ingest import ingest, load_raw
from pipeline import catalog
from pipeline.config import PipelineConfig
from pipeline.params import ingest_params
from pipeline.stages.output import StageOutput


def run_ingest(cfg: PipelineConfig, workdir: Path, out: Path) -> StageOutput:
    """Read, split and encode the input; write encoded parquet, the encoder and the feature map."""
    started = time.perf_counter()
    params = ingest_params(cfg)
    scratch = workdir / ".staged"  # text parsed once and the carved valid/test rows, as parquet; removed before commit
    parts = workdir / ".parts"  # the Ray engine's part files, written as one file per split below; removed likewise
    try:
        raw = load_raw(cfg.data.path, params, cfg.data.synthetic_rows, cfg.data.synthetic_seed, scratch, cfg.data.synthetic_kind)
        if cfg.engine.kind == "ray" and raw.in_parts:
            from pipeline import ray_engine  # with the ranking's imports (scipy): only when Ray ingests

            result = ray_engine.ingest_on_ray(raw, params, cfg.engine, parts, cfg.split.keep_raw_holdout, scratch)
        else:
            if cfg.engine.kind == "ray":
                print(f"ingest: engine ray reads parquet files in parts; this input ({raw.format}) is ingested here", file=sys.stderr)
            result = ingest(raw, params, scratch, catalog.sink)
        for note in result.notes:
            print(f"ingest: {note}", file=sys.stderr)
        catalog.sink_all(
            {catalog.split_file(workdir, name): frame for name, frame in result.splits.items()}, statistics=catalog.ENCODED_STATISTICS
        )
        if cfg.split.keep_raw_holdout:
            holdout = result.holdout.items()
            catalog.sink_all({workdir / catalog.HOLDOUT[name].name: frame for name, frame in holdout if name not in result.holdout_files})
            for name, path in result.holdout_files.items():  # written already, and read by the encoded splits just written
                target = workdir / catalog.HOLDOUT[name].name
                target.parent.mkdir(parents=True, exist_ok=True)
                path.replace(target)
        splits: dict[str, dict[str, float]] = {}
        # Train's infinities stop the fit; a valid or test value is checked as written (inf read, or past float32 once
        # standardised), but for columns read as integers, which can be neither (a 50 M-row ingest: 0.38 s for all).
        values = {spec.value_column: spec.name for spec in result.encoder.field_specs() if spec.value_column is not None}
        for name in result.splits:
            checked: dict[str, str] = {}
            if name != "train":  # the split's own file when given (integers in train may be floats there), else the input's
                read_as = (raw.frames.get(name) or next(iter(raw.frames.values()))).frame.collect_schema()  # no joined columns
                checked = {c: field for c, field in values.items() if not (field in read_as and read_as[field].is_integer())}
            counts = (
                pl.scan_parquet(catalog.split_file(workdir, name))
                .select(
                    pl.len().alias("rows"),
                    pl.col(result.schema.label).cast(pl.Int64).sum().alias("pos"),
                    *[pl.col(c).is_infinite().any().alias(c) for c in checked],
                )
                .collect()
                .row(0, named=True)
            )
            infinite = [field for c, field in checked.items() if counts[c]]
            if infinite:
                raise InputError(
                    f"{result.origin} ({name} split): column {infinite[0]!r} has infinite values (or values past float32's range "
                    "once standardised); replace them or drop the column with schema.drop"
                )
            rows, pos = counts["rows"], counts["pos"] or 0
            _check_holdout(name, int(rows), int(pos), getattr(cfg.split, name, 0.0), result.origin)
            splits[name] = {"rows": int(rows), "positive_rate": float(pos / rows) if rows else 0.0}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(parts, ignore_errors=True)
    result.encoder.save(workdir)
    feature_map = result.encoder.feature_map(splits, {"origin": result.origin})
    (workdir / catalog.FEATURE_MAP.name).write_text(feature_map.to_json())
    seconds = time.perf_counter() - started
    total = sum(s["rows"] for s in splits.values())
    kinds = [spec.kind for spec in feature_map.fields]
    metrics = {f"{name}_rows": s["rows"] for name, s in splits.items()}
    metrics |= {f"{name}_positive_rate": s["positive_rate"] for name, s in splits.items()}
    metrics |= {
        "fields": len(kinds),
        "categorical_fields": kinds.count("categorical"),
        "numeric_fields": kinds.count("numeric"),
        "multi_fields": kinds.count("multi"),
        "seconds": seconds,
        "rows_per_s": total / seconds if seconds > 0 else 0.0,
    }
    return StageOutput(
        params={
            "origin": result.origin,
            "label": result.schema.label,
            **({"label_mapping": result.schema.label_mapping()} if result.schema.positive is not None else {}),
            **cfg.encode.model_dump(),
            "split": cfg.split.model_dump(),
        },
        metrics=metrics,
        artifacts=[catalog.FEATURE_MAP.name, catalog.ENCODER.name],
        summary=f"ingest: {total:,} rows, {len(kinds)} fields -> {out / 'ingest'}",
    )


def _check_holdout(name: str, rows: int, positives: int, fraction: float, origin: str) -> None:
    """A valid or test split that cannot be scored is bad input, said before rank and train run: no rows where rows were
    asked for (a fraction of too small an input), or labels of one class (AUC undefined: the run would choose on NaN).
    A split set to 0 on purpose (`split.valid: 0`) may stay empty."""
    if name == "train":
        return
    if rows == 0 and fraction > 0:
        raise InputError(
            f"{origin}: the {name} split got no rows (split.{name} = {fraction:g} of too few input rows); give more rows or a larger split.{name}"
        )
    if rows and positives in (0, rows):
        raise InputError(
            f"{origin} ({name} split): its {rows:,} row(s) all have label {1 if positives else 0}, so AUC is undefined on it; give more rows "
            f"(or, for a time split, a {name} period with clicks and non-clicks)"
        )
