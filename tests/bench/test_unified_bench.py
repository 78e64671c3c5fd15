"""The Unified Embedding budget sweep's --quick mode runs every method end to end, plots and logs to MLflow."""

import json

from bench.unified_bench import METHODS, main, summarise, table
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
    # The stored runs were keyed by dataset, method, budget and seed alone: a rerun with another setting printed the
    # first run's figures as its own. Now a stored run counts only under the same settings and code (the digest), and
    # Unified Embedding's layout is part of its key.
    args = ["--quick", "--threads", "1", "--methods", "unified", "--budgets", "0.25", "--out", str(tmp_path), "--tracking-uri", "none"]
    assert main(args) == 0  # --quick keeps its budgets 1 and 1/4
    first = capsys.readouterr().out
    assert first.count("  longtail|unified|") == 2
    assert main([*args, "--unified-layout", "1x1,1x2"]) == 0  # the 1x1 runs are reused, the 1x2 ones trained
    second = capsys.readouterr().out
    assert second.count("  longtail|unified|") == 0 and second.count("  longtail|unified@1x2|") == 2
    assert "(best valid of 2)" in second and second.count("| unified 1x") == 4  # per budget: the chosen one and the other
    assert main([*args, "--dim", "8", "--eval-steps", "40"]) == 0  # other settings: trained again
    assert capsys.readouterr().out.count("  longtail|unified|") == 2
    runs = json.loads((tmp_path / "results.json").read_text())
    assert len(runs) == 6 and len({r["digest"] for r in runs.values()}) == 2
    curves = [r["valid_auc_by_step"] for r in runs.values() if r["valid_auc_by_step"]]  # only the --eval-steps runs
    assert len(curves) == 2 and all([step for step, _ in c] == [40, 80] for c in curves)  # 48 k rows at 512 a step: 93 steps
    assert all(r["batch_size"] == 512 and r["embedding_optimizer"] == "lazy_adam" for r in runs.values())  # the long-tailed data's
    assert main(args) == 0  # the first settings again: nothing trained, and the table is the first run's
    third = capsys.readouterr().out
    assert len(json.loads((tmp_path / "results.json").read_text())) == 6 and "  longtail|unified" not in third
    assert first.split("\n\n", 1)[1].split("machine:")[0] == third.split("\n\n", 1)[1].split("machine:")[0]


def test_unified_embeddings_layout_is_chosen_on_valid_auc_never_on_test():
    def run(layout, seed, valid, test):
        return {"method": "unified", "layout": layout, "fraction": 0.25, "seed": seed, "embedding_params": 100, "valid_auc": valid,
                "test_auc": test, "valid_logloss": 0.5, "test_logloss": 0.5, "seconds": 1.0}  # fmt: skip

    # 1x5 is ahead on valid on average (0.66 against 0.655) and behind on test: it is the one chosen
    rows = [run("1x1", 1, 0.65, 0.70), run("1x1", 2, 0.66, 0.70), run("1x5", 1, 0.67, 0.60), run("1x5", 2, 0.65, 0.60)]
    summary = summarise(rows)
    chosen = summary[("unified", 0.25)]
    assert chosen["layout"] == "1x5" and chosen["candidates"] == 2 and chosen["test_auc"][0] == 0.60
    assert summary[("unified 1x1", 0.25)]["valid_auc"][0] == 0.655
    text = table("longtail", summary, [0.25])
    assert "| unified 1x5 (best valid of 2) |" in text and "| unified 1x1 |" in text
