"""docs/config.md is generated from the config schema, and every key says what it does."""

from pydantic import BaseModel

from pipeline import configdoc
from pipeline.config import PipelineConfig


def _fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, f"{prefix}{field.alias or name}.")
        else:
            yield f"{prefix}{field.alias or name}", field


def test_config_reference_is_current():
    assert configdoc.DOC.read_text() == configdoc.render(), "docs/config.md is stale: run python -m pipeline.configdoc"
    assert configdoc.main(["--check"]) == 0


def test_every_key_is_documented_with_its_default():
    text = configdoc.render()
    for key, field in _fields(PipelineConfig):
        assert field.description, f"{key} has no description (a docstring under the field in pipeline/config.py)"
        assert f"| `{key}` |" in text
    assert "| `search.optinter.min_count` | int | `20` |" in text  # the default written once, read from the schema


def _as_list(value):
    return list(value) if isinstance(value, tuple | list) else value


def test_computation_dataclasses_take_the_config_defaults():
    """The trainer's and the ranking's parameter dataclasses mirror config sections: their defaults must agree.

    (The search methods have no mirror: their procedures read the methods' settings classes.)"""
    import dataclasses

    from features.quality import QualityParams
    from features.ranking import RankParams
    from models.trainer import TrainConfig
    from pipeline import config

    pairs = [
        (config.TrainSection, TrainConfig),
        (config.RankConfig, RankParams),
        (config.QualityConfig, QualityParams),
    ]
    for section, mirror in pairs:
        defaults = section()
        for f in dataclasses.fields(mirror):
            assert f.name in section.model_fields, f"{mirror.__name__}.{f.name} has no config key in {section.__name__}"
            ours = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            theirs = getattr(defaults, f.name)
            assert _as_list(ours) == _as_list(theirs), f"{mirror.__name__}.{f.name}: {ours!r} against the config's {theirs!r}"
