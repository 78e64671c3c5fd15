"""The feature map: what ingest produced, read by rank, later stages and inference."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from featuremap.errors import InputError

FieldKind = Literal["categorical", "numeric", "multi"]

PADDING_ID = 0
OOV_ID = 1
MISSING_ID = 2
FIRST_VALUE_ID = 3

FORMAT_VERSION = 1


@dataclass(frozen=True)
class FieldSpec:
    """One input field as encoded: integer codes in `column`, plus extras by kind.

    - categorical: `column` holds ids in [0, vocab_size).
    - numeric: `column` holds bucket ids; `value_column` the standardised float.
    - multi: `column` holds a list of ids; `set_column` one id per distinct set
      of values (used where one value per row is needed, e.g. ranking).
    Ids 0, 1 and 2 are padding, out-of-vocabulary and missing for every field.
    """

    name: str
    kind: FieldKind
    column: str
    vocab_size: int
    value_column: str | None = None
    set_column: str | None = None
    set_vocab_size: int | None = None
    bucketing: str | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def rank_column(self) -> str:
        """The single-id-per-row column that ranking counts."""
        return self.set_column if self.kind == "multi" and self.set_column else self.column

    @property
    def rank_cardinality(self) -> int:
        """Size of the id space of `rank_column`."""
        if self.kind == "multi" and self.set_vocab_size is not None:
            return self.set_vocab_size
        return self.vocab_size


@dataclass(frozen=True)
class FeatureMap:
    """Fields, label and split sizes of one encoded dataset."""

    label: str
    fields: tuple[FieldSpec, ...]
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """Serialise to indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, origin: str = "feature map") -> FeatureMap:
        """Parse JSON written by `to_json`; a malformed map is a InputError naming `origin`."""
        try:
            raw = json.loads(text)
            if raw.get("version") != FORMAT_VERSION:
                raise ValueError(f"version {raw.get('version')!r}, expected {FORMAT_VERSION}")
            fields = tuple(FieldSpec(**spec) for spec in raw["fields"])
            return cls(
                label=raw["label"],
                fields=fields,
                splits=raw.get("splits", {}),
                source=raw.get("source", {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{origin}: not a valid feature map ({exc}); rerun the ingest stage") from exc

    @classmethod
    def load(cls, path: Path) -> FeatureMap:
        """Read a feature map file."""
        if not path.is_file():
            raise InputError(f"{path}: feature map not found; run the ingest stage first")
        return cls.from_json(path.read_text(), origin=str(path))
