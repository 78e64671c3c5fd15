"""The pipeline's YAML config, validated by pydantic; CLI flags override it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from methods import METHODS
from methods.capped import CappedSettings
from methods.dnis import DNISSettings
from methods.encodings import EncodingsSettings
from methods.hashing import HashingSettings
from methods.leaves import LeavesSettings
from methods.optfs import OptFSSettings
from methods.optinter import OptInterSettings
from methods.unified import UnifiedSettings
from models.settings import TrainConfig
from pipeline.catalog import STAGE_ORDER
from pipeline.errors import UserError
from pipeline.sections import (
    DataConfig,
    EncodeConfig,
    JoinConfig,
    QualityConfig,
    RankConfig,
    SchemaConfig,
    Section,
    SplitConfig,
)

__all__ = [
    "STAGE_ORDER",
    "DataConfig",
    "EncodeConfig",
    "JoinConfig",
    "PipelineConfig",
    "QualityConfig",
    "RankConfig",
    "SchemaConfig",
    "SplitConfig",
]


def _numeric_input(value: Any) -> Any:
    if not isinstance(value, (bool, str)) or value not in (True, False, "both", "auto"):
        raise PydanticCustomError("numeric_input", "true (values), false (bucket ids), both or auto")
    return value


def _not_unified(value: Any) -> Any:
    if value == "unified":
        raise PydanticCustomError(
            "moved", "Unified Embedding is the method unified now: search.methods [unified], its settings under search.unified"
        )
    return value


ModelName = Literal["lr", "fm", "deepfm", "dnn", "dcnv2", "autoint", "autoint+", "fgcnn"]  # models.registry.MODELS' names


class TrainSection(TrainConfig):
    """The trained model and the trainer (docs/training.md); the trainer's own settings are models/settings.py's."""

    model: Annotated[ModelName, BeforeValidator(_not_unified)] = "deepfm"
    """The model (over Unified Embedding's shared tables with search.methods [unified]: fm, deepfm, dnn, dcnv2, autoint or autoint+)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The model's own settings, e.g. {layers: 6, heads: 4, attention_dim: 128}."""
    embedding_dim: int = Field(10, ge=1)
    """Embedding width."""
    backend: Literal["torch", "torchrec"] = "torchrec"
    """torchrec (EmbeddingBagCollection + KeyedJaggedTensor) or plain torch nn.EmbeddingBag."""
    numeric_as_value: Annotated[bool | Literal["both", "auto"], BeforeValidator(_numeric_input)] = "auto"
    """Numeric fields fed as values instead of bucket ids (true: value × a field vector, or with piecewise_bins the piecewise-linear encoding), as bucket ids (false), or both: each numeric field as its bucket id and as its value, two field embeddings; auto: both from 10,000 train rows, bucket ids below (chosen on validation, docs/training.md)."""
    piecewise_bins: int = Field(0, ge=0)
    """With numeric_as_value true, both or auto (not false): embed each numeric field's value by the piecewise-linear encoding of its value over this many quantile bins of its train values (Gorishniy et al., 2022; docs/training.md); 0: value × a field vector."""
    min_delta: float = Field(1e-5, ge=0, lt=1)
    """An epoch is better only when its valid AUC beats the best by more than this; a smaller gain is a miss (the lr decays, patience counts), the best epoch's weights still kept; 1e-5 chosen on validation (the trainer's own default is 0): the same models on three of four data sets, Frappe −0.00004, and on 2 M rows 7 epochs instead of 18 at the same valid AUC (docs/training.md)."""
    embedding_regularizer: float = Field(0.05, ge=0)
    """L2 on every embedding table (FuxiCTR's embedding_regularizer: λ/2 · Σ w² added to each step's loss); 0.05 chosen on validation (the trainer's own default is 0)."""
    baselines: list[Literal["lightgbm", "catboost", "wide"]] = Field(default_factory=lambda: ["lightgbm", "wide"])
    """Baselines fitted beside the deep model on the same splits: GBDTs (derived fields included), early-stopped on valid AUC (catboost: slow on 2 cores), and wide (logistic regression over one-hot fields and the rank stage's significant pairs, its L2 picked on valid; on by default, chosen on validation); [] for none."""
    baseline_params: dict[Literal["lightgbm", "catboost", "wide"], dict[str, Any]] = Field(
        default_factory=lambda: {"lightgbm": {"cat_smooth": 100}}
    )
    """Each baseline's parameters over its library's defaults; LightGBM's cat_smooth 100 (library default 10: regularises splits on high-cardinality ids) was chosen on validation; {lightgbm: {}} for LightGBM's own defaults."""
    choose: str = "best"
    """The model the run packages and registers: best (the highest valid AUC among the deep model, each baseline and the blend of them all), deep, blend or a baseline's name."""
    baseline_max_rows: int = Field(2_000_000, ge=1000)
    """A baseline trains and early-stops on evenly spaced samples of at most this many train and valid rows (valid and test are scored whole)."""

    @model_validator(mode="after")
    def _piecewise(self) -> TrainSection:
        if self.piecewise_bins and not self.numeric_as_value:
            raise ValueError("piecewise_bins encodes numeric fields fed as values; numeric_as_value: false feeds none")
        return self

    @field_validator("baseline_params")
    @classmethod
    def _wide_params(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The wide model's own keys, checked here rather than after the deep model has trained: C, its grid of L2
        inverse strengths (a number is a grid of one), and bins, its quantile buckets per numeric field."""
        wide = dict(value.get("wide", {}))
        if "C" in wide:
            grid = wide["C"] if isinstance(wide["C"], list) else [wide["C"]]
            if not grid or not all(isinstance(c, int | float) and not isinstance(c, bool) and c > 0 for c in grid):
                raise ValueError(f"baseline_params.wide.C: {wide['C']!r} is not a positive number or a list of them")
            wide["C"] = [float(c) for c in grid]
        if "bins" in wide and not (isinstance(wide["bins"], int) and not isinstance(wide["bins"], bool) and wide["bins"] >= 2):
            raise ValueError(f"baseline_params.wide.bins: {wide['bins']!r} is not a whole number of at least 2")
        return {**value, "wide": wide} if "wide" in value else value

    @model_validator(mode="after")
    def _choice(self) -> TrainSection:
        known = ["best", "deep", *self.baselines, *(["blend"] if self.baselines else [])]
        if self.choose not in known:
            raise ValueError(f"choose: {self.choose!r} is not a candidate; use one of {', '.join(known)}")
        return self


class OptunaSection(Section):
    """An Optuna study over models and settings: AUC up, parameters down (docs/methods/optuna.md)."""

    trials: int = Field(12, ge=1)
    """Trials of the study."""
    models: list[ModelName] = Field(default_factory=lambda: ["fm", "deepfm", "autoint"])
    """Models the study samples."""
    embedding_dims: list[int] = Field(default_factory=lambda: [4, 8, 10, 16], min_length=1)
    """Embedding widths the study samples."""
    learning_rate: tuple[float, float] = (1e-4, 1e-2)
    """Learning-rate range (log)."""
    max_depth: int = Field(3, ge=1)
    """Most MLP layers of DNN / DeepFM / AutoInt+, attention layers of AutoInt, cross layers of DCN-V2."""
    max_epochs: int = Field(10, ge=1)
    """Most epochs per trial."""
    prune_after: int = Field(2, ge=1)
    """Median-rule pruning from this epoch on."""
    auc_tolerance: float = Field(0.001, ge=0)
    """The chosen trade-off: the smallest Pareto trial within this of the best AUC."""
    seed: int = 0
    """The sampler's seed."""
    methods: list[Literal["optfs", "dnis"]] = Field(default_factory=list)
    """Also search these methods' own settings in every trial; the chosen trial's searches go to train."""
    optfs_l1: tuple[float, float] = (1e-8, 1e-4)
    """OptFS λ range (log)."""
    optfs_gamma: tuple[float, float] = (100.0, 10_000.0)
    """OptFS γ range (log)."""
    dnis_prune_ratio: tuple[float, float] = (0.3, 0.8)
    """DNIS prune-ratio range."""

    @model_validator(mode="after")
    def _ranges(self) -> OptunaSection:
        for name in ("learning_rate", "optfs_l1", "optfs_gamma", "dnis_prune_ratio"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name}: need 0 < low <= high, got [{low}, {high}]")
        if self.optfs_gamma[0] <= 1 or self.dnis_prune_ratio[1] >= 1:
            raise ValueError("optfs_gamma must be above 1 and dnis_prune_ratio below 1")
        return self


def _registered_method(name: str) -> str:
    """A search method's name: a registered method (methods/__init__.py) or the study, optuna."""
    known = [*METHODS, "optuna"]
    if name not in known:
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": ", ".join(map(repr, known))})
    return name


def method_settings(cfg: PipelineConfig, name: str) -> BaseModel:
    """The settings of search method `name`: its section under `search`, or its defaults when it has no section."""
    return getattr(cfg.search, name, None) or METHODS[name].settings()


class SearchSection(Section):
    """The search stage: methods that decide features, sizes, interactions or the model before train."""

    methods: list[Annotated[str, AfterValidator(_registered_method)]] = Field(default_factory=lambda: ["encodings"])
    """Any of encodings, leaves, optfs, dnis, optinter, unified, hashing, capped (methods/, applied in that order: encodings' derived fields feed the others (leaves' GBDT included); dnis searches on optfs's gates) or optuna; optinter, the embedding layouts (unified, hashing, capped) and optuna run alone. The default, [encodings], was chosen on validation (bench/RESULTS.md); [] for none."""
    max_features: int | None = Field(None, ge=1)
    """Ranking budget: search and train use only the rank stage's top N features (plus OptInter's pair fields); null: all."""
    baseline: bool = True
    """Also train the unsearched model on the same splits, the "before" figures, when a method that trains runs
    (OptFS, DNIS, OptInter, Optuna; encodings and the layouts train nothing)."""
    encodings: EncodingsSettings = Field(default_factory=EncodingsSettings)
    """Statistical encodings settings (methods/encodings.py)."""
    leaves: LeavesSettings = Field(default_factory=LeavesSettings)
    """GBDT leaf indices settings (methods/leaves.py)."""
    optfs: OptFSSettings = Field(default_factory=OptFSSettings)
    """OptFS settings (methods/optfs.py)."""
    dnis: DNISSettings = Field(default_factory=DNISSettings)
    """DNIS settings (methods/dnis.py)."""
    optinter: OptInterSettings = Field(default_factory=OptInterSettings)
    """OptInter settings (methods/optinter.py)."""
    unified: UnifiedSettings = Field(default_factory=UnifiedSettings)
    """Unified Embedding settings (methods/unified.py)."""
    hashing: HashingSettings = Field(default_factory=HashingSettings)
    """Hashing trick settings (methods/hashing.py)."""
    capped: CappedSettings = Field(default_factory=CappedSettings)
    """Frequency-capped vocabulary settings (methods/capped.py)."""
    optuna: OptunaSection = Field(default_factory=OptunaSection)
    """Optuna settings."""

    @model_validator(mode="after")
    def _alone(self) -> SearchSection:
        for method in [name for name, m in METHODS.items() if m.replaces_model] + ["optuna"]:
            if method in self.methods and len([m for m in self.methods if not (m in METHODS and METHODS[m].derives)]) > 1:
                raise ValueError(f"{method} chooses the model, so it runs alone: search the other methods in another run")
        return self


class TrackingConfig(Section):
    """MLflow tracking and the model registry (docs/operations.md)."""

    enabled: bool = True
    """Log to MLflow."""
    uri: str | None = None
    """Tracking URI; null: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db."""
    experiment: str = "ctr-pipeline"
    """Experiment name."""
    fallback: bool = False
    """An unusable store is an error (within seconds); true: log to ./mlflow.db instead and say so."""
    register_model: bool = True
    """Register the trained model."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Tags set on every run of this pipeline run (the DAG sets date and partition); `--tag KEY=VALUE` adds one."""
    registered_model: str | None = None
    """Its registered name; null: ctr-<train.model> (autoint+ -> ctr-autoint-plus), whichever candidate the run chose."""


class EngineConfig(Section):
    """Where the data stages run: in this process, or as Ray tasks over parts of their parquet input (docs/operations.md)."""

    kind: Literal["local", "ray"] = "local"
    """local, or ray: ingest (parquet input) and rank run as tasks over runs of row groups, and the driver adds their counts in row order (same outputs)."""
    address: str | None = None
    """The Ray cluster to use (`auto`, `ray://host:10001`); null: start a local one with `workers` CPUs."""
    workers: int = Field(2, ge=1)
    """CPUs of the local Ray started when no address is given."""
    shards: int = Field(8, ge=1)
    """Tasks per round: over the input's files for ingest, per encoded split for rank (runs of row groups)."""


class PromoteConfig(Section):
    """Champion and challenger: whether this run's registered model replaces the one serving (docs/operations.md)."""

    enabled: bool = True
    """Compare the registered model with the champion and move the alias when it wins (needs tracking.register_model)."""
    alias: str = Field("champion", min_length=1)
    """The registry alias of the model that serves (`predict --model models:/<name>@champion`)."""
    challenger_alias: str = Field("challenger", min_length=1)
    """The alias a model that was not promoted gets."""
    margin: float = Field(0.001, ge=0)
    """Valid AUC the new model must gain over the champion's, both scored on this run's valid rows."""
    alpha: float = Field(0.05, gt=0, le=1)
    """The gain must also be significant on those rows: the one-sided DeLong p-value (paired, same rows) below this; 1 decides on the margin alone."""
    max_psi: float = Field(0.25, gt=0)
    """Largest population stability index of a vocabulary field between the champion's train data and this run's (0.25: the usual 'major shift')."""
    max_mean_shift: float = Field(0.5, gt=0)
    """Largest shift of a numeric field's train mean, in the champion's train standard deviations."""
    max_click_rate_change: float = Field(0.5, gt=0)
    """Largest relative change of the train click rate against the champion's (0.5: ±50%)."""
    allow_schema_change: bool = False
    """Promote even when fields were added, removed or changed kind since the champion (they need a look first by default)."""


class PipelineConfig(Section):
    """The whole config: one YAML file (`--config`), CLI flags override it."""

    data: DataConfig = Field(default_factory=DataConfig)
    """The input."""
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    """Column kind overrides."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    """Splitting."""
    encode: EncodeConfig = Field(default_factory=EncodeConfig)
    """Encoding."""
    rank: RankConfig = Field(default_factory=RankConfig)
    """Ranking."""
    search: SearchSection = Field(default_factory=SearchSection)
    """Search methods."""
    train: TrainSection = Field(default_factory=TrainSection)
    """Training."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """MLflow."""
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    """Champion and challenger."""
    engine: EngineConfig = Field(default_factory=EngineConfig)
    """Where ingest and rank run (not part of any fingerprint: both engines give the same outputs)."""
    out: Path = Path("runs/latest")
    """Output directory."""
    stages: list[Literal["ingest", "rank", "search", "train", "promote", "report"]] = Field(default_factory=lambda: list(STAGE_ORDER))
    """Stages to run, in order; search runs only when search.methods names a method."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)

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
        message = "unknown key; check the spelling against docs/config.md"
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (safe_load keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (line {key_node.start_mark.line + 1})", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path | None, overrides: dict[str, Any]) -> PipelineConfig:
    """Read the YAML file (if any), apply CLI overrides (nested dicts) and validate."""
    raw: dict[str, Any] = {}
    origin = "command line"
    if path is not None:
        origin = f"config {path}"
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the config as UTF-8") from exc
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{path}: the config must be a mapping of sections (data, split, encode, rank, ...)")
        raw = loaded or {}
    try:
        return PipelineConfig.model_validate(_merge(raw, overrides))
    except ValidationError as exc:
        raise UserError(_describe(exc, origin)) from exc
