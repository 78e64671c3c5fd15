"""Shared fixtures: paths to the real datasets in ../shared/data, small encoded synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def shared(name: str) -> Path:
    """A dataset folder under ../shared/data, skipping the test where it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def synthetic_encoded():
    """200k synthetic rows ingested in memory: (train DataFrame, feature map)."""
    from features.ingest import IngestParams, ingest, load_raw
    from features.sources import SourceOptions

    params = IngestParams(source=SourceOptions(format=""))
    result = ingest(load_raw(None, params, 200_000, 7), params)
    train = result.splits["train"].collect()
    feature_map = result.encoder.feature_map({"train": {"rows": train.height}}, {})
    return train, feature_map
