"""Champion and challenger: the rule, runs at once taking turns on the registry, the alias that serves."""

import html
import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from features.synthetic import write_parquet_shards
from pipeline.config import PromoteConfig
from pipeline.stages.promote import decide

GOOD = {"valid_auc": 0.80, "test_auc": 0.79}


def test_the_rule_promotes_on_a_valid_auc_gain_of_at_least_the_margin_with_passing_data_checks():
    settings = PromoteConfig(margin=0.002)
    assert decide(GOOD, {"valid_auc": 0.797}, [], settings)[0] is True
    promoted, reason = decide(GOOD, {"valid_auc": 0.799}, [], settings)
    assert promoted is False and reason == "valid AUC 0.8000 against the champion's 0.7990 (+0.0010), below the margin 0.002"
    promoted, reason = decide(GOOD, {"valid_auc": 0.5}, ["schema changed: new field(s) x"], settings)
    assert promoted is False and reason == "data checks failed: schema changed: new field(s) x"
    assert decide(GOOD, None, [], PromoteConfig(allow_schema_change=True))[0] is True  # the champion cannot score today's rows
    assert decide({"test_auc": 0.8}, {"valid_auc": 0.5}, [], settings) == (False, "no valid AUC to compare (the valid rows hold one class)")


def test_delong_is_the_paired_test_written_out_pair_by_pair():
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    from pipeline.stages.promote import delong

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 300)
    first = np.round(labels * 0.6 + rng.normal(size=300), 1)  # rounded: ties, which count one half
    second = np.round(labels * 0.3 + 0.5 * first + rng.normal(size=300), 1)
    auc_first, auc_second, p = delong(labels, first, second)
    assert auc_first == pytest.approx(roc_auc_score(labels, first)) and auc_second == pytest.approx(roc_auc_score(labels, second))
    # DeLong et al. (1988) from its definition: each positive's and each negative's placement over every pair
    pos, neg = labels == 1, labels == 0
    placements = []
    for scores in (first, second):
        psi = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
        placements.append((psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov(np.vstack([placements[0][0], placements[1][0]]))
    s01 = np.cov(np.vstack([placements[0][1], placements[1][1]]))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum()
    assert p == pytest.approx(norm.sf((auc_first - auc_second) / np.sqrt(variance)), rel=1e-9)
    assert 0 < p < 0.5  # the first is the better one here, on 300 rows not beyond doubt
    assert delong(labels, second, first)[2] == pytest.approx(1 - p)
    assert delong(labels, first, first)[2] == 1.0  # the same ranking: no gain, no evidence


def test_the_rule_needs_a_significant_gain_and_never_replaces_a_newer_day():
    settings = PromoteConfig(margin=0.002, alpha=0.05)
    promoted, reason = decide(GOOD, {"valid_auc": 0.79}, [], settings, p_value=0.2)
    assert promoted is False and reason.endswith("not significant on these rows (one-sided DeLong p 0.2, needs < 0.05)")
    promoted, reason = decide(GOOD, {"valid_auc": 0.79}, [], settings, p_value=0.01)
    assert promoted is True and reason.endswith("at least the margin 0.002, DeLong p 0.01")
    promoted, reason = decide(GOOD, {"valid_auc": 0.5}, [], settings, p_value=1e-9, older="2026-11-30")
    assert promoted is False and "older than the champion's (2026-11-30)" in reason


def _three_days(tmp_path, config_text):
    """Three days' partitions of the synthetic traffic (data/dt=DAY), a tracking store's path and a config file."""
    days = ["2026-11-28", "2026-11-29", "2026-11-30"]
    for part, day in enumerate(days, start=1):
        write_parquet_shards(tmp_path / "data" / f"dt={day}", 4000, part=part)
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    return days, tmp_path / "mlflow.db", config


def _run(out, data, store, config, date):
    command = [sys.executable, "-m", "pipeline", "run", "--out", str(out), "--data", str(data), "--config", str(config)]
    return [*command, "--tracking-uri", f"sqlite:///{store}", "--tag", f"date={date}", "--search", "none"]


@pytest.mark.slow
def test_two_runs_at_once_take_turns_and_a_losing_model_stays_challenger(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from pipeline.cli import main

    days, store, config = _three_days(tmp_path, "train: {max_epochs: 1, batch_size: 512}\n")
    outs = {day: tmp_path / "runs" / day for day in days}
    both = [
        subprocess.Popen(_run(outs[d], tmp_path / "data" / f"dt={d}", store, config, d), cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        for d in days[:2]
    ]
    errors = [p.communicate(timeout=600)[1] for p in both]
    assert [p.returncode for p in both] == [0, 0], errors
    decisions = {d: json.loads((outs[d] / "promote" / "decision.json").read_text()) for d in days[:2]}
    # Each kept its own outputs, and they took turns: exactly one found no champion; the other compared with it.
    first = [d for d in days[:2] if decisions[d]["champion"]["version"] is None]
    assert len(first) == 1, decisions
    second = next(d for d in days[:2] if d != first[0])
    assert decisions[first[0]]["decision"] == "promoted" and "is the first" in decisions[first[0]]["reason"]
    assert decisions[second]["champion"]["version"] == decisions[first[0]]["challenger"]["version"]
    assert decisions[second]["champion"]["metrics"]["valid_auc"] > 0.5
    client = MlflowClient(f"sqlite:///{store}")
    name = decisions[second]["registered_model"]
    winner = second if decisions[second]["decision"] == "promoted" else first[0]
    assert str(client.get_model_version_by_alias(name, "champion").version) == decisions[winner]["challenger"]["version"]
    assert list((store.parent / f".{store.name}.locks").glob("ctr-pipeline-*.lock"))  # the turns' locks: beside the store

    # A third day under a margin no model can meet: it stays challenger, and says why, everywhere a reviewer looks.
    config.write_text("train: {max_epochs: 1, batch_size: 512}\npromote: {margin: 0.5}\n")
    monkeypatch.chdir(tmp_path)  # this run in process (its imports paid once), from where the two ran
    capsys.readouterr()
    assert main(_run(outs[days[2]], tmp_path / "data" / f"dt={days[2]}", store, config, days[2])[3:]) == 0
    kept = json.loads((outs[days[2]] / "promote" / "decision.json").read_text())
    assert kept["decision"] == "kept" and "below the margin 0.5" in kept["reason"]
    assert f"promote: {name} v{kept['challenger']['version']} kept" in capsys.readouterr().err
    assert str(client.get_model_version_by_alias(name, "champion").version) == decisions[winner]["challenger"]["version"]
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert str(challenger.version) == kept["challenger"]["version"] and kept["reason"] in challenger.description
    assert challenger.tags["decision"] == "kept" and challenger.tags["date"] == days[2]
    runs = client.search_runs([client.get_experiment_by_name("ctr-pipeline").experiment_id], "tags.date = '2026-11-30'")
    parent = next(r for r in runs if r.info.run_name.startswith("pipeline "))
    assert parent.data.tags["decision"] == "kept" and parent.data.tags["decision_reason"] == kept["reason"]
    assert "report.html" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert client.get_experiment_by_name("ctr-pipeline").tags["mlflow.experimentKind"] == "custom_model_development"
    report = html.unescape((outs[days[2]] / "report" / "report.html").read_text())
    assert "Champion and challenger" in report and "below the margin 0.5" in report

    # predict scores with whatever serves: the champion's alias
    rows = tmp_path / "data" / f"dt={days[2]}" / "part-00000.parquet"
    for model, target in ((f"models:/{name}@champion", "served.parquet"), (str(outs[winner]), "local.parquet")):
        args = ["predict", "--model", model, "--data", str(rows), "--out", str(tmp_path / target), "--tracking-uri", f"sqlite:///{store}"]
        assert main(args) == 0
    assert pl.read_parquet(tmp_path / "served.parquet").equals(pl.read_parquet(tmp_path / "local.parquet"))


def test_a_daily_registry_survives_retries_backfills_and_a_day_its_champion_cannot_score(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from pipeline.cli import main

    days, store, config = _three_days(tmp_path, "train: {max_epochs: 1, batch_size: 512, baselines: []}\n")
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(f"sqlite:///{store}")

    def run(day, data=None, tracking=True):
        args = _run(tmp_path / "runs" / day, data or tmp_path / "data" / f"dt={day}", store, config, day)[3:]
        capsys.readouterr()
        code = main(args if tracking else [*args[: args.index("--tracking-uri")], "--no-tracking", "--search", "none"])
        return code, capsys.readouterr().err

    def decision(day):
        return json.loads((tmp_path / "runs" / day / "promote" / "decision.json").read_text())

    # A day first run without the registry, then with it: train runs again (a model committed for no registry is no
    # model to promote: the registry is part of train's fingerprint), and its model is the first champion.
    assert run(days[1], tracking=False)[0] == 0
    code, err = run(days[1])
    assert code == 0 and "ingest: reused" in err and "train: reused" not in err, err
    assert decision(days[1])["decision"] == "promoted"
    name = decision(days[1])["registered_model"]
    # A run stopped between train's commit and the registration (its record holds no version): the retry trains again
    # and registers, and promote, whose upstream output changed, decides again on the new version.
    record_path = tmp_path / "runs" / days[1] / "train" / "stage.json"
    record = json.loads(record_path.read_text())
    record["report"].pop("registered_model")
    record_path.write_text(json.dumps(record))
    code, err = run(days[1])
    assert code == 0 and "never registered; training again" in err and "promote: reused" not in err, err
    assert decision(days[1])["challenger"]["version"] == "2"
    champion = client.get_model_version_by_alias(name, "champion").version
    # A backfill of the day before: whatever its figures, an older day's model does not replace a newer one.
    code, err = run(days[0])
    assert code == 0 and decision(days[0])["decision"] == "kept" and "older than the champion's (2026-11-29)" in decision(days[0])["reason"]
    assert client.get_model_version_by_alias(name, "champion").version == champion
    # The next day lacks a column the champion was trained on: the run does its work (outputs kept, the new model stays
    # challenger), then ends with exit 2 and one line saying serving needs a look; a retry says it again.
    short = tmp_path / "short" / "part.parquet"
    short.parent.mkdir()
    pl.read_parquet(tmp_path / "data" / f"dt={days[2]}").drop("inf_c2").write_parquet(short)
    for _ in range(2):
        code, err = run(days[2], data=short)
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 2 and len(lines) == 1 and "cannot score this run's rows and was kept" in lines[0], err
        assert decision(days[2])["decision"] == "kept" and (tmp_path / "runs" / days[2] / "report" / "report.html").is_file()
    assert client.get_model_version_by_alias(name, "champion").version == champion
    assert "the champion cannot score" in " ".join(decision(days[2])["data_checks"]["failures"])
    # In MLflow the alarm's runs read FAILED with the alarm as a tag, the pipeline run (named by its data and date) and
    # the promote run; the stages that did their work read FINISHED.
    runs = client.search_runs([client.get_experiment_by_name("ctr-pipeline").experiment_id], f"tags.date = '{days[2]}'")
    status = {(r.info.run_name, r.info.status) for r in runs}
    assert ("pipeline part.parquet 2026-11-30", "FAILED") in status and ("promote", "FAILED") in status, status
    assert ("train", "FINISHED") in status and not any(s == "FAILED" for n, s in status if n in ("ingest", "rank", "train", "report"))
    assert all("cannot score this run's rows" in r.data.tags["alarm"] for r in runs if r.info.status == "FAILED")


def test_a_local_stores_locks_live_beside_it_and_a_remote_ones_in_the_temporary_directory(tmp_path):
    # They all lived in the temporary directory, one file per store and registered model, and stayed there after use
    # (tests left thousands): a local store's now go with the store.
    import tempfile
    from pathlib import Path

    from pipeline.tracking import store_lock

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lock = store_lock(uri, "registry|ctr")
    with lock:
        pass
    assert Path(lock.lock_file).parent == tmp_path / ".mlflow.db.locks" and Path(lock.lock_file).is_file()
    assert store_lock(uri, "registry|other").lock_file != lock.lock_file and store_lock(uri, "registry|ctr").lock_file == lock.lock_file
    assert Path(store_lock(f"file://{tmp_path / 'mlruns'}", "init").lock_file).parent == tmp_path / ".mlruns.locks"
    assert Path(store_lock(str(tmp_path / "mlruns"), "init").lock_file).parent == tmp_path / ".mlruns.locks"
    for remote in ("http://tracking:5000", "databricks", "databricks-uc"):
        assert Path(store_lock(remote, "init").lock_file).parent == Path(tempfile.gettempdir())
    nowhere = tmp_path / "nowhere" / "mlflow.db"  # no folder made where the store's own is missing
    assert Path(store_lock(f"sqlite:///{nowhere}", "init").lock_file).parent == Path(tempfile.gettempdir())
    assert not nowhere.parent.exists()
