"""The training bench reads the FuxiCTR anchor's printed metrics in the forms FuxiCTR's `evaluate` returns."""

from bench.train_bench import anchor_metrics


def test_the_anchors_metrics_are_read_from_an_ordered_dict_a_dict_and_numpy_floats():
    stdout = (
        "FuxiCTR AutoInt full run: 1671 s\n"
        "  0%|          | 0/15 [00:00<?, ?it/s] 7%|▋         | 1/15\n"
        "valid OrderedDict([('logloss', 0.171808), ('AUC', 0.981589)])\n"
        "test {'logloss': np.float64(0.174219), 'AUC': np.float64(0.981178)}\n"
    )
    assert anchor_metrics(stdout) == {"valid_auc": 0.981589, "valid_logloss": 0.171808, "test_auc": 0.981178, "test_logloss": 0.174219}
    assert anchor_metrics("valid {'logloss': 0.2, 'AUC': 9e-1}\n") == {"valid_auc": 0.9, "valid_logloss": 0.2}
    assert anchor_metrics("FuxiCTR AutoInt epoch 1: 3,604 training samples/s (56.1 s)\n") == {}
