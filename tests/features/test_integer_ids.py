"""Integer columns that are ids (codes in arbitrary order) are read as categorical; counts and amounts stay numeric."""

import numpy as np
import polars as pl
import pytest

from features.ingest import IngestParams, RawInput, ingest
from features.schema import ID_TEST_ALPHA, SchemaOptions, id_test_pvalue
from features.sources import RawSource, SourceOptions
from features.split import SplitParams


def _rows(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shop = rng.integers(0, 400, rows)  # an id: each shop's effect is drawn at random, unrelated to its code's order
    effect = rng.normal(0, 1.2, 400)
    visits = rng.geometric(0.02, rows)  # a count: its effect rises smoothly with its value
    noise = rng.integers(0, 1_000, rows)  # an integer that carries nothing
    logit = -1 + effect[shop] + 0.8 * np.log(visits) - 2
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return {"shop": shop, "visits": visits, "noise": noise, "label": label}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_id_test_finds_ids_and_passes_counts_and_noise(seed):
    # a strong smooth effect leaves a little information inside each quantile bucket (p 0.0075 at seed 0, 64 buckets):
    # far from the id threshold, which an id passes by dozens of null sds
    data = _rows(40_000, seed)
    assert id_test_pvalue(data["shop"].astype(float), data["label"]) < ID_TEST_ALPHA
    assert id_test_pvalue(data["visits"].astype(float), data["label"]) > 1e-3
    assert id_test_pvalue(data["noise"].astype(float), data["label"]) > 0.01


@pytest.mark.parametrize("numeric", [(), ("shop",)])
def test_ingest_reads_an_integer_id_as_categorical_unless_the_config_says_numeric(numeric):
    frame = pl.LazyFrame(_rows(40_000, 1))
    params = IngestParams(source=SourceOptions(format="csv"), schema=SchemaOptions(numeric=numeric), split=SplitParams(valid=0.1, test=0.1))
    result = ingest(RawInput({"all": RawSource(frame, "label")}, "mem", "csv"), params)
    kinds = result.schema.kinds
    assert kinds["visits"] == "numeric" and kinds["noise"] == "numeric"
    said = [n for n in result.notes if "read as ids" in n]
    if numeric:
        assert kinds["shop"] == "numeric" and not said
    else:
        assert kinds["shop"] == "categorical" and len(said) == 1 and "shop" in said[0] and "visits" not in said[0]
