"""Shared fixtures: paths to the real datasets in ../shared/data, small encoded synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# As `python -m pipeline` does (pipeline/__main__.py): no transparent huge pages for numpy's arrays, whose first touch
# waits on memory compaction on these hosts. Set before anything imports numpy; processes the tests start inherit it.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per pytest-xdist worker (and per process a test starts, which inherits this environment): with the
    # default of one OpenMP / polars thread per core, two workers on two cores oversubscribe, and OpenMP's spinning
    # threads made the suite slower than one worker (bench/RESULTS.md, test suite).
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS"):
        os.environ[name] = "1"

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc, log: Path, seconds: float = 120) -> None:
    """Wait until `url` answers 200; fail the test when the server process exits or time runs out."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"{url} did not answer within {seconds} s")


def tracking_store(path: Path) -> str:
    """`sqlite:///path`, a new MLflow store with its tables already made: a copy of one store built once per mlflow
    version (creating the tables runs MLflow's ~60 migrations, 3-4 s, which every test would pay for its own store)."""
    import shutil
    import tempfile
    from importlib.metadata import version

    template = Path(tempfile.gettempdir()) / f"ctr-tests-mlflow-{version('mlflow')}-store.db"
    if not template.is_file():
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        building = template.with_name(f"{template.name}.{os.getpid()}")
        building.unlink(missing_ok=True)
        store = SqlAlchemyStore(f"sqlite:///{building}", str(building.parent / "unused-artifacts"))
        store.engine.dispose()
        building.replace(template)  # atomic: a worker that builds it at the same time replaces it with an equal copy
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def tree_bytes(directory: Path) -> dict[Path, bytes]:
    """Every file under `directory` by its relative path, with its bytes."""
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def check_package_stored_once(uri: str, report: dict, package: dict[Path, bytes]) -> None:
    """The train run of `report` (metrics.json) logged no `package/` of its own, and its run, the pipeline run above it
    and its registered version each fetch `package` (tree_bytes of the package as logged) whole."""
    from mlflow import MlflowClient

    from pipeline.tracking import download_package

    client = MlflowClient(uri)
    assert "package" not in {a.path for a in client.list_artifacts(report["run_id"])}
    parent = client.get_run(report["run_id"]).data.tags["mlflow.parentRunId"]  # the runs table's top row
    for reference in (f"runs:/{report['run_id']}", f"runs:/{parent}", report["registered_model"]):
        assert tree_bytes(download_package(reference, uri)) == package, reference


def shared(name: str) -> Path:
    """A dataset folder under ../shared/data, skipping the test where it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def synthetic_encoded():
    """200k synthetic rows ingested in memory: (train DataFrame, feature map)."""
    from features.ingest import IngestParams, ingest, load_raw
    from features.sources import SourceOptions

    params = IngestParams(source=SourceOptions(format=""))
    result = ingest(load_raw(None, params, 200_000, 7), params)
    train = result.splits["train"].collect()
    feature_map = result.encoder.feature_map({"train": {"rows": train.height}}, {})
    return train, feature_map
