"""Runs stages in order: each into a private directory committed atomically, each tracked in MLflow."""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import sys
import time
from pathlib import Path

import polars as pl

from featuremap.errors import InputError
from pipeline import cache, catalog
from pipeline.config import STAGE_ORDER, PipelineConfig
from pipeline.errors import RunAlarm, UserError
from pipeline.stages import run_stage
from pipeline.tracking import UI_MODE, RunHandle, Tracker

# What polars raises on a user's file: a value that does not fit its column's type, a column missing
# from one file, an unparsable file.
INPUT_ERRORS = (pl.exceptions.PolarsError,)


def _first_missing(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet (what this run would create)."""
    missing = None
    path = path.absolute()
    while not path.exists():
        missing, path = path, path.parent
    return missing


def plan(cfg: PipelineConfig) -> list[str]:
    """Stages to run, in pipeline order, checking that each one's inputs exist or will be made."""
    wanted = [s for s in STAGE_ORDER if s in cfg.stages]
    if "search" in wanted and not cfg.search.methods:
        if cfg.stages == ["search"]:
            raise UserError("the search stage needs a method: pass --search METHOD (or set search.methods)")
        wanted.remove("search")
    if "promote" in wanted and not (cfg.promote.enabled and cfg.tracking.enabled and cfg.tracking.register_model):
        if cfg.stages == ["promote"]:
            raise UserError("the promote stage needs the model registry: tracking on, tracking.register_model and promote.enabled")
        wanted.remove("promote")
    if {"search", "train"} & set(wanted) and (cfg.train.device.startswith("cuda") or cfg.train.precision == "fp16"):
        # a device or precision this machine lacks: say so before ingest and rank run, not after them
        from models.trainer import resolve_device, resolve_precision

        resolve_precision(cfg.train.precision, resolve_device(cfg.train.device))
    if {"search", "train"} & set(wanted):  # the model's settings too (a typo, a value out of range)
        from models.registry import check_settings

        check_settings(cfg.train.model, cfg.train.params)
    has_ingest = catalog.FEATURE_MAP.at(cfg.out).is_file()
    for stage in ("rank", "search", "train"):
        if stage in wanted and "ingest" not in wanted and not has_ingest:
            raise UserError(f"{cfg.out / 'ingest'}: no ingest output to {stage}; run with --stages ingest,{stage} or pass --data")
    return wanted


def run_pipeline(cfg: PipelineConfig, force: bool = False) -> dict[str, dict]:
    """Run the configured stages; on a user error remove the output directory if this run created it.

    A stage whose fingerprint (inputs, settings, code) matches its committed output is reused, not rerun, unless
    `force`. OUT/run.json records what each stage did. One run at a time writes OUT (a lock)."""
    stages = plan(cfg)
    created = _first_missing(cfg.out)
    try:
        cfg.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # OUT, or a folder above it, is a file
        raise UserError(f"{cfg.out}: cannot make the output directory ({exc.strerror}); give --out a directory path") from exc
    try:
        with cache.out_lock(cfg.out):
            cache.remove_stale_staging(cfg.out)
            return _run_locked(cfg, stages, force)
    except (InputError, *INPUT_ERRORS) as exc:
        if created is not None and not isinstance(exc, cache.LockHeld | RunAlarm):
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(exc, InputError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"could not read the input {', '.join(map(str, cfg.data.paths))}: {first}") from exc


def _previous_report(path: Path) -> dict:
    """OUT/metrics.json as the last run left it, to which this run's stages add; one that cannot be read (cut short,
    edited) starts again empty, with a warning: the stages' own outputs hold its figures."""
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"warning: {path} cannot be read ({exc}); written again from this run's stages", file=sys.stderr)
        return {}
    return report if isinstance(report, dict) else {}


def _run_name(cfg: PipelineConfig) -> str:
    """The pipeline run's name in MLflow: its data and, for a scheduled run, its date tag (every run was named by its
    stages alone, so a day's runs could not be told apart in the runs table; the stages are a param)."""
    paths = cfg.data.paths
    if not paths:
        data = f"synthetic {cfg.data.synthetic_kind} {cfg.data.synthetic_rows:,} rows"
    else:
        data = paths[0].name + (f" +{len(paths) - 1}" if len(paths) > 1 else "")
    date = cfg.tracking.tags.get("date")
    return f"pipeline {data}" + (f" {date}" if date and date not in data else "")


def _run_locked(cfg: PipelineConfig, stages: list[str], force: bool) -> dict[str, dict]:
    tracker = Tracker(cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.fallback, cfg.tracking.tags)
    results: dict[str, dict] = {}
    metrics_file = cfg.out / catalog.METRICS
    report = _previous_report(metrics_file)
    journal = cache.RunJournal(cfg.out, stages)
    registers = cfg.tracking.enabled and cfg.tracking.register_model
    alarmed: list[tuple[RunHandle, str]] = []  # the stage runs whose stage raised an alarm, and its text
    try:
        with tracker.run(_run_name(cfg)) as parent:
            parent.log_params({"stages": ",".join(stages), "out": str(cfg.out), "data": cfg.data.model_dump(mode="json")})
            for name in stages:
                started = time.perf_counter()
                began = cache.now()
                fingerprint = cache.stage_fingerprint(cfg, name)
                reused = None if force else cache.reusable(cfg.out, name, fingerprint)
                if reused is not None and name == "train" and registers and "registered_model" not in reused["report"]:
                    # committed, but its model never reached the registry (tracking was off, or the run stopped between
                    # the two): train again, so that promote has a registered model to compare
                    print("train: its committed model was never registered; training again", file=sys.stderr)
                    reused = None
                if reused is not None:  # nothing changed: keep the committed output, log what it recorded
                    with tracker.run(name, nested=True) as run:
                        run.log_params({**reused["params"], "reused": True, "fingerprint": fingerprint})
                        run.log_metrics(reused["metrics"])
                        run.set_tags(reused.get("tags", {}))
                    parent.set_tags(reused.get("tags", {}))
                    parent.log_metrics({f"{name}.{k}": v for k, v in reused["metrics"].items()})
                    report = {**report, **reused["report"]}
                    catalog.write_json(metrics_file, report)
                    journal.record(name, "reused", began, time.perf_counter() - started, fingerprint)
                    if reused.get("alarm"):
                        alarmed.append((run, reused["alarm"]))
                    results[name] = {"metrics": reused["metrics"], "dir": str(catalog.stage_path(cfg.out, name)), "reused": True}
                    print(f"{name}: reused {catalog.stage_path(cfg.out, name)} (inputs, settings and code unchanged)", file=sys.stderr)
                    continue
                with tracker.run(name, nested=True) as run:
                    try:
                        with catalog.staging(cfg.out, name) as workdir:
                            output = run_stage(name, cfg, workdir, cfg.out)
                            # written inside the staging directory, so it is committed with the outputs it describes
                            cache.write_stage_record(workdir, name, fingerprint, output)
                    except OSError as exc:  # disk full, read-only or failing disk: the staging directory is gone
                        where = f" ({exc.filename})" if exc.filename else ""
                        # Disk full or read-only, or a file under OUT: a write; else it may be a read (an input that is a
                        # device or a pipe: "No such device")
                        under_out = exc.filename and Path(exc.filename).resolve().is_relative_to(cfg.out.resolve())
                        writing = exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT) or under_out
                        what = "write error" if writing else "read or write error"
                        raise UserError(
                            f"{name}: {what}: {exc.strerror or exc}{where}; committed outputs are intact, rerun once fixed"
                        ) from exc
                    final = catalog.stage_path(cfg.out, name)
                    metrics = {**output.metrics, "wall_seconds": time.perf_counter() - started}
                    run.log_params(output.params)
                    run.log_metrics(metrics)
                    for step, values in enumerate(output.steps, start=1):
                        run.log_metrics(values, step=step)
                    for artifact in output.artifacts:
                        run.log_artifact(final / artifact)
                    run.set_tags(output.tags)
                    parent.set_tags(output.tags)
                    if name == "report":  # on the pipeline run too: the runs table's top row opens it
                        parent.log_artifact(final / catalog.REPORT.name)
                    for child in output.children:  # e.g. the study's trials, nested under this stage's run
                        with tracker.run(child["name"], nested=True) as nested:
                            nested.log_params(child["params"])
                            nested.log_metrics(child["metrics"])
                    for path in output.cleanup:
                        path.unlink(missing_ok=True)
                        with contextlib.suppress(OSError):  # the folder goes too once it is empty
                            path.parent.rmdir()
                    if output.package is not None:
                        deep = output.report.get("deep_model") or output.report.get("model", cfg.train.model)  # one name, whichever wins
                        registered = cfg.tracking.registered_model or f"ctr-{deep.replace('+', '-plus')}"
                        chosen = {"name": output.report.get("model"), "kind": output.report.get("kind", "deep")}
                        version, location = run.log_model(
                            output.model, final / output.package, registered if cfg.tracking.register_model else None, chosen
                        )
                        if location is not None:  # runs:/<the pipeline run> finds the package too
                            parent.set_tags({"package": location})
                        if version is not None:
                            output.report["registered_model"] = f"models:/{registered}/{version}"
                            output.report["run_id"] = run.run_id
                            cache.record_report(final, output.report)  # a retry that reuses train finds its version
                parent.log_metrics({f"{name}.{k}": v for k, v in metrics.items()})
                if output.report:
                    report = {**report, **output.report}
                    catalog.write_json(metrics_file, report)
                results[name] = {"metrics": metrics, "dir": str(final), "reused": False}
                journal.record(name, "ran", began, time.perf_counter() - started, fingerprint)
                print(output.summary, file=sys.stderr)
                if output.alarm:
                    alarmed.append((run, output.alarm))
    except BaseException:
        journal.finish("failed")
        raise
    journal.finish("succeeded")
    if tracker.enabled:
        print(
            f"tracking: {tracker.uri} (experiment {cfg.tracking.experiment!r}); browse with: make ui, then "
            f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}?{UI_MODE}",
            file=sys.stderr,
        )
    if alarmed:  # every stage ran and committed; what needs a person ends the run as its error (exit 2), FAILED in MLflow
        alarm = " | ".join(text for _, text in alarmed)
        try:
            for run, text in alarmed:
                run.fail(text)
            parent.fail(alarm)
        except Exception as exc:  # the store gone since: the alarm is still the run's error, and says so
            print(f"warning: tracking: could not mark the runs FAILED ({str(exc).splitlines()[0][:200]})", file=sys.stderr)
        raise RunAlarm(alarm)
    return results
