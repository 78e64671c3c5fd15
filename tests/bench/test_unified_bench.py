"""The Unified Embedding budget sweep's --quick mode runs every method end to end, plots and logs to MLflow."""

import json

from bench.unified_bench import METHODS, main
from tests.conftest import tracking_store


def test_quick_sweep_trains_every_method_at_each_budget_and_logs_the_pareto_plot(tmp_path):
    uri = tracking_store(tmp_path / "mlflow.db")
    assert main(["--quick", "--threads", "1", "--out", str(tmp_path / "out"), "--tracking-uri", uri]) == 0  # one thread per xdist worker
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results) == {"longtail|full|1|1", "longtail|unified|1|1"} | {f"longtail|{m}|0.25|1" for m in METHODS if m != "full"}
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
