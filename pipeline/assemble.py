"""The one place a model is assembled: the configured model, then every search method's state applied.

Train applies the states the search stage saved (`searched_states`); predict restores a
package's entries; distributed training takes the same searched states. Methods come
from the registry in `methods/`; nothing here names one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featuremap import FeatureMap
from methods import METHODS
from methods.base import Applied, Method, ModelSpec, Settings
from pipeline import catalog
from pipeline.config import PipelineConfig, method_settings
from pipeline.errors import UserError

if TYPE_CHECKING:
    from models.base import CTRModel

Searched = list[tuple[Method, Settings, Any]]


VALUES_MIN_ROWS = 10_000  # numeric_as_value auto: both from this many train rows (docs/training.md, "Numeric fields")


def resolved(cfg: PipelineConfig, feature_map: FeatureMap) -> PipelineConfig:
    """`cfg` with `train.numeric_as_value: auto` decided by the train split's rows: both (bucket ids and values) from
    VALUES_MIN_ROWS, bucket ids alone below; any other setting as given."""
    tc = cfg.train
    if tc.numeric_as_value != "auto":
        return cfg
    rows = feature_map.splits.get("train", {}).get("rows", 0)
    choice = "both" if rows >= VALUES_MIN_ROWS else False
    return cfg.model_copy(update={"train": tc.model_copy(update={"numeric_as_value": choice})})


def model_spec(cfg: PipelineConfig) -> ModelSpec:
    """The configured model: name, settings, embeddings and seed."""
    from models.embedding import EmbeddingConfig

    tc = cfg.train
    embedding = EmbeddingConfig(
        dim=tc.embedding_dim, backend=tc.backend, numeric_as_value=tc.numeric_as_value, piecewise_bins=tc.piecewise_bins
    )
    return ModelSpec(tc.model, dict(tc.params), embedding, tc.seed)


def build(spec: ModelSpec, feature_map: FeatureMap, seeded: bool = True) -> CTRModel:
    """The model of `spec` with fresh weights, seeded from `spec.seed` unless `seeded` is false (weights loaded after)."""
    import torch

    from models.registry import build_model

    if seeded:
        torch.manual_seed(spec.seed)
    return build_model(spec.name, feature_map, spec.embedding, spec.params)


def searched_states(cfg: PipelineConfig, search_dir: Path, names: set[str]) -> Searched:
    """(method, settings, state) for each of `names` whose search left a state in `search_dir`, in registry order. A
    search output without one of `names` is an error (its search ran without it): training without the method would
    pass for training with it; with no search output at all (the search stage did not run) there is nothing to apply."""
    found: Searched = []
    for name, method in METHODS.items():
        if name not in names:
            continue
        state = method.load(search_dir)
        if state is not None:
            found.append((method, method_settings(cfg, name), state))
        elif (search_dir / catalog.FIELDS.name).is_file():  # the search stage ran, without this method
            raise UserError(
                f"{search_dir}: the search output holds no {name} (its search ran without it); rerun the search stage "
                f"with it (--stages search,train) or leave it out of search.methods"
            )
    return found


def _hooks(applied: list[Applied]):
    """The one method's training hooks (two methods that both change training are not combined)."""
    hooks = [a.hooks for a in applied if a.hooks is not None]
    if len(hooks) > 1:
        raise ValueError("two searched states both change how the model trains")
    return hooks[0] if hooks else None


def assemble(
    feature_map: FeatureMap, spec: ModelSpec, searched: Searched = (), packaged: dict[str, dict[str, Any]] | None = None
) -> Applied:
    """The model with every method applied: `searched` states for training (seeded weights, the methods' hooks), or a
    package's `packaged` entries for scoring (structure only: the package's weights are loaded after)."""
    if packaged is not None:
        unknown = sorted(set(packaged) - set(METHODS))
        if unknown:
            raise UserError(f"the model package applies search method(s) {', '.join(unknown)} that this version does not have")
        methods = [(METHODS[name], entry) for name, entry in packaged.items()]
        model = None if any(m.replaces_model for m, _ in methods) else build(spec, feature_map, seeded=False)
        for method, entry in methods:
            model = method.restore(model, entry, spec, feature_map)
        return Applied(model, name=spec.name, params=spec.params)
    model = None if any(m.replaces_model for m, _, _ in searched) else build(spec, feature_map)
    steps: list[Applied] = []
    name, params = spec.name, spec.params
    for method, settings, state in searched:
        step = method.apply(model, state, settings, spec, feature_map)
        steps.append(step)
        model = step.model
        if step.name is not None:
            name, params = step.name, step.params
    return Applied(model, _hooks(steps), name, params)


def package_entries(searched: Searched) -> dict[str, dict[str, Any]]:
    """What a scoring package records of each applied method."""
    return {method.name: method.package_entry(settings, state) for method, settings, state in searched}


def derive(searched: Searched, feature_map: FeatureMap, splits: dict[str, Any]) -> tuple[FeatureMap, dict[str, Any]]:
    """The feature map and the splits (InMemoryData, or None) with every deriving method's fields added: train rows
    (the split named "train") get out-of-fold values, the others the whole train tables."""
    from models.data import InMemoryData

    splits = dict(splits)
    for method, _settings, state in searched:
        if not method.derives:
            continue
        feature_map = method.derived_map(state, feature_map)
        for name, data in splits.items():
            if data is not None:
                added = method.derive(state, data.columns, data.label if name == "train" else None)
                splits[name] = InMemoryData({**data.columns, **added}, data.label, feature_map, data.numeric_as_value)
    return feature_map, splits


def gbdt_map(feature_map: FeatureMap, derivers: Iterable[tuple[Method, Any]]) -> FeatureMap:
    """The fields the GBDT baselines take: `feature_map` without those derived by a method whose fields are not GBDT
    inputs (`derivers`: (method, state) of each deriving method applied)."""
    hidden = {name for method, state in derivers if not method.gbdt_input for name in method.derived_fields(state)}
    if not hidden:
        return feature_map
    return dataclasses.replace(feature_map, fields=tuple(f for f in feature_map.fields if f.name not in hidden))
