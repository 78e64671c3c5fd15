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
