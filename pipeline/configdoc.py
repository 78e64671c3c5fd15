"""The config reference, docs/config.md, generated from the schema: every key, its type, default and meaning.

    python -m pipeline.configdoc            # rewrite docs/config.md
    python -m pipeline.configdoc --check    # exit 1 when docs/config.md is stale

Defaults and descriptions live once, in `pipeline/config.py` (a field's docstring is
its description); `tests/pipeline/test_configdoc.py` fails when this file is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from pipeline.config import PipelineConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"
HEADER = """# Config reference

Generated from `pipeline/config.py` by `python -m pipeline.configdoc`; do not edit by hand
(`make test` fails when it is stale). One YAML file (`--config`) holds any of these keys;
CLI flags override it (`--data`, `--format`, `--label`, `--positive`, `--separator`,
`--rows`, `--model`, `--device`, `--search`, `--stages`, `--out`, `--engine`, `--ray-address`,
`--tracking-uri`, `--no-tracking`, `--tag`). Unknown keys and values outside a key's range are errors (exit 2).
"""


def type_name(annotation: object) -> str:
    """A key's type in words: `random | time`, `int | null`, `list of str`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # a constrained type inside a union: the type, its constraint is in the range
        return type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) if not isinstance(a, str) else a for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return f"[{', '.join(type_name(a) for a in args)}]"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return getattr(annotation, "__name__", str(annotation))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(value: object) -> str:
    return f"`{_cell(json.dumps(value, default=str))}`"


def _section(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    nested: list[tuple[str, type[BaseModel]]] = []
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation is not model:
            nested.append((key, annotation))
            continue
        default = "required" if field.is_required() else _default(field.get_default(call_default_factory=True))
        rows.append(f"| `{key}` | {type_name(annotation)} | {default} | {_cell(field.description or '')} |")
    if rows:
        out += ["| key | type | default | what it does |", "|---|---|---|---|", *rows, ""]
    for key, sub in nested:
        out += [f"## `{key}`" if "." not in key else f"### `{key}`", "", (sub.__doc__ or "").strip(), ""]
        _section(sub, f"{key}.", out)


def render() -> str:
    """The whole reference as markdown."""
    out = [HEADER]
    _section(PipelineConfig, "", out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.configdoc", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/config.md differs from the schema")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not DOC.is_file() or DOC.read_text() != text
        if stale:
            print(f"{DOC} is stale: run python -m pipeline.configdoc", file=sys.stderr)
        return int(stale)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
