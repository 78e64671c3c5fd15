"""Stage cache, run journal and the output directory's lock.

A stage's fingerprint is a hash of what its output depends on: the config
sections it reads, the fingerprints of the committed upstream outputs it
reads (so a rerun upstream invalidates it), the input files' names, sizes and
modification times (ingest), and the code version (a hash of the pipeline's
source). The stage writes `stage.json` (fingerprint, params, metrics, report)
inside its staging directory, so the record is committed atomically with the
outputs it describes; a later run whose fingerprint matches reuses the output.

`OUT/run.json` is the journal of the latest run: per stage ran / reused,
start, end, wall time and fingerprint, and the run's status.

`out_lock` holds an exclusive flock on `OUT/.lock` for the whole run: a second
run into the same directory fails at once with a clear error (the kernel
releases the lock when a run dies, even by kill -9). Runs into different
directories do not interact (every write is a temporary file or directory
renamed into place).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import catalog
from pipeline.config import PipelineConfig
from pipeline.errors import UserError

RECORD = "stage.json"
JOURNAL = catalog.RUN_JOURNAL
LOCK = ".lock"
CODE_PACKAGES = ("featuremap", "features", "methods", "models", "pipeline")
# Settings that change how often a stage checkpoints, not what it writes.
VOLATILE = {"train": {"checkpoint_seconds"}}


class LockHeld(UserError):
    """Another run holds the output directory."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@functools.cache
def code_version() -> str:
    """A hash of the pipeline's source (every module a stage can run, and the C++ kernel AutoInt compiles)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted(p for suffix in ("*.py", "*.cpp") for p in (root / package).rglob(suffix)):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.exists() else []


def input_identity(cfg: PipelineConfig) -> list[tuple[str, int, int, int, int]]:
    """(path, size, mtime and ctime in ns, inode) of every input file the ingest stage reads: its data (none for the
    synthetic data) and its side tables (with the synthetic data too). The ctime and inode change with the file even
    when a copy keeps its size and mtime (`cp -p`, `touch -r`, rsync)."""
    paths = [*(cfg.data.paths if cfg.data.path is not None else []), *(join.path for join in cfg.data.joins)]
    identity = []
    for path in paths:
        for file in _files(Path(path)):
            stat = file.stat()
            identity.append((str(file.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))
    return identity


def registry_target(cfg: PipelineConfig) -> list[str | None]:
    """Where a run registers its model: the tracking URI in force (config, MLFLOW_TRACKING_URI or ./mlflow.db) and the
    registered name; None when it registers none. A train stage committed for another store or name is no model there."""
    from pipeline.tracking import resolve_uri

    if not (cfg.tracking.enabled and cfg.tracking.register_model):
        return [None, None]
    return [resolve_uri(cfg.tracking.uri), cfg.tracking.registered_model or cfg.train.model]


def compute_target(cfg: PipelineConfig) -> list[str]:
    """The device type and autocast dtype training resolves to here (`train.device`, `train.precision`)."""
    from models.trainer import resolve_device, resolve_precision

    device = resolve_device(cfg.train.device)
    return [device.type, str(resolve_precision(cfg.train.precision, device))]


def recorded(out: Path, stage: str) -> dict[str, Any] | None:
    """The committed stage's record, or None when there is no (readable) record."""
    path = catalog.stage_path(out, stage) / RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stage_fingerprint(cfg: PipelineConfig, stage: str) -> str:
    """The fingerprint of `stage`'s output for this config, given the committed upstream outputs."""
    dump = cfg.model_dump(mode="json")
    declared = catalog.DECLARED[stage]
    sections = {name: dump[name] for name in declared.sections}
    for section, names in VOLATILE.items():
        for name in names:
            sections.get(section, {}).pop(name, None)
    # An upstream stage by its committed output, not only its fingerprint: a rerun of it (forced, or training again
    # for a model never registered) gives new outputs under the same fingerprint, and what reads them must rerun too.
    records = {name: recorded(cfg.out, name) or {} for name in declared.reads}
    upstream = {name: [record.get("fingerprint"), record.get("finished")] for name, record in records.items()}
    payload = {"stage": stage, "code": code_version(), "sections": sections, "upstream": upstream}
    if stage == "ingest":
        payload["inputs"] = input_identity(cfg)
    if stage in ("train", "promote", "report"):  # the registry they write to or read: the store in force and the name
        payload["registry"] = registry_target(cfg)
    if stage in ("search", "train"):  # `auto` as this host resolves it: a CPU-trained output is no GPU host's, nor fp32 bf16
        payload["compute"] = compute_target(cfg)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def reusable(out: Path, stage: str, fingerprint: str) -> dict[str, Any] | None:
    """The committed record of `stage` when its fingerprint matches (the output can be reused), else None."""
    record = recorded(out, stage)
    return record if record is not None and record.get("fingerprint") == fingerprint else None


def write_stage_record(workdir: Path, stage: str, fingerprint: str, output: Any) -> None:
    """Write the stage's record into its staging directory (committed with the outputs)."""
    catalog.write_json(
        workdir / RECORD,
        {
            "stage": stage,
            "fingerprint": fingerprint,
            "code_version": code_version(),
            "finished": now(),
            "params": json.loads(json.dumps(output.params, default=str)),
            "metrics": output.metrics,
            "report": output.report,
            "tags": output.tags,
            "alarm": output.alarm,
        },
    )


def record_report(stage_dir: Path, report: dict[str, Any]) -> None:
    """Rewrite a committed stage's recorded report (atomically): what the runner learns after the commit, e.g. the
    registered model's version."""
    record = json.loads((stage_dir / RECORD).read_text())
    catalog.write_json(stage_dir / RECORD, {**record, "report": report})


class RunJournal:
    """OUT/run.json, rewritten atomically after every stage."""

    def __init__(self, out: Path, stages: list[str]) -> None:
        self.path = out / JOURNAL
        self.payload: dict[str, Any] = {
            "status": "running",
            "started": now(),
            "finished": None,
            "pid": os.getpid(),
            "code_version": code_version(),
            "planned": stages,
            "stages": {},
        }
        catalog.write_json(self.path, self.payload)

    def record(self, stage: str, action: str, start: str, seconds: float, fingerprint: str) -> None:
        self.payload["stages"][stage] = {
            "action": action,
            "start": start,
            "end": now(),
            "wall_seconds": seconds,
            "fingerprint": fingerprint,
        }
        catalog.write_json(self.path, self.payload)

    def finish(self, status: str) -> None:
        self.payload |= {"status": status, "finished": now()}
        with contextlib.suppress(OSError):  # a failed write here must not hide the error that ended the run
            catalog.write_json(self.path, self.payload)


@contextlib.contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold OUT's lock for the block; another holder is an error at once, and so is an OUT that cannot be written."""
    try:
        handle = open(out / LOCK, "a+")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise UserError(f"{out}: cannot write in the output directory ({exc.strerror or exc}); give --out a writable directory") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise LockHeld(
                f"{out}: another pipeline run (pid {holder}) is writing this output directory; wait for it or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_staging(out: Path) -> None:
    """Remove staging directories and temporary files left by a run that died (only called under the lock)."""
    for path in out.glob(".*.tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in out.glob(".*.old-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in out.glob(".*.tmp"):
        path.unlink(missing_ok=True)
