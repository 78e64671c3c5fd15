"""The Optuna study's logic with a stand-in for training (fast): resume, median pruning, the chosen trade-off."""

import pytest

from featuremap.errors import InputError
from pipeline.study import StudySettings, run_study

SIZES = {"fm": 1_000, "deepfm": 50_000, "autoint": 20_000}


def _fake(calls):
    """AUC grows with the embedding dim and the model; the learning curve rises by epoch."""

    def train_trial(config, on_epoch):
        calls.append(config)
        final = 0.70 + 0.01 * config["embedding_dim"] / 4 + {"fm": 0.0, "deepfm": 0.05, "autoint": 0.049}[config["model"]]
        for epoch in range(1, 5):
            on_epoch(epoch, final - 0.02 * (4 - epoch))
        return final, SIZES[config["model"]] * config["embedding_dim"]

    return train_trial


def test_study_resumes_prunes_and_picks_the_smallest_near_best_pareto_trial(tmp_path, capsys):
    storage = tmp_path / "study.db"
    calls = []
    first = run_study(storage, StudySettings(trials=4, seed=1), _fake(calls))
    assert len(calls) == 4 and first["resumed_from"] == 0
    second = run_study(storage, StudySettings(trials=10, seed=1), _fake(calls))
    assert second["resumed_from"] == 4 and len(second["trials"]) == 10 and len(calls) == 10  # only the 6 missing trials ran
    assert second["pruned"] >= 1  # trials below the median curve stop early
    # one log line a trial, in a scheduler's log too: its figures, or that it was pruned
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("search optuna: trial ")]
    assert len(said) == 10 and said[-1].startswith("search optuna: trial 10/10 (")
    assert sum("pruned" in line for line in said) == second["pruned"] and sum("valid AUC" in line for line in said) == 10 - second["pruned"]
    complete = [t for t in second["trials"] if t["state"] == "COMPLETE"]
    best = max(t["values"][0] for t in complete)
    chosen = second["chosen"]
    front = [t for t in complete if t["number"] in second["front"]]
    eligible = [t for t in front if t["values"][0] >= best - 0.001]
    assert chosen["params"] == min(t["values"][1] for t in eligible) and chosen["valid_auc"] >= best - 0.001
    assert chosen["config"]["model"] in SIZES and "learning_rate" in chosen["config"]
    # the resumed trials are new draws: its sampler is seeded past the trials the study had
    assert not any(later == earlier for later in calls[4:] for earlier in calls[:4])


def test_a_study_of_other_data_or_settings_does_not_resume(tmp_path, capsys):
    storage = tmp_path / "study.db"
    calls = []
    run_study(storage, StudySettings(trials=3, seed=1), _fake(calls), fingerprint="data A")
    again = run_study(storage, StudySettings(trials=3, seed=1), _fake(calls), fingerprint="data A")
    assert again["resumed_from"] == 3 and len(calls) == 3
    other = run_study(storage, StudySettings(trials=3, seed=1), _fake(calls), fingerprint="data B")
    assert other["resumed_from"] == 0 and len(calls) == 6 and len(other["trials"]) == 3
    assert "holds a study of other data or settings; starting afresh" in capsys.readouterr().err


def test_trials_of_the_train_model_start_from_its_settings(tmp_path):
    calls = []
    base = {"deepfm": {"hidden": [8], "dropout": 0.2, "batch_norm": True}}
    run_study(tmp_path / "study.db", StudySettings(trials=6, seed=3, models=("deepfm", "fm"), base_params=base), _fake(calls))
    deepfm = [c["params"] for c in calls if c["model"] == "deepfm"]
    assert deepfm and all(p["dropout"] == 0.2 and p["batch_norm"] and p["hidden"] == [400] * len(p["hidden"]) for p in deepfm)
    assert all(c["params"] == {} for c in calls if c["model"] == "fm")  # no settings for other models


def test_corrupt_study_storage_is_a_user_error(tmp_path):
    storage = tmp_path / "study.db"
    storage.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(InputError, match="locked or corrupt"):
        run_study(storage, StudySettings(trials=1), _fake([]))


def test_each_model_family_has_its_depth_knob():
    from pipeline.study import _model_params

    assert _model_params("dnn", 2) == {"hidden": [400, 400]}
    assert _model_params("autoint", 2) == {"layers": 2}
    assert _model_params("dcnv2", 2) == {"cross_layers": 2}  # its MLP keeps the configured hidden layers
    assert _model_params("fm", 2) == {}
