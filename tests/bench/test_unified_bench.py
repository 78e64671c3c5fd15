"""The Unified Embedding budget sweep's --quick mode runs every method end to end, plots and logs to MLflow."""

import json

from bench.unified_bench import METHODS, main
from tests.conftest import tracking_store


def test_quick_sweep_trains_every_method_at_each_budget_and_logs_the_pareto_plot(tmp_path):
    uri = tracking_store(tmp_path / "mlflow.db")
    assert main(["--quick", "--threads", "1", "--out", str(tmp_path / "out"), "--tracking-uri", uri]) == 0  # one thread per xdist worker
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    digest = next(iter(results.values()))["digest"]  # the settings and code the runs were made with
    keys = {"longtail|full|1|1", "longtail|unified|1|1"} | {f"longtail|{m}|0.25|1" for m in METHODS if m != "full"}
    assert set(results) == {f"{key}|deepfm|{digest}" for key in keys}
    results = {key.rsplit("|", 2)[0]: r for key, r in results.items()}
    full = results["longtail|full|1|1"]["embedding_params"]
    for key, r in results.items():
        assert 0.5 < r["valid_auc"] < 1 and 0.5 < r["test_auc"] < 1, key
        share = r["embedding_params"] / full
        assert share <= r["fraction"] + 1e-3 and share > r["fraction"] * 0.95, key  # each method uses its budget, not more
    assert results["longtail|capped|0.25|1"]["min_count"] >= 1
    assert (tmp_path / "out" / "unified_longtail.png").stat().st_size > 10_000

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("unified-embedding-budget-sweep").experiment_id])
    assert run.data.params["dataset"] == "longtail" and "unified_0.25_test_auc" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"unified_longtail.png", "longtail_runs.json"}


def test_a_rerun_with_other_settings_trains_again_and_shows_only_its_own_runs(tmp_path, capsys):
    # The stored runs were keyed by dataset, method, budget and seed alone: a rerun with another layout printed the
    # first run's figures as its own. Now a stored run counts only under the same settings and code.
    args = ["--quick", "--threads", "1", "--methods", "unified", "--budgets", "0.25", "--out", str(tmp_path), "--tracking-uri", "none"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main([*args, "--unified-layout", "1x2"]) == 0  # --quick keeps its budgets 1 and 1/4
    second = capsys.readouterr().out
    runs = json.loads((tmp_path / "results.json").read_text())
    assert len(runs) == 4 and len({r["digest"] for r in runs.values()}) == 2
    assert first.count("  longtail|unified|") == 2 and second.count("  longtail|unified|") == 2  # each trained its two
    assert main(args) == 0  # the first settings again: nothing trained, and the table is the first run's
    third = capsys.readouterr().out
    assert len(json.loads((tmp_path / "results.json").read_text())) == 4 and "  longtail|unified|" not in third
    assert first.split("\n\n", 1)[1].split("machine:")[0] == third.split("\n\n", 1)[1].split("machine:")[0]
