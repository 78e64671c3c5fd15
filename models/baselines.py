"""The baselines a run fits beside its deep model, by name: the GBDTs (models/gbdt.py) and the wide model (models/wide.py)."""

from __future__ import annotations

from models.gbdt import BaselineKind, CatBoost, LightGBM
from models.wide import Wide

KINDS: dict[str, BaselineKind] = {kind.name: kind for kind in (LightGBM(), CatBoost(), Wide())}
