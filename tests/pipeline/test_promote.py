"""Champion and challenger: the rule, runs at once taking turns on the registry, the alias that serves."""

import html
import json
import subprocess
import sys

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


def _run(out, data, store, config, date):
    command = [sys.executable, "-m", "pipeline", "run", "--out", str(out), "--data", str(data), "--config", str(config)]
    return [*command, "--tracking-uri", f"sqlite:///{store}", "--tag", f"date={date}", "--search", "none"]


@pytest.mark.slow
def test_two_runs_at_once_take_turns_and_a_losing_model_stays_challenger(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from pipeline.cli import main

    days = ["2026-11-28", "2026-11-29", "2026-11-30"]
    for part, day in enumerate(days, start=1):
        write_parquet_shards(tmp_path / "data" / f"dt={day}", 4000, part=part)
    store, config = tmp_path / "mlflow.db", tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 1, batch_size: 512}\n")
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
