"""The feature-map contract between features/ (which writes it) and models/ (which reads it).

`FeatureMap` (spec.py) says which fields ingest encoded, their kinds, vocabularies and ids;
`InputError` (errors.py) is what a layer raises when the data or settings it was given are
wrong. The package depends on nothing but the standard library, so every layer may import it
without breaking the one-way arrows (pipeline -> features, models, methods).
"""

from featuremap.errors import InputError
from featuremap.spec import FIRST_VALUE_ID, MISSING_ID, OOV_ID, PADDING_ID, FeatureMap, FieldKind, FieldSpec

__all__ = ["FIRST_VALUE_ID", "MISSING_ID", "OOV_ID", "PADDING_ID", "FeatureMap", "FieldKind", "FieldSpec", "InputError"]
