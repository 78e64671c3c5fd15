"""MLflow tracking: with the logged model entry `pipeline.pyfunc_model`, the only module that imports mlflow.

A parent run per pipeline run and a nested run per stage. With no URI in the
config or MLFLOW_TRACKING_URI, runs go to a sqlite store `mlflow.db` in the
working directory (open it with `make ui`).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline.errors import UserError

DEFAULT_STORE = "mlflow.db"
EXPERIMENT_KIND, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.17's UI starts each browser in its GenAI mode (a setting of the browser, not of the store): addresses with
# this query open it on model training, an experiment on its runs table.
UI_MODE = "workflowType=machine_learning"


def resolve_uri(configured: str | None) -> str:
    """The tracking URI in force: config, then MLFLOW_TRACKING_URI, then ./mlflow.db."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_STORE}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///<path>` URI (SQLAlchemy's form: a relative path after three slashes, an
    absolute one after four), or None for another store."""
    return Path(uri[len("sqlite:///") :].split("?")[0]) if uri.startswith("sqlite:///") else None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> {'a.b': 'value'} with values as strings MLflow accepts."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)[:6000]
    return flat


class RunHandle:
    """Logging calls for one active run (no-ops when tracking is off)."""

    def __init__(self, mlflow: Any | None, run_id: str | None) -> None:
        self._mlflow = mlflow
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._mlflow:
            self._mlflow.log_params(flatten(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._mlflow:
            clean = {k: float(v) for k, v in metrics.items() if v is not None}
            self._mlflow.log_metrics(clean, step=step)

    # Tags and artifacts go to this run by its id: the pipeline run's handle is used while a stage's run is active.
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._mlflow and tags:
            client = self._mlflow.MlflowClient()
            for key, value in tags.items():
                client.set_tag(self.run_id, key, str(value)[:5000])

    def fail(self, alarm: str) -> None:
        """Mark this ended run FAILED, with its alarm as a tag: a run whose stages committed but that needs a person
        (exit 2) must not read FINISHED in the runs table."""
        if self._mlflow:
            self.set_tags({"alarm": alarm})
            self._mlflow.MlflowClient().set_terminated(self.run_id, status="FAILED")

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._mlflow:
            self._mlflow.MlflowClient().log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_model(
        self,
        model: Any,
        package: Path,
        registered_name: str | None,
        chosen: Mapping[str, Any] | None = None,
    ) -> tuple[str | None, str | None]:
        """Log the chosen model and its scoring package (weights, spec, encoder, feature map, boosters) to this run;
        register it under `registered_name`. A deep model is logged as torch (pickled: it takes EncodedBatch / KJT
        inputs, which torch.export cannot trace) and the package as the run's `package/`; a GBDT, the wide model or a
        blend as a pyfunc that scores raw rows through the package, which it carries among its artifacts, so the
        package is stored once. Where the package lies (a `runs:/` URI, which MLflow resolves through the run's logged
        model) goes to the run's and the registered version's `package` tag, which `download_package` reads. Returns
        the registered version (None without one) and that URI (None without tracking)."""
        if not self._mlflow:
            return None, None
        import torch

        chosen = chosen or {"name": None, "kind": "deep"}
        if chosen["kind"] == "deep":
            import mlflow.pytorch

            self._mlflow.log_artifacts(str(package), artifact_path=package.name)
            info = mlflow.pytorch.log_model(
                model.cpu(), name=MODEL_NAME, serialization_format="pickle", pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"]
            )
            location = f"runs:/{self.run_id}/{package.name}"
        else:
            info = _log_package_model(package)
            # where MLflow put the artifact inside the model (named by the folder: artifacts/package)
            location = f"runs:/{self.run_id}/{MODEL_NAME}/{info.flavors['python_function']['artifacts'][PYFUNC_PACKAGE]['path']}"
        self.set_tags({"package": location})
        if registered_name is None:
            return None, location
        version = self._mlflow.register_model(info.model_uri, registered_name, tags={"run_id": self.run_id or ""})
        client = self._mlflow.MlflowClient()
        client.set_model_version_tag(registered_name, version.version, "package", location)
        client.set_model_version_tag(registered_name, version.version, "chosen", f"{chosen['name']} ({chosen['kind']})")
        return str(version.version), location


MODEL_NAME = "model"  # the logged model's name in its run
PYFUNC_PACKAGE = "package"  # the pyfunc model's artifact key for the package (pipeline/pyfunc_model.py reads it)


def _log_package_model(package: Path) -> Any:
    """Log a pyfunc model that scores raw rows with the package's chosen candidate (`pipeline/pyfunc_model.py`, logged
    as code), carrying the project's code so that `mlflow.pyfunc.load_model` needs only the libraries."""
    import mlflow.pyfunc
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    root = Path(__file__).resolve().parent.parent
    # The output declared (one click probability per row); the input left open: it is the training data's raw columns
    # (side tables of joins are read by the package), and the package checks it (a missing feature is a one-line error).
    signature = ModelSignature(inputs=None, outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,), "probability")]))
    with warnings.catch_warnings():  # MLflow's advice to give an input example, which an open input does not take
        warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            signature=signature,
            artifacts={PYFUNC_PACKAGE: str(package)},
            code_paths=[str(root / name) for name in ("featuremap", "features", "methods", "models", "pipeline")],
            pip_requirements=[
                "torch",
                "polars",
                "pyarrow",
                "pandas",
                "scikit-learn",
                "lightgbm",
                "catboost",
                "pydantic",
                "pyyaml",
                "jinja2",
            ],
        )


class Tracker:
    """Opens MLflow runs; `enabled=False` makes every call a no-op."""

    def __init__(
        self, enabled: bool, uri: str | None, experiment: str, fallback: bool = False, tags: Mapping[str, str] | None = None
    ) -> None:
        self.enabled = enabled
        self.tags = dict(tags or {})  # on every run
        self.experiment_id: str | None = None
        self.uri = resolve_uri(uri) if enabled else None
        self.experiment = experiment
        self.fallback = fallback
        self._mlflow: Any | None = None

    def _client(self) -> Any:
        if self._mlflow is None:
            # A tracking server that is down should fail fast, not retry for minutes.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
            # Logging a pyfunc copies its artifacts through MLflow's downloader: no progress bar in a run's log.
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            import mlflow

            try:
                _reachable(self.uri)
                if (database := sqlite_path(self.uri)) is not None:  # a new store's folder (sqlite makes the file, not it)
                    database.parent.mkdir(parents=True, exist_ok=True)
                mlflow.set_tracking_uri(self.uri)
                with store_lock(self.uri, "init"):  # two runs at once on a new sqlite store would both create its tables
                    if database is not None and mlflow.get_experiment_by_name(self.experiment) is None:
                        # artifacts beside their store (MLflow's default, ./mlruns, mixed every store's artifacts in the
                        # working directory, where `make clean` removes them)
                        location = (database.resolve().parent / "mlruns").as_uri()
                        mlflow.create_experiment(self.experiment, artifact_location=location)
                    mlflow.set_experiment(self.experiment)
            except Exception as exc:  # mlflow raises many types for an unreachable or broken store
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                local = f"sqlite:///{Path.cwd() / DEFAULT_STORE}"
                if not self.fallback or self.uri == local:
                    raise UserError(
                        f"tracking store {self.uri} is not usable ({reason}); check --tracking-uri, pass --no-tracking, "
                        "or set tracking.fallback to log to the local store"
                    ) from exc
                print(f"tracking: {self.uri} is not usable ({reason}); logging to the local store {local} instead", file=sys.stderr)
                self.uri = local
                mlflow.set_tracking_uri(self.uri)
                mlflow.set_experiment(self.experiment)
            experiment = mlflow.get_experiment_by_name(self.experiment)
            if experiment is not None and experiment.tags.get(EXPERIMENT_KIND) != MODEL_DEVELOPMENT:
                # the experiment's type in MLflow 3's UI: machine learning (its runs tables), not a GenAI app
                mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_DEVELOPMENT)
            self.experiment_id = experiment.experiment_id if experiment is not None else None
            self._mlflow = mlflow
        return self._mlflow

    @contextmanager
    def run(self, name: str, nested: bool = False) -> Iterator[RunHandle]:
        """An MLflow run (nested under the active one if `nested`), ended FAILED on error."""
        if not self.enabled:
            yield RunHandle(None, None)
            return
        mlflow = self._client()
        with mlflow.start_run(run_name=name, nested=nested, tags=self.tags or None) as active:
            yield RunHandle(mlflow, active.info.run_id)


def _reachable(uri: str, timeout: float = 3.0) -> None:
    """For an http(s) tracking URI, open a TCP connection first: a host that drops packets fails in `timeout` seconds
    instead of the HTTP client's retries."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {parsed.hostname}:{port}: {exc.strerror or exc}") from exc


def download_package(reference: str, uri: str | None) -> Path:
    """Fetch the scoring package behind `runs:/<run id>[/package]` (the train stage's run or the pipeline run above
    it), `models:/<name>/<version>` or `models:/<name>@<alias>` to a local folder of its own."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    store = resolve_uri(uri)
    if (database := sqlite_path(store)) is not None and not database.is_file():  # reading would make an empty one
        raise UserError(f"{reference}: no tracking store at {store} (no such file); give --tracking-uri the run's store")
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(store)
    try:
        if reference.startswith("models:/"):
            body = reference[len("models:/") :].strip("/")
            client = mlflow.MlflowClient()
            if "@" in body and "/" not in body:  # models:/<name>@<alias>, e.g. models:/ctr-deepfm@champion
                name, alias = body.split("@", 1)
                version = client.get_model_version_by_alias(name, alias)
            else:
                parts = body.split("/")
                if len(parts) != 2:
                    raise UserError(f"{reference}: expected models:/<name>/<version> or models:/<name>@<alias>")
                version = client.get_model_version(parts[0], parts[1])
            artifact = version.tags.get("package") or f"runs:/{version.run_id}/package"
        else:  # runs:/<run id>[/package]: the run's tag says where (a GBDT's, the wide model's or a blend's lies in its pyfunc)
            run_id, _, rest = reference[len("runs:/") :].strip("/").partition("/")
            if rest not in ("", "package"):
                raise UserError(f"{reference}: expected runs:/<run id> (the train stage's run, or the pipeline's)")
            artifact = mlflow.MlflowClient().get_run(run_id).data.tags.get("package") or f"runs:/{run_id}/package"
        # always a copy of its own: on a local store MLflow would hand back a path inside the store for some URIs
        target = tempfile.mkdtemp(prefix="ctr-package-")
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact, dst_path=target))
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # no empty or partial copy left behind
            raise
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # the store failing, not the name:
            raise  # no user error (exit 2 is not retried), so that a scheduler retries it
        raise UserError(f"{reference}: not found in the tracking store {store} ({str(exc).splitlines()[0][:200]})") from exc


class Registry:
    """The model registry's aliases and version notes for one registered model."""

    def __init__(self, uri: str | None, name: str) -> None:
        import mlflow

        self.uri = resolve_uri(uri)
        self.name = name
        self.client = mlflow.MlflowClient(self.uri)

    def version_by_alias(self, alias: str) -> str | None:
        """The version `alias` points to, or None when it is not set."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException:
            return None

    def version_tag(self, version: str, key: str) -> str | None:
        """A tag of one version (e.g. the `date` the promote stage set), or None."""
        return self.client.get_model_version(self.name, version).tags.get(key) or None

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)

    def annotate(self, version: str, description: str, tags: Mapping[str, Any]) -> None:
        """Set the version's description (shown on its page) and tags."""
        self.client.update_model_version(self.name, version, description=description)
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, str(value)[:5000])

    def lock(self) -> AbstractContextManager[None]:
        """This registered model's alias lock: runs on this host that compare and move aliases take turns."""
        return store_lock(self.uri, f"registry|{self.name}")


def store_lock(uri: str, purpose: str) -> AbstractContextManager[Any]:
    """An exclusive lock for `purpose` on the store `uri`, shared by the processes of this host: a file named by a hash
    of both, in `lock_folder(uri)`."""
    import hashlib

    from filelock import FileLock

    key = hashlib.sha256(f"{uri}|{purpose}".encode()).hexdigest()[:16]
    return FileLock(lock_folder(uri) / f"ctr-pipeline-{key}.lock")


def lock_folder(uri: str) -> Path:
    """Where a store's lock files live: a hidden folder beside a local store (`.mlflow.db.locks` beside a sqlite file,
    `.mlruns.locks` beside a file store), so that they go with it (a lock file stays after its release: deleting it
    would race with a waiting process); the temporary directory for a remote store, or where that folder cannot be
    made."""
    parsed = urlparse(uri)
    local = sqlite_path(uri)
    if local is None and (parsed.scheme == "file" or (not parsed.scheme and not uri.startswith("databricks"))):  # "databricks" is remote
        local = Path(parsed.path if parsed.scheme == "file" else uri)  # a file store's folder
    if local is not None and local.name != ":memory:":
        local = local.resolve()
        try:
            if local.parent.is_dir():
                folder = local.parent / f".{local.name}.locks"
                folder.mkdir(exist_ok=True)
                return folder
        except OSError:  # a read-only folder
            pass
    return Path(tempfile.gettempdir())
