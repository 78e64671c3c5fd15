"""The long-tailed synthetic data (features/longtail.py): web-like vocabularies, signal in head and tail."""

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from features import longtail, synthetic


def test_longtail_rows_are_reproducible_and_long_tailed():
    frame = synthetic.generate(200_000, 5, "longtail")
    assert frame.equals(synthetic.generate(200_000, 5, "longtail"))
    assert set(frame.columns) == {synthetic.LABEL, *synthetic.kinds("longtail")}
    assert 0.15 < frame[synthetic.LABEL].mean() < 0.3
    counts = {name: frame.group_by(name).len() for name in longtail.IDS}
    for name, size in longtail.IDS.items():
        seen = counts[name]
        assert seen.sort("len", descending=True)[name][0] == 0  # id 0 is the head
        assert seen.height > min(size, 200_000) // 10 and seen.height <= size
    once = counts["query"].filter(pl.col("len") == 1).height
    assert once > counts["query"].height / 2  # most queries are seen once: the tail dominates the vocabulary
    # the catalogue's hierarchy: an item has one advertiser and one category
    per_item = frame.group_by("item").agg(pl.col("advertiser").n_unique(), pl.col("category").n_unique())
    assert per_item["advertiser"].max() == 1 and per_item["category"].max() == 1


def test_tail_values_carry_as_much_signal_as_the_head():
    frame = synthetic.generate(200_000, 5, "longtail")
    model = longtail.LongTailModel.from_seed(5)
    cols = {name: frame[name].to_numpy() for name in longtail.COLUMNS}
    labels = frame[synthetic.LABEL].to_numpy()
    assert roc_auc_score(labels, longtail.planted_logit(model, cols)) > 0.75
    # an item's own effect: rows of items seen once against rows of the 100 most frequent items
    seen = frame.group_by("item").len()
    rare = frame["item"].is_in(seen.filter(pl.col("len") == 1)["item"].implode()).to_numpy()
    head = np.isin(cols["item"], seen.sort("len", descending=True)["item"][:100].to_numpy())
    effect = model.effects["item"][cols["item"]]
    tail_auc, head_auc = roc_auc_score(labels[rare], effect[rare]), roc_auc_score(labels[head], effect[head])
    assert tail_auc > 0.55 and abs(tail_auc - head_auc) < 0.05
