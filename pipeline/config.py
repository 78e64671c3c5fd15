"""The pipeline's YAML config, validated by pydantic; CLI flags override it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import UserError

STAGE_ORDER = ("ingest", "rank", "search", "train", "report")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JoinConfig(_Section):
    path: Path
    key: str
    format: Literal["csv", "parquet", "criteo", "libsvm"] | None = None


class DataConfig(_Section):
    path: Path | None = None
    format: Literal["criteo", "csv", "libsvm", "parquet"] | None = None
    label: str | None = None
    label_threshold: float | None = None
    # Label value(s) read as a click when the label is text (yes/no, true/false, X/no_X are read without it).
    positive: list[str] | None = Field(None, min_length=1)
    separator: str | None = Field(None, min_length=1, max_length=1)
    multi_separator: str = Field("|", min_length=1)
    joins: list[JoinConfig] = Field(default_factory=list)
    libsvm_field_ranges: list[tuple[int, int]] | None = None
    synthetic_rows: int = Field(200_000, ge=1)
    synthetic_seed: int = 7

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_values(cls, value: Any) -> Any:
        if value is None:
            return None
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values):
            raise ValueError("quote the value ('yes', 'true'): YAML reads a bare yes/no/true/false as a boolean")
        return [str(v) for v in values]

    @field_validator("separator", mode="before")
    @classmethod
    def _named_separator(cls, value: Any) -> Any:
        return {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(value, value) if isinstance(value, str) else value


class SchemaConfig(_Section):
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    multi: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)


class SplitConfig(_Section):
    method: Literal["random", "time"] = "random"
    valid: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    time_column: str | None = None
    seed: int = 2021


class EncodeConfig(_Section):
    min_count: int = Field(1, ge=1)
    numeric_bucketing: Literal["quantile", "log"] | None = None
    numeric_bins: int = Field(16, ge=2)
    quantile_sample_rows: int = Field(1_000_000, ge=1000)


class QualityConfig(_Section):
    rare_count: int = Field(10, ge=1)
    near_unique_ratio: float = Field(0.5, gt=0, le=1)
    leakage_ratio: float = Field(0.9, gt=0, le=1)
    psi_bins: int = Field(20, ge=1)
    drift_psi: float = Field(0.25, gt=0)


class RankConfig(_Section):
    score: Literal["plain", "shifted", "expected", "standardized", "permutation", "chi2"] = "standardized"
    permutations: int = Field(5, ge=2)
    pair_budget: int = Field(1000, ge=0)
    pair_rows: int = Field(1_000_000, ge=1)
    pair_max_values: int = Field(1024, ge=1)
    redundancy_weight: float = Field(1.0, ge=0)
    combined_weight: float = Field(1.0, ge=0)
    seed: int = 0
    batch_rows: int = Field(1 << 18, ge=1)
    plot_top: int = Field(30, ge=1)
    quality: QualityConfig = Field(default_factory=QualityConfig)


class TrainSection(_Section):
    model: Literal["lr", "fm", "deepfm", "autoint", "autoint+", "fgcnn", "unified"] = "deepfm"
    params: dict[str, Any] = Field(default_factory=dict)
    embedding_dim: int = Field(10, ge=1)
    backend: Literal["torch", "torchrec"] = "torchrec"
    numeric_as_value: bool = False
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(4096, ge=1)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(2, ge=1)
    embedding_regularizer: float = Field(0.0, ge=0)
    seed: int = 2021
    device: str = "auto"
    # auto: bf16 autocast on CUDA and on CPUs with AMX, fp32 elsewhere; fp16 (with loss scaling) on CUDA only.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    checkpoint_seconds: float = Field(600.0, gt=0)


class OptFSSection(_Section):
    epochs: int = Field(5, ge=1)  # search epochs T; the temperature grows from 1 to gamma over them
    gamma: float = Field(1000.0, gt=1)
    l1: float = Field(1e-8, ge=0)  # lambda on the sum of all soft gates (tiny: the sum runs over every value)
    gate_lr: float | None = Field(None, gt=0)  # default: train.learning_rate
    init: float = 0.5
    # weights restored for the retrain: those at the start of this search epoch (1: the initial weights). CTR models
    # overfit after an epoch or two, so a later snapshot starts the retrain past the best epoch on such data.
    rewind_epoch: int = Field(1, ge=1)


class DNISSection(_Section):
    freq_blocks: int = Field(4, ge=1)  # values of each field cut into K frequency blocks
    dim_blocks: int | None = Field(None, ge=1)  # dimension blocks B (default: one per dimension)
    warmup_epochs: int = Field(1, ge=0)
    search_epochs: int = Field(2, ge=1)
    alpha_lr: float = Field(0.01, gt=0)
    l1: float = Field(1e-5, ge=0)
    prune_ratio: float = Field(0.5, gt=0, lt=1)  # share of embedding entries removed
    # the retrain starts from the weights before warm-up, masked (true), or fine-tunes the searched weights (false);
    # auto: rewind only when warm-up + search ended `patience` or more epochs after their best validation epoch
    rewind: bool | Literal["auto"] = "auto"


class OptInterSection(_Section):
    max_pairs: int = Field(20, ge=1)  # candidate pairs: the rank stage's top pairs by gain (single-valued fields)
    # a memorised cross needs this many train rows; rarer ones share the pair's OOV row. 20, not 5: on Frappe rare
    # item crosses overfit, and 20 lifted the searched model by 0.0014-0.0021 over three seeds (bench/RESULTS.md)
    min_count: int = Field(20, ge=1)
    # alpha must still be undecided when memorised crosses start to overfit (a few epochs in): a slow alpha over 10
    # epochs chose best on Frappe and on the synthetic data (bench/RESULTS.md). The paper's 1e-3 and 5e-5 are tuned
    # for ~20,000 Criteo steps.
    search_epochs: int = Field(10, ge=1)
    arch_lr: float = Field(0.01, gt=0)
    anneal: float = Field(0.001, ge=0)  # softmax temperature t = max(0.01, 1 - anneal * step)
    hidden: list[int] = Field(default_factory=lambda: [400, 400, 400])
    dropout: float = Field(0.0, ge=0, lt=1)  # the MLP's, in the search and in the retrained model
    batch_norm: bool = False
    compare: bool = False  # also train all-memorise, all-factorise and all-naive models (validation AUC)
    # alpha's data: "valid" one step on a validation batch after each training step (first-order bi-level; selection
    # on the validation split like every other search), "train" jointly with the weights on training batches (the
    # paper), where the training loss favours memorise (most capacity) for nearly every pair (bench/RESULTS.md)
    arch_split: Literal["train", "valid"] = "valid"
    # epochs (of search_epochs) that train the weights with alpha held uniform before alpha moves; on Frappe 3 of 10
    # helped one seed and hurt two (factorised item crosses), so none by default (bench/RESULTS.md)
    warmup_epochs: int = Field(0, ge=0)
    # L2 on the factor table, apart from train.embedding_regularizer (which leaves it out: at BARS's 0.05 it held
    # every product at zero, so factorise could not be told from naive)
    factor_regularizer: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _warmup_within_search(self) -> OptInterSection:
        if self.warmup_epochs >= self.search_epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below search_epochs ({self.search_epochs})")
        return self


class OptunaSection(_Section):
    trials: int = Field(12, ge=1)
    models: list[Literal["lr", "fm", "deepfm", "autoint", "autoint+", "fgcnn"]] = Field(default_factory=lambda: ["fm", "deepfm", "autoint"])
    embedding_dims: list[int] = Field(default_factory=lambda: [4, 8, 10, 16], min_length=1)
    learning_rate: tuple[float, float] = (1e-4, 1e-2)
    max_depth: int = Field(3, ge=1)  # DNN layers of DeepFM / AutoInt+, attention layers of AutoInt
    max_epochs: int = Field(10, ge=1)
    prune_after: int = Field(2, ge=1)  # median-rule pruning from this epoch on
    auc_tolerance: float = Field(0.001, ge=0)  # the chosen trade-off: smallest Pareto trial within this of the best AUC
    seed: int = 0
    # Also search these methods' own hyperparameters in every trial (the rest of their settings from search.optfs /
    # search.dnis); the chosen trial's searches are rerun and handed to train like the methods alone.
    methods: list[Literal["optfs", "dnis"]] = Field(default_factory=list)
    optfs_l1: tuple[float, float] = (1e-8, 1e-4)
    optfs_gamma: tuple[float, float] = (100.0, 10_000.0)
    dnis_prune_ratio: tuple[float, float] = (0.3, 0.8)

    @model_validator(mode="after")
    def _ranges(self) -> OptunaSection:
        for name in ("learning_rate", "optfs_l1", "optfs_gamma", "dnis_prune_ratio"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name}: need 0 < low <= high, got [{low}, {high}]")
        if self.optfs_gamma[0] <= 1 or self.dnis_prune_ratio[1] >= 1:
            raise ValueError("optfs_gamma must be above 1 and dnis_prune_ratio below 1")
        return self


class SearchSection(_Section):
    # run in this order; dnis searches on top of optfs's gates when both are given; optinter replaces the model
    # (its own MLP over field embeddings and pair vectors) and runs alone
    methods: list[Literal["optfs", "dnis", "optinter", "optuna"]] = Field(default_factory=list)
    # ranking budget: search and the trained model use only the rank stage's top features (ranking.csv order);
    # OptInter's candidate pairs come from those features too. None: every feature.
    max_features: int | None = Field(None, ge=1)
    baseline: bool = True  # also train the unsearched model on the same splits: the "before" figures
    optfs: OptFSSection = Field(default_factory=OptFSSection)
    dnis: DNISSection = Field(default_factory=DNISSection)
    optinter: OptInterSection = Field(default_factory=OptInterSection)
    optuna: OptunaSection = Field(default_factory=OptunaSection)

    @model_validator(mode="after")
    def _alone(self) -> SearchSection:
        for method in ("optinter", "optuna"):
            if method in self.methods and len(self.methods) > 1:
                raise ValueError(f"{method} chooses the model, so it runs alone: search the other methods in another run")
        return self


class TrackingConfig(_Section):
    enabled: bool = True
    uri: str | None = None
    experiment: str = "ctr-pipeline"
    # An unusable tracking store is an error (within seconds); with fallback the run logs to ./mlflow.db and says so.
    fallback: bool = False
    # The trained model is logged to the train run and registered under this name ("ctr-<model>" when unset).
    register_model: bool = True
    registered_model: str | None = None


class PipelineConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    split: SplitConfig = Field(default_factory=SplitConfig)
    encode: EncodeConfig = Field(default_factory=EncodeConfig)
    rank: RankConfig = Field(default_factory=RankConfig)
    search: SearchSection = Field(default_factory=SearchSection)
    train: TrainSection = Field(default_factory=TrainSection)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    out: Path = Path("runs/latest")
    # search runs only when search.methods names a method
    stages: list[Literal["ingest", "rank", "search", "train", "report"]] = Field(default_factory=lambda: list(STAGE_ORDER))

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        if self.split.valid + self.split.test >= 1:
            raise ValueError("split.valid + split.test must be below 1")
        if self.split.method == "time" and not self.split.time_column:
            raise ValueError("split.method 'time' needs split.time_column")
        return self


def _describe(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]).replace("schema_", "schema") or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key; check the spelling against README's config reference"
    got = first.get("input")
    shown = "" if first["type"] == "extra_forbidden" or isinstance(got, dict) else f" (got {got!r})"
    return f"{origin}: {where}: {message}{shown}"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None, overrides: dict[str, Any]) -> PipelineConfig:
    """Read the YAML file (if any), apply CLI overrides (nested dicts) and validate."""
    raw: dict[str, Any] = {}
    origin = "command line"
    if path is not None:
        origin = f"config {path}"
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{path}: the config must be a mapping of sections (data, split, encode, rank, ...)")
        raw = loaded or {}
    try:
        return PipelineConfig.model_validate(_merge(raw, overrides))
    except ValidationError as exc:
        raise UserError(_describe(exc, origin)) from exc
