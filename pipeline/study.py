"""The Optuna study of the search stage: model type, embedding size, learning rate, depth, and the methods' own knobs.

With `methods` naming search methods, each trial also samples those methods'
own settings (each method's `study_space`, within the `ranges` of the
config's `search.optuna` section), runs those searches on the trial's model, and reports the retrained
model's validation AUC and its parameters after selection.

Two objectives, validation AUC (maximised) and parameters (minimised), with
Optuna's default multi-objective sampler (TPE). The study lives in a sqlite
file under OUT/.study/ while it runs, so rerunning an interrupted search
resumes it (finished trials are kept, the rest are run); it is copied into
OUT/search/ at the end. Optuna cannot prune multi-objective trials itself, so
the median rule is applied here: after each epoch from `prune_after` on, a
trial whose validation AUC is below the median of the finished trials' AUC at
that epoch is stopped and marked pruned. The test split is never read.

Choice of the trade-off handed to train: among the Pareto-optimal trials, the
smallest one whose validation AUC is within `auc_tolerance` of the best
validation AUC of the study.
"""

from __future__ import annotations

import logging
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from methods import METHODS
from pipeline.errors import UserError


@dataclass(frozen=True)
class StudySettings:
    trials: int = 12
    models: tuple[str, ...] = ("fm", "deepfm", "autoint")
    embedding_dims: tuple[int, ...] = (4, 8, 10, 16)
    learning_rate: tuple[float, float] = (1e-4, 1e-2)
    max_depth: int = 3
    max_epochs: int = 10
    prune_after: int = 2
    auc_tolerance: float = 0.001
    seed: int = 0
    methods: tuple[str, ...] = ()  # registered search methods whose own settings every trial samples
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # their ranges, by the config's key
    # per model: the settings its trials start from before the depth knob (the train section's params for its
    # model), so that a DeepFM trial keeps the configured batch norm and dropout
    base_params: dict[str, dict[str, Any]] = field(default_factory=dict)


def _model_params(model: str, depth: int) -> dict[str, Any]:
    """The depth knob of each model family."""
    if model in ("deepfm", "dnn"):
        return {"hidden": [400] * depth}
    if model == "dcnv2":  # depth: its cross layers (the MLP beside them keeps its configured width and depth)
        return {"cross_layers": depth}
    if model == "autoint+":
        return {"dnn_hidden": [400] * depth}
    if model == "autoint":
        return {"layers": depth}
    return {}


def run_study(
    storage_path: Path,
    settings: StudySettings,
    train_trial: Callable[[dict[str, Any], Callable[[int, float], None]], tuple[float, int]],
    fingerprint: str = "",
) -> dict[str, Any]:
    """Run (or resume) the study; `train_trial(config, on_epoch)` trains one configuration and returns (AUC, params).

    `train_trial` calls `on_epoch(epoch, valid_auc)` after every epoch; it raises optuna.TrialPruned to stop the trial.
    A study left in `storage_path` resumes only when its `fingerprint` (what its trials were trained on: data,
    features, settings) is this one's; another is deleted and the study starts afresh. A resumed study's sampler is
    seeded past the trials it has, so that it does not draw its first trials again.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(logging.WARNING)
    storage_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{storage_path}"
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 5}})
        study = optuna.create_study(study_name="search", storage=storage, load_if_exists=True, directions=["maximize", "minimize"])
        if study.trials and study.user_attrs.get("fingerprint") != fingerprint:
            print(f"search optuna: {storage_path} holds a study of other data or settings; starting afresh", file=sys.stderr)
            optuna.delete_study(study_name="search", storage=storage)
            study = optuna.create_study(study_name="search", storage=storage, directions=["maximize", "minimize"])
        study.set_user_attr("fingerprint", fingerprint)
        study.sampler = optuna.samplers.TPESampler(seed=settings.seed + len(study.trials))
    except (SQLAlchemyError, optuna.exceptions.OptunaError, ValueError, RuntimeError) as exc:
        raise UserError(
            f"{storage_path}: the study storage is locked or corrupt ({str(exc).splitlines()[0][:160]}); delete it or free it"
        ) from exc
    done = [t for t in study.trials if t.state.is_finished()]
    for stale in (t for t in study.trials if not t.state.is_finished()):  # a trial killed mid-run: retried below
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)

    def objective(trial: optuna.Trial) -> tuple[float, int]:
        model = trial.suggest_categorical("model", list(settings.models))
        config = {
            "model": model,
            "embedding_dim": trial.suggest_categorical("embedding_dim", list(settings.embedding_dims)),
            "learning_rate": trial.suggest_float("learning_rate", *settings.learning_rate, log=True),
        }
        depth = trial.suggest_int("depth", 1, settings.max_depth) if _model_params(model, 1) else 0  # models with a depth knob
        config["params"] = {**settings.base_params.get(model, {}), **_model_params(model, depth)}
        for name, method in METHODS.items():  # in registry order, whatever order the config lists them in
            if name in settings.methods:
                config[name] = method.study_space(trial, settings.ranges)
        finished = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]

        trial.set_user_attr("config", config)

        def on_epoch(epoch: int, auc: float) -> None:
            trial.set_user_attr(f"auc_epoch_{epoch}", auc)
            peers = [t.user_attrs.get(f"auc_epoch_{epoch}") for t in finished]
            peers = [p for p in peers if p is not None]
            if epoch >= settings.prune_after and len(peers) >= 2 and auc < statistics.median(peers):
                raise optuna.TrialPruned(f"epoch {epoch}: valid AUC {auc:.4f} below the finished trials' median")

        return train_trial(config, on_epoch)

    remaining = settings.trials - len(done)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=(), callbacks=[_trial_said(settings.trials)])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise UserError("the study finished no trial; raise search.optuna.trials")
    front = study.best_trials
    best_auc = max(t.values[0] for t in complete)
    eligible = [t for t in front if t.values[0] >= best_auc - settings.auc_tolerance]
    chosen = min(eligible, key=lambda t: (t.values[1], -t.values[0]))
    return {
        "trials": [
            {"number": t.number, "state": t.state.name, "values": t.values, "params": t.params, "config": t.user_attrs.get("config")}
            for t in study.trials
        ],
        "front": [t.number for t in front],
        "chosen": {
            "number": chosen.number,
            "valid_auc": chosen.values[0],
            "params": chosen.values[1],
            "config": chosen.user_attrs["config"],
        },
        "rule": f"smallest Pareto-optimal trial within {settings.auc_tolerance} of the best validation AUC ({best_auc:.6f})",
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "resumed_from": len(done),
    }


def study_storage(path: Path) -> Path:
    """The study database behind `path`: a study.db file, or a run's output directory (finished or running study)."""
    for candidate in (path, path / "search" / "study.db", path / ".study" / "study.db"):
        if candidate.is_file():
            return candidate
    raise UserError(f"{path}: no Optuna study found (looked for search/study.db and .study/study.db); run the search stage with optuna")


def serve_dashboard(path: Path, host: str, port: int) -> int:
    """Serve optuna-dashboard on the study's sqlite storage until interrupted."""
    import optuna
    from optuna_dashboard import run_server
    from sqlalchemy.exc import SQLAlchemyError

    database = study_storage(path)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{database.resolve()}", skip_table_creation=True)
        studies = optuna.get_all_study_summaries(storage)
    except (SQLAlchemyError, optuna.exceptions.OptunaError, ValueError, RuntimeError) as exc:
        reason = str(exc.__cause__ or exc).splitlines()[0][:160]  # optuna wraps the database's own error
        raise UserError(f"{database}: not a readable Optuna study ({reason})") from exc
    names = ", ".join(s.study_name for s in studies) or "none"
    print(f"dashboard: studies {names} from {database} on http://{host}:{port} (Ctrl-C to stop)", file=sys.stderr)
    run_server(storage, host=host, port=port)
    return 0


def _trial_said(trials: int):
    """An Optuna callback: one line per finished trial (its valid AUC and size, or where it was pruned)."""

    def said(study: Any, trial: Any) -> None:
        import optuna

        model = trial.params.get("model", "?")
        if trial.state == optuna.trial.TrialState.COMPLETE:
            auc, size = trial.values
            what = f"valid AUC {auc:.4f}, {size:,.0f} parameters"
        else:
            what = trial.state.name.lower()
        print(f"search optuna: trial {trial.number + 1}/{trials} ({model}): {what}", file=sys.stderr)

    return said
