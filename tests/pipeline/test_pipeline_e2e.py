"""The pipeline end to end, in process: synthetic default and each real dataset, with MLflow on sqlite."""

import gzip
import json
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from features import synthetic
from pipeline.cli import main
from pipeline.config import RankConfig
from tests.conftest import ROOT, check_package_stored_once, shared, tracking_store, tree_bytes

RANKING_COLUMNS = {"rank", "feature", "cardinality", "mi", "score", "expected_mi", "adjusted_mi", "chi2_p", "order_3mr"}


def _run(tmp_path, *args):
    out = tmp_path / "out"
    uri = tracking_store(tmp_path / "mlflow.db")
    code = main(["run", *args, "--out", str(out), "--tracking-uri", uri])
    assert code == 0
    return out, uri


def _check_outputs(out):
    fm = json.loads((out / "ingest" / "feature_map.json").read_text())
    ranking = pl.read_csv(out / "rank" / "ranking.csv")
    assert set(ranking.columns) >= RANKING_COLUMNS
    assert ranking.height == len(fm["fields"]) and ranking["rank"].to_list() == list(range(1, ranking.height + 1))
    assert ranking["score"].is_sorted(descending=True)
    quality = json.loads((out / "rank" / "quality.json").read_text())
    assert set(quality["features"]) == {f["name"] for f in fm["fields"]}
    assert (out / "rank" / "ranking.png").stat().st_size > 10_000
    assert pl.read_csv(out / "rank" / "pairs.csv").height > 0
    return fm, ranking, quality


def _check_declared(out):
    """Every file a stage wrote is declared in the catalog; a search method's own files carry its name."""
    from methods import METHODS
    from pipeline import catalog

    for stage in catalog.STAGES:
        if not (out / stage.name).is_dir():
            continue
        declared = {o.name.split("/")[0] for o in stage.writes} | {"stage.json"}  # a declared file may sit in a folder
        for path in (out / stage.name).iterdir():
            by_method = stage.name == "search" and any(path.name.startswith(name) for name in (*METHODS, "optuna"))
            assert path.name in declared or by_method, f"{stage.name}/{path.name} is not declared in pipeline/catalog.py"


def _split_files(tmp_path, frame, valid_at, test_at):
    """`frame` written as train / valid / test parquet files in tmp_path/data (the splits a run takes as given)."""
    data = tmp_path / "data"
    data.mkdir()
    frame[:valid_at].write_parquet(data / "train.parquet")
    frame[valid_at:test_at].write_parquet(data / "valid.parquet")
    frame[test_at:].write_parquet(data / "test.parquet")
    return data


def _score_each_kind(package, test_file, candidates):
    """Score the raw test file with the package set to each candidate (the blend, each baseline, the deep model): each
    reproduces the test AUC the train stage measured for it."""
    from sklearn.metrics import roc_auc_score

    from pipeline.package import score

    spec = json.loads((package / "model.json").read_text())
    weights = spec["chosen"]["weights"]
    for name, candidate in candidates.items():
        kind = candidate["kind"]
        spec["chosen"] = {"name": name, "kind": kind, "gbdt": name if kind not in ("deep", "blend") else None, "weights": weights}
        (package / "model.json").write_text(json.dumps(spec))
        scored, _ = score(package, test_file, None, "cpu")
        assert roc_auc_score(scored[synthetic.LABEL], scored["probability"]) == pytest.approx(candidates[name]["test_auc"], abs=1e-6)


def test_synthetic_default_end_to_end_with_tracking(tmp_path):
    from mlflow.tracking import MlflowClient

    out, uri = _run(tmp_path, "--rows", "60000", "--stages", "ingest,rank")
    fm, ranking, _ = _check_outputs(out)
    assert set(ranking["feature"].head(3)) <= set(synthetic.INFORMATIVE)
    assert sum(s["rows"] for s in fm["splits"].values()) == 60_000
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ctr-pipeline").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and sorted(r.info.run_name for r in children) == ["ingest", "rank"]
    assert parents[0].info.run_name == "pipeline synthetic planted 60,000 rows"  # its data, not only its stages
    rank_run = next(r for r in children if r.info.run_name == "rank")
    assert rank_run.data.metrics["cells_per_s"] > 0 and rank_run.data.params["score"] == RankConfig().score
    assert {a.path for a in client.list_artifacts(rank_run.info.run_id)} >= {"ranking.csv", "quality.json", "ranking.png", "pairs.csv"}


def test_rank_stage_alone_reuses_ingest_output(tmp_path):
    out, _ = _run(tmp_path, "--rows", "20000", "--stages", "ingest")
    assert not (out / "rank").exists()
    assert main(["rank", "--out", str(out), "--no-tracking"]) == 0
    assert (out / "rank" / "ranking.csv").is_file()


def test_criteo_sample(tmp_path):
    out, _ = _run(
        tmp_path, "--config", str(ROOT / "configs" / "criteo.yaml"), "--data", str(shared("criteo_sample")), "--stages", "ingest,rank"
    )
    fm, _ranking, quality = _check_outputs(out)
    kinds = {f["name"]: f["kind"] for f in fm["fields"]}
    assert list(kinds.values()).count("numeric") == 13 and list(kinds.values()).count("categorical") == 26
    assert all(f["bucketing"] == "log" for f in fm["fields"] if f["kind"] == "numeric")
    assert fm["splits"]["valid"]["rows"] == 409 and fm["splits"]["test"]["rows"] == 391
    assert quality["features"]["I1"]["coverage"] < 1.0
    # The same split files gzipped give the same ranking and the same encoded splits.
    packed = tmp_path / "packed"
    packed.mkdir()
    for src in shared("criteo_sample").glob("*.txt"):
        (packed / f"{src.name}.gz").write_bytes(gzip.compress(src.read_bytes()))
    again = tmp_path / "again"
    again.mkdir()
    out_gz, _ = _run(again, "--config", str(ROOT / "configs" / "criteo.yaml"), "--data", str(packed), "--stages", "ingest,rank")
    assert (out_gz / "rank" / "ranking.csv").read_bytes() == (out / "rank" / "ranking.csv").read_bytes()
    for split in ("train", "valid", "test"):
        assert pl.read_parquet(out_gz / "ingest" / f"{split}.parquet").equals(pl.read_parquet(out / "ingest" / f"{split}.parquet"))
    assert not (out_gz / "ingest" / ".staged").exists()


def test_gzipped_csv_with_a_text_label_trains_and_predicts(tmp_path):
    said = pl.when(pl.col(synthetic.LABEL) == 1).then(pl.lit("yes")).otherwise(pl.lit("no"))
    frame = synthetic.generate(6000, 3).with_columns(said.alias(synthetic.LABEL))
    raw = tmp_path / "clicks.csv.gz"
    raw.write_bytes(gzip.compress(frame.write_csv().encode()))
    config = tmp_path / "c.yaml"
    config.write_text("train: {max_epochs: 1}\n")
    out = tmp_path / "out"
    args = ["run", "--data", str(raw), "--config", str(config), "--stages", "ingest,train", "--out", str(out), "--no-tracking"]
    assert main(args) == 0
    encoder = json.loads((out / "ingest" / "encoder.json").read_text())
    assert encoder["schema"]["positive"] == ["yes"] and encoder["schema"]["negative"] == ["no"]
    target = tmp_path / "p.parquet"
    assert main(["predict", "--model", str(out), "--data", str(raw), "--out", str(target)]) == 0
    scored = pl.read_parquet(target)
    assert scored.height == 6000 and scored[synthetic.LABEL].to_list() == (frame[synthetic.LABEL] == "yes").cast(pl.Int8).to_list()


def test_frappe(tmp_path):
    out, _ = _run(tmp_path, "--data", str(shared("frappe")), "--stages", "ingest,rank")
    fm, _ranking, _ = _check_outputs(out)
    assert [fm["splits"][s]["rows"] for s in ("train", "valid", "test")] == [202_027, 57_722, 28_860]
    assert len(fm["fields"]) == 10


def test_movielens_with_threshold_label_and_joined_genres(tmp_path, monkeypatch):
    shared("movielens_small")
    monkeypatch.chdir(ROOT)
    config = tmp_path / "movielens.yaml"  # the shipped config, trained briefly (a multi-valued field reaches the model)
    config.write_text((ROOT / "configs" / "movielens.yaml").read_text() + "train: {max_epochs: 1}\n")
    out, _ = _run(tmp_path, "--config", str(config), "--stages", "ingest,rank,train")
    fm, _ranking, _quality = _check_outputs(out)
    assert json.loads((out / "metrics.json").read_text())["candidates"]["deepfm"]["test_auc"] > 0.6
    kinds = {f["name"]: f["kind"] for f in fm["fields"]}
    assert kinds == {"userId": "categorical", "movieId": "categorical", "title": "categorical", "genres": "multi"}
    assert "rating" not in kinds and "timestamp" not in kinds
    assert 0.3 < fm["splits"]["train"]["positive_rate"] < 0.6
    pairs = pl.read_csv(out / "rank" / "pairs.csv")
    copy = pairs.filter(
        ((pl.col("feature_a") == "title") & (pl.col("feature_b") == "movieId"))
        | ((pl.col("feature_a") == "movieId") & (pl.col("feature_b") == "title"))
    )
    assert copy["redundancy_norm"][0] > 0.99


def test_train_stage_end_to_end(tmp_path):
    from mlflow.tracking import MlflowClient

    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 4}\n")  # FM would run ~20 epochs here; four show the history as well
    out, uri = _run(tmp_path, "--rows", "30000", "--model", "fm", "--config", str(config))
    report = json.loads((out / "metrics.json").read_text())
    assert set(report) >= {"valid_auc", "valid_logloss", "test_auc", "test_logloss", "params", "train_samples_per_s", "epochs", "model"}
    assert report["deep_model"] == "fm" and report["valid_auc"] > 0.6 and report["test_auc"] > 0.6
    deep = report["candidates"]["fm"]  # the chosen model's figures are top-level; the deep model's under its name
    assert report["valid_auc"] == max(c["valid_auc"] for c in report["candidates"].values())
    assert (out / "train" / "learning_curve.png").is_file() and (out / "train" / "package" / "model.pt").is_file()
    assert not (out / ".checkpoints").exists()  # the resume checkpoint goes once the stage is committed
    client = MlflowClient(uri)
    train_run = next(
        r for r in client.search_runs([client.get_experiment_by_name("ctr-pipeline").experiment_id]) if r.info.run_name == "train"
    )
    history = client.get_metric_history(train_run.info.run_id, "epoch/valid_auc")
    assert [m.step for m in history] == list(range(1, report["epochs"] + 1))
    assert max(m.value for m in history) == pytest.approx(deep["valid_auc"], abs=1e-9)
    assert report["valid_auc"] == train_run.data.metrics["valid_auc"]
    # the run says which candidate its valid_auc is (its params are the deep model's settings)
    assert train_run.data.tags["chosen"] == f"{report['model']} ({report['kind']})"
    assert {a.path for a in client.list_artifacts(train_run.info.run_id)} >= {"learning_curve.png", "metrics.json", "baselines.json"}
    # LightGBM on the same splits, beside the deep model: in metrics.json, as a nested run, and in the report.
    lightgbm = report["baselines"]["lightgbm"]
    assert lightgbm["valid_auc"] > 0.6 and lightgbm["test_auc"] > 0.6 and lightgbm["rounds"] >= 1
    nested = [r for r in client.search_runs([train_run.info.experiment_id]) if r.info.run_name == "baseline lightgbm"]
    assert len(nested) == 1 and nested[0].data.tags["mlflow.parentRunId"] == train_run.info.run_id
    assert nested[0].data.metrics["valid_auc"] == lightgbm["valid_auc"]
    html = (out / "report" / "report.html").read_text()
    assert "lightgbm (gbdt)" in html and "fm (deep)" in html and "chosen (best valid AUC)" in html


def test_predict_scores_raw_rows_with_the_logged_and_registered_model(tmp_path, capsys):
    import subprocess
    import sys
    from types import SimpleNamespace

    from sklearn.metrics import roc_auc_score

    frame = synthetic.generate(30_000, 7)
    data = _split_files(tmp_path, frame, 24_000, 27_000)
    config = tmp_path / "config.yaml"
    config.write_text(
        "schema:\n  categorical: [inf_zipf20k]\ntrain: {max_epochs: 4}\n"
    )  # an integer id column: inference alone would bucket it
    out, uri = _run(tmp_path, "--config", str(config), "--data", str(data), "--model", "fm")
    report = json.loads((out / "metrics.json").read_text())
    assert report["registered_model"] == "models:/ctr-fm/1"

    def predict(reference, raw, target, process=False):
        """The predict command: in this process (its imports paid once), or as a process of its own."""
        args = ["predict", "--model", reference, "--data", str(raw), "--out", str(target), "--tracking-uri", uri]
        if process:
            return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=ROOT)
        capsys.readouterr()
        code = main(args)
        return SimpleNamespace(returncode=code, stderr=capsys.readouterr().err)

    # The test file scored as raw input, through each kind of reference, reproduces the train stage's test AUC.
    for reference in (str(out), f"runs:/{report['run_id']}", report["registered_model"]):
        target = tmp_path / "pred.parquet"
        done = predict(reference, data / "test.parquet", target, process=reference == report["registered_model"])
        assert done.returncode == 0, done.stderr
        scored = pl.read_parquet(target)
        assert scored.height == 3_000 and scored["probability"].is_between(0, 1).all()
        assert roc_auc_score(scored[synthetic.LABEL], scored["probability"]) == pytest.approx(report["test_auc"], abs=1e-6)
        target.unlink()
    # Values never seen in training go to OOV and still get a score; rows without a label are scored too.
    unseen = frame[27_000:].with_columns(pl.col("inf_zipf20k") + 10_000_000).drop(synthetic.LABEL)
    unseen.write_parquet(tmp_path / "unseen.parquet")
    done = predict(str(out), tmp_path / "unseen.parquet", tmp_path / "unseen.csv")
    assert done.returncode == 0, done.stderr
    assert "oov_share_max 1.0000" in done.stderr
    scored = pl.read_csv(tmp_path / "unseen.csv")
    assert scored.columns == ["probability"] and scored.height == 3_000
    # Only the features the package scores with need be sent: the columns the rank stage dropped may be left out.
    fields = json.loads((out / "train" / "package" / "model.json").read_text())["fields"]
    used = [name for name in frame.columns if name in fields]  # the input columns among them (not the derived ones)
    assert 0 < len(used) < len(frame.columns) - 1
    frame[27_000:].select(*used, synthetic.LABEL).write_parquet(tmp_path / "used.parquet")
    done = predict(str(out), tmp_path / "used.parquet", tmp_path / "used_scored.parquet")
    assert done.returncode == 0, done.stderr
    scored = pl.read_parquet(tmp_path / "used_scored.parquet")
    assert roc_auc_score(scored[synthetic.LABEL], scored["probability"]) == pytest.approx(report["test_auc"], abs=1e-6)
    # A file lacking a trained feature (categorical, numeric), and an unknown registered model: one-line errors, exit 2,
    # no output.
    frame[27_000:].drop("inf_c5").write_parquet(tmp_path / "short.parquet")
    frame[27_000:].drop("num_signal").write_parquet(tmp_path / "short_numeric.parquet")
    cases = [(str(out), tmp_path / "short.parquet"), (str(out), tmp_path / "short_numeric.parquet")]
    for reference, raw in [*cases, ("models:/no-such-model/1", data / "test.parquet")]:
        done = predict(reference, raw, tmp_path / "bad.parquet", process=reference.startswith("models:/"))
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
        assert not (tmp_path / "bad.parquet").exists()


def test_selection_drops_noise_keeps_pair_fields_and_falls_back_when_nothing_is_significant(tmp_path, capsys):
    out, _ = _run(tmp_path, "--rows", "20000", "--stages", "ingest,rank,train,report", "--model", "fm")
    ranking = pl.read_csv(out / "rank" / "ranking.csv")
    kept = set(ranking.filter(pl.col("selected"))["feature"])
    assert set(synthetic.INFORMATIVE) <= kept and not any(name.startswith("noise_") for name in kept)
    assert {name for pair in synthetic.INTERACTIONS for name in pair} <= kept  # fields that matter only in a cross
    spec = json.loads((out / "train" / "package" / "model.json").read_text())
    assert set(spec["fields"]) == kept  # the trained model takes the selected features only
    assert "Features and selection" in (out / "report" / "report.html").read_text()
    # A CSV whose every feature is noise: one line says so, and every feature goes on.
    rng = np.random.default_rng(0)
    rows = 6_000
    noise = pl.DataFrame({"label": (rng.random(rows) < 0.3).astype(int), "a": rng.integers(0, 30, rows), "c": rng.normal(size=rows)})
    noise.write_csv(tmp_path / "noise.csv")
    capsys.readouterr()
    assert (
        main(["run", "--data", str(tmp_path / "noise.csv"), "--out", str(tmp_path / "n"), "--no-tracking", "--stages", "ingest,rank,train"])
        == 0
    )
    said = [line for line in capsys.readouterr().err.splitlines() if "nothing significant" in line]
    assert len(said) == 1 and pl.read_csv(tmp_path / "n" / "rank" / "ranking.csv")["selected"].all()
    assert set(json.loads((tmp_path / "n" / "train" / "package" / "model.json").read_text())["fields"]) == {"a", "c"}


def test_the_run_chooses_among_deep_gbdt_and_blend_and_each_kind_scores_raw_rows(tmp_path):
    import mlflow
    from sklearn.metrics import roc_auc_score

    frame = synthetic.generate(24_000, 7)
    data = _split_files(tmp_path, frame, 18_000, 21_000)
    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 2, choose: blend, baselines: [lightgbm, wide]}\n")
    out, uri = _run(tmp_path, "--config", str(config), "--data", str(data), "--model", "fm")
    report = json.loads((out / "metrics.json").read_text())
    candidates = report["candidates"]
    assert {name: c["kind"] for name, c in candidates.items()} == {"fm": "deep", "lightgbm": "gbdt", "wide": "linear", "blend": "blend"}
    assert report["model"] == "blend" and report["kind"] == "blend" and report["deep_model"] == "fm"
    assert report["valid_auc"] == candidates["blend"]["valid_auc"] and report["test_auc"] == candidates["blend"]["test_auc"]
    weights = candidates["blend"]["params"]["weights"]
    assert candidates["blend"]["params"]["parts"] == ["fm", "lightgbm", "wide"] and min(weights) >= 0 and sum(weights) == pytest.approx(1)
    # The wide model crosses the planted pairs, which the rank stage finds significant.
    crossed = {frozenset(pair.split(" × ")) for pair in candidates["wide"]["params"]["crosses"].split(", ")}
    assert {frozenset(("pair_a", "pair_b")), frozenset(("pair_c", "pair_d"))} <= crossed
    assert report["registered_model"] == "models:/ctr-fm/1"  # one registered name, whichever candidate wins
    package = out / "train" / "package"
    local = tree_bytes(package)  # as logged (rewritten below)
    # Each kind scores the raw test file as the train stage scored the test split.
    _score_each_kind(package, data / "test.parquet", candidates)
    # The registered blend is a pyfunc that scores raw rows without the pipeline's CLI.
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pyfunc.load_model(report["registered_model"])
    raw = frame[21_000:].drop(synthetic.LABEL)
    probs = np.asarray(loaded.predict(raw.to_pandas()))
    assert probs.shape == (3_000,) and roc_auc_score(frame[21_000:][synthetic.LABEL], probs) == pytest.approx(report["test_auc"], abs=1e-6)
    # The package is stored once, among the pyfunc's artifacts (not also as the run's package/), and every kind of
    # reference fetches it whole.
    check_package_stored_once(uri, report, local)


def test_a_runs_package_is_found_by_its_tag_or_as_the_runs_package_folder(tmp_path, monkeypatch):
    # Runs logged before the `package` tag existed kept the package as the run's package/; newer ones say where it
    # lies (a GBDT's or a blend's inside its pyfunc model; the runs:/ form the pipeline writes is checked end to end
    # above and over HTTP in test_mlflow_server). A run id that does not exist is a one-line error.
    import tempfile

    import mlflow

    from pipeline.errors import UserError
    from pipeline.tracking import download_package

    uri = tracking_store(tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(uri)  # no fluent state: other tests in this process set their own experiments
    experiment = client.create_experiment("packages", artifact_location=(tmp_path / "mlruns").as_uri())
    old, tagged = client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id
    for name in ("old", "elsewhere"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.json").write_text(name)
    client.log_artifacts(old, str(tmp_path / "old"), artifact_path="package")
    client.log_artifacts(tagged, str(tmp_path / "elsewhere"), artifact_path="model/artifacts/package")
    client.set_tag(tagged, "package", f"runs:/{tagged}/model/artifacts/package")
    for run, expected in ((old, "old"), (tagged, "elsewhere")):
        for reference in (f"runs:/{run}", f"runs:/{run}/package"):
            assert (download_package(reference, uri) / "model.json").read_text() == expected
    with pytest.raises(UserError, match="not found in the tracking store"):
        download_package("runs:/0123456789abcdef0123456789abcdef", uri)
    with pytest.raises(UserError, match="expected runs:/<run id>"):  # not silently the package under another name
        download_package(f"runs:/{tagged}/model", uri)
    # A tag pointing at nothing is a one-line error, and the copy's folder does not stay behind.
    client.set_tag(old, "package", f"runs:/{old}/model/artifacts/package")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    (tmp_path / "temp").mkdir()
    with pytest.raises(UserError, match="not found in the tracking store"):
        download_package(f"runs:/{old}", uri)
    assert list((tmp_path / "temp").iterdir()) == []


def test_dcnv2_with_low_rank_experts_trains_packages_and_scores_raw_rows(tmp_path):
    frame = synthetic.generate(12_000, 7)
    data = _split_files(tmp_path, frame, 9_000, 10_500)
    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 2, baselines: [], params: {hidden: [16], cross_layers: 2, low_rank: 4, experts: 2}}\n")
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--data", str(data), "--model", "dcnv2", "--out", str(out), "--no-tracking"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["deep_model"] == "dcnv2" and report["test_auc"] > 0.6
    spec = json.loads((out / "train" / "package" / "model.json").read_text())
    assert spec["model"] == "dcnv2" and spec["params"]["low_rank"] == 4
    # The package rebuilds the mixture of experts and scores the raw test file as the train stage scored the test split.
    _score_each_kind(out / "train" / "package", data / "test.parquet", {"dcnv2": report["candidates"]["dcnv2"]})


def test_encodings_feed_the_deep_model_the_baseline_and_predict(tmp_path):

    frame = synthetic.generate(24_000, 7)
    data = _split_files(tmp_path, frame, 18_000, 21_000)
    config = tmp_path / "config.yaml"
    config.write_text("schema: {categorical: [inf_zipf20k]}\nsearch: {encodings: {pairs: 4}}\ntrain: {max_epochs: 2, choose: blend}\n")
    out, _ = _run(tmp_path, "--config", str(config), "--data", str(data), "--model", "fm", "--search", "encodings")
    _check_declared(out)
    found = json.loads((out / "search" / "encodings.json").read_text())
    assert "te__inf_zipf20k" in found["fields"]
    # The pairs come from the greedy selection (the default pair_order), the planted ones first.
    picked = found["pair_selection"]
    assert ["te__" + p["pair"] for p in picked] == found["pairs"] and 2 <= len(picked) <= 4
    assert {frozenset(p["pair"].split("_x_")) for p in picked[:2]} == {frozenset({"pair_a", "pair_b"}), frozenset({"pair_c", "pair_d"})}
    assert picked[0]["logloss_drop"] > 0 and picked[1]["logloss_drop"] > 0
    # The derived fields are ranked like any feature (the rank stage's score on train rows' out-of-fold values).
    ranked = [r["feature"] for r in found["ranking"]]
    assert len(ranked) == 2 * len(found["fields"] + found["pairs"]) and "te__pair_a_x_pair_b" in ranked[:4]
    assert not (out / "search" / "baseline.json").exists()  # nothing trains in this search: no "before" model
    report = json.loads((out / "metrics.json").read_text())
    assert report["encodings"] is True
    package = out / "train" / "package"
    spec = json.loads((package / "model.json").read_text())
    assert "te__inf_zipf20k" in spec["fields"] and "cnt__pair_a_x_pair_b" in spec["fields"]
    assert (package / "methods" / "encodings" / "encodings.meta.json").is_file()
    # Every kind scores the raw test rows, their encodings rebuilt from the packaged train tables, as train scored them.
    _score_each_kind(package, data / "test.parquet", report["candidates"])


def test_encodings_with_nothing_to_encode_say_so_and_the_run_goes_on(tmp_path, capsys):
    # Few values per field and labels independent of them: no field reaches min_cardinality and no pair is ranked.
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({"label": rng.integers(0, 2, 4_000), **{f"f{i}": rng.integers(0, 6, 4_000) for i in range(4)}})
    data = tmp_path / "d.csv"
    frame.write_csv(data)
    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 1, baselines: []}\n")
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--config", str(config), "--model", "lr", "--out", str(out), "--no-tracking"]) == 0
    found = json.loads((out / "search" / "encodings.json").read_text())
    assert found["fields"] == [] and found["pairs"] == [] and found["note"].startswith("nothing to encode")
    assert "encodings: nothing to encode" in capsys.readouterr().err
    spec = json.loads((out / "train" / "package" / "model.json").read_text())
    assert not any(name.startswith(("te__", "cnt__")) for name in spec["fields"])
    assert main(["predict", "--model", str(out), "--data", str(data), "--out", str(tmp_path / "p.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "p.parquet").height == 4_000


def test_search_stage_optfs_then_dnis_feeds_train_and_predict(tmp_path):
    from sklearn.metrics import roc_auc_score

    config = tmp_path / "config.yaml"
    # A small table and few steps: lambda and the gate learning rate are raised so that gates can close.
    config.write_text(
        "search:\n  optfs: {epochs: 4, gamma: 100, l1: 0.001, gate_lr: 0.05}\n  dnis: {search_epochs: 1, prune_ratio: 0.6}\n"
        "train: {max_epochs: 4, batch_size: 1024}\n"
    )
    out, _ = _run(tmp_path, "--config", str(config), "--rows", "20000", "--model", "fm", "--search", "optfs,dnis")
    _check_declared(out)
    summary = json.loads((out / "search" / "optfs.json").read_text())
    assert 0 < summary["kept_fraction"] < 1 and summary["valid_auc_before"] is not None
    selected = pl.read_csv(out / "rank" / "ranking.csv").filter(pl.col("selected"))["feature"]
    assert set(summary["fields"]) == set(selected)  # the search runs on the rank stage's selection
    kept = pl.read_parquet(out / "search" / "optfs_kept_values.parquet")
    assert kept.height > 0 and set(kept.columns) == {"field", "id"}
    report = json.loads((out / "metrics.json").read_text())
    assert report["optfs_gates"] is True and report["search"]["optfs"]["kept_fraction"] == summary["kept_fraction"]
    dims = json.loads((out / "search" / "dnis.json").read_text())
    assert dims["on_optfs_gates"] and dims["params_cut"] == pytest.approx(0.6, abs=0.01) and report["dnis_dims"] is True
    assert dims["settings"]["rewind"] == "auto" and isinstance(dims["rewound"], bool)
    # The train stage repeats DNIS's retrain (same start, same mask, same seed): the same best validation AUC.
    assert report["candidates"][report["deep_model"]]["valid_auc"] == pytest.approx(dims["valid_auc_after"], abs=1e-6)
    # The gated model scores raw rows like the train stage scored the test split.
    raw = tmp_path / "test.parquet"
    synthetic.generate(20_000, 7)[-100:].write_parquet(raw)
    assert main(["predict", "--model", str(out), "--data", str(raw), "--out", str(tmp_path / "p.parquet")]) == 0
    scored = pl.read_parquet(tmp_path / "p.parquet")
    assert scored.height == 100 and 0 <= roc_auc_score(scored[synthetic.LABEL], scored["probability"]) <= 1


def test_search_stage_optinter_takes_ranked_pairs_and_feeds_train_and_predict(tmp_path):
    config = tmp_path / "config.yaml"
    # A ranking budget of 4 features: the top 4 by MI plus the candidate pairs' fields are kept, the rest dropped.
    config.write_text(
        "search:\n  max_features: 4\n  optinter: {max_pairs: 6, search_epochs: 2, hidden: [32], batch_norm: true, dropout: 0.1}\ntrain: {max_epochs: 3}\n"
    )
    out, uri = _run(tmp_path, "--config", str(config), "--rows", "30000", "--search", "optinter")
    _check_declared(out)
    found = json.loads((out / "search" / "optinter.json").read_text())
    pairs = {frozenset((p["a"], p["b"])): p for p in found["pairs"]}
    assert len(pairs) == 6 and frozenset(synthetic.INTERACTIONS[0]) in pairs  # the ranked candidates hold a planted pair
    fields = json.loads((out / "search" / "fields.json").read_text())
    top4 = pl.read_csv(out / "rank" / "ranking.csv")["feature"].head(4).to_list()
    assert set(fields["fields"]) == set(top4) | {name for pair in pairs for name in pair} and fields["dropped"]
    spec = json.loads((out / "train" / "package" / "model.json").read_text())
    assert spec["fields"] == fields["fields"]  # the trained model takes only the budget's fields
    assert spec["params"]["batch_norm"] is True and spec["params"]["dropout"] == 0.1  # the MLP as searched
    assert sum(found["modes"].values()) == 6 and found["valid_auc_after"] > 0.5
    report = json.loads((out / "metrics.json").read_text())
    assert report["deep_model"] == "optinter" and report["registered_model"] == "models:/ctr-optinter/1"
    raw = tmp_path / "rows.parquet"
    synthetic.generate(30_000, 7)[-200:].write_parquet(raw)
    args = ["predict", "--model", report["registered_model"], "--data", str(raw), "--out", str(tmp_path / "p.csv"), "--tracking-uri", uri]
    assert main(args) == 0
    assert pl.read_csv(tmp_path / "p.csv").height == 200


def test_unified_embedding_method_lays_out_by_rank_and_feeds_train_and_predict(tmp_path):
    import numpy as np

    from pipeline.package import find_package, load_package, score

    config = tmp_path / "config.yaml"
    config.write_text(
        "search:\n  baseline: false\n  unified: {tables: 2, chunks: 5, chunk_counts: rank}\ntrain: {max_epochs: 2, params: {hidden: [16]}}\n"
    )
    out, _ = _run(tmp_path, "--config", str(config), "--rows", "20000", "--search", "unified")
    _check_declared(out)
    layout = json.loads((out / "search" / "unified.json").read_text())
    order = pl.read_csv(out / "rank" / "ranking.csv").filter(pl.col("selected")).sort("rank")["feature"].to_list()
    counts = layout["chunk_counts"]
    # 5 chunks for the top feature, 1 for the last, by rank between; the budget is a quarter of one table per field
    assert counts[order[0]] == 5 and counts[order[-1]] == 1
    assert [counts[name] for name in order] == sorted(counts.values(), reverse=True)
    assert layout["budget_fraction"] == pytest.approx(0.25, abs=0.001) and layout["model"] == "deepfm"
    report = json.loads((out / "metrics.json").read_text())
    assert report["unified_embedding"] is True and report["deep_model"] == "deepfm" and report["test_auc"] > 0.55
    # The package holds the layout it was built with, and predict rebuilds the same shared tables.
    spec = json.loads((out / "train" / "package" / "model.json").read_text())
    assert spec["model"] == "deepfm" and spec["methods"]["unified"]["layout"]["tables"] == 2
    model, *_ = load_package(out / "train" / "package")
    assert model.embedding.bags.counts == [counts[name] for name in model.embedding.keys]
    raw = tmp_path / "rows.parquet"
    synthetic.generate(20_000, 7)[-300:].write_parquet(raw)
    scored, _ = score(find_package(str(out), None), raw, None, "cpu")
    again, _ = score(find_package(str(out), None), raw, None, "cpu")
    assert scored.height == 300 and np.array_equal(scored["probability"].to_numpy(), again["probability"].to_numpy())
    # A package written when Unified Embedding was the model `unified` (its settings in the model's params) still scores.
    legacy = {**spec, "model": "unified", "methods": {}, "embedding": {**spec["embedding"], "multiplex": None}}
    legacy["params"] = {"base": "deepfm", **spec["params"], "budget": layout["budget"], "tables": 2, "chunks": 5, "chunk_counts": counts}
    legacy.pop("shared", None)
    legacy["embedding"].pop("shared", None)
    (out / "train" / "package" / "model.json").write_text(json.dumps(legacy))
    old, _ = score(find_package(str(out), None), raw, None, "cpu")
    assert np.array_equal(scored["probability"].to_numpy(), old["probability"].to_numpy())


def test_search_stage_optuna_study_feeds_train_with_nested_trial_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    config = tmp_path / "config.yaml"
    config.write_text(
        "search:\n  baseline: false\n  optuna: {trials: 3, max_epochs: 2, models: [fm, deepfm], embedding_dims: [4, 8], max_depth: 1}\n"
    )
    out, uri = _run(tmp_path, "--config", str(config), "--rows", "20000", "--search", "optuna")
    _check_declared(out)
    study = json.loads((out / "search" / "optuna.json").read_text())
    assert len(study["trials"]) == 3 and study["front"] and (out / "search" / "pareto.png").stat().st_size > 10_000
    assert (out / "search" / "study.db").is_file() and not (out / ".study").exists()
    chosen = study["chosen"]["config"]
    report = json.loads((out / "metrics.json").read_text())
    assert report["deep_model"] == chosen["model"] and report["search"]["optuna"]["chosen"]["config"] == chosen
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ctr-pipeline").experiment_id])
    search_run = next(r for r in runs if r.info.run_name == "search")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == search_run.info.run_id]
    assert sorted(r.info.run_name for r in trials) == ["trial 0", "trial 1", "trial 2"]
    assert all("model" in r.data.params for r in trials)
    # the search run's params: the study's settings, not every method's defaults
    assert "optuna.trials" in search_run.data.params and not any(k.startswith(("optfs.", "dnis.")) for k in search_run.data.params)


def test_optuna_searches_optfs_and_dnis_settings_and_train_reproduces_the_chosen_trial(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "search:\n  baseline: false\n  optfs: {epochs: 2, gate_lr: 0.05}\n  dnis: {warmup_epochs: 1, search_epochs: 1}\n"
        "  optuna: {trials: 2, max_epochs: 2, models: [fm, deepfm], embedding_dims: [8], max_depth: 1, methods: [optfs, dnis],\n"
        "           optfs_l1: [1.0e-4, 1.0e-3], dnis_prune_ratio: [0.4, 0.7]}\ntrain: {batch_size: 2048}\n"
    )
    out, _ = _run(tmp_path, "--config", str(config), "--rows", "20000", "--search", "optuna", "--no-tracking")
    study = json.loads((out / "search" / "optuna.json").read_text())
    for trial in study["trials"]:
        assert 1e-4 <= trial["params"]["optfs_l1"] <= 1e-3 and 0.4 <= trial["params"]["dnis_prune_ratio"] <= 0.7
    chosen = study["chosen"]
    cut = study["chosen_search"]["dnis"]["params_cut"]
    assert cut == pytest.approx(chosen["config"]["dnis"]["prune_ratio"], abs=0.01)
    assert (out / "search" / "optfs_gates.pt").is_file() and (out / "search" / "dnis_mask.pt").is_file()
    report = json.loads((out / "metrics.json").read_text())
    assert report["optfs_gates"] and report["dnis_dims"] and report["deep_model"] == chosen["config"]["model"]
    # Train repeats the chosen trial's DNIS retrain from the same start and mask, with train.max_epochs instead of the
    # study's: its first epochs match the trial's, and its best is no worse. To 2e-5, not to the bit: with a benchmark
    # running beside it the two trainings' AUCs differed by 2.2e-6 in 3 of 5 runs (some float sum's order varies under
    # load; not pinned down).
    history = json.loads((out / "train" / "history.json").read_text())
    assert max(r["valid_auc"] for r in history[:2]) == pytest.approx(chosen["valid_auc"], abs=2e-5)
    assert report["valid_auc"] >= chosen["valid_auc"] - 2e-5


@pytest.mark.parametrize(("method", "rule", "flag"), [("hashing", "hash", "hashing_trick"), ("capped", "cap", "frequency_cap")])
def test_the_budget_baselines_run_as_methods_through_train_and_predict(tmp_path, method, rule, flag):
    import numpy as np

    from pipeline.package import find_package, load_package, score

    config = tmp_path / "config.yaml"
    config.write_text(f"search:\n  baseline: false\n  {method}: {{budget: 20000}}\ntrain: {{max_epochs: 1, params: {{hidden: [16]}}}}\n")
    out = tmp_path / "out"
    args = ["run", "--config", str(config), "--rows", "8000", "--search", method, "--out", str(out), "--no-tracking"]
    assert main([*args, "--stages", "ingest,rank,search,train"]) == 0
    summary = json.loads((out / "search" / f"{method}.json").read_text())
    fm = {f["name"]: f["vocab_size"] for f in json.loads((out / "ingest" / "feature_map.json").read_text())["fields"]}
    assert summary["embedding_parameters"] <= 20000 and summary["fields_cut"] >= 1
    assert all(summary["rows"][name] <= fm[name] for name in summary["rows"])
    if method == "capped":  # one min count for every field: a cut field keeps its values seen that often, drops the rarer
        from pipeline import catalog

        train = pl.read_parquet(catalog.split_file(out / "ingest", "train"))
        for name, rows in summary["rows"].items():
            if rows < fm[name]:
                counts = np.bincount(train[name].to_numpy(), minlength=fm[name])
                assert counts[3:rows].min() >= summary["min_count"] >= counts[rows:].max()
    assert json.loads((out / "metrics.json").read_text())[flag] is True
    spec = json.loads((out / "train" / "package" / "model.json").read_text())
    assert spec["methods"][method]["layout"]["rule"] == rule
    model, *_ = load_package(out / "train" / "package")
    shapes = {name: tuple(w.shape) for name, w in model.embedding.table_weights().items()}
    assert shapes == {name: (rows, spec["embedding"]["dim"]) for name, rows in summary["rows"].items()}
    raw = tmp_path / "rows.parquet"
    synthetic.generate(8_000, 7)[-300:].write_parquet(raw)
    scored, _ = score(find_package(str(out), None), raw, None, "cpu")
    again, _ = score(find_package(str(out), None), raw, None, "cpu")
    assert scored.height == 300 and np.array_equal(scored["probability"].to_numpy(), again["probability"].to_numpy())


@pytest.mark.parametrize("numeric", ["numeric_as_value: true, piecewise_bins: 8", "numeric_as_value: both"])
def test_numeric_values_travel_in_the_package_and_predict_scores_as_the_run_did(tmp_path, numeric):
    # The encodings' derived fields and the raw numeric ones, embedded by the piecewise-linear encoding (its edges are
    # fitted by the trainer, saved with the weights and used by predict on raw rows, the test holdout), or each as
    # its bucket id and its value.
    config = tmp_path / "c.yaml"
    config.write_text(f"train: {{max_epochs: 2, {numeric}, baselines: []}}\n")
    out = tmp_path / "out"
    assert (
        main(["run", "--rows", "8000", "--config", str(config), "--stages", "ingest,search,train", "--out", str(out), "--no-tracking"]) == 0
    )
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    assert metrics["kind"] == "deep"
    from pipeline.package import load_package

    model, *_ = load_package(out / "train" / "package")
    dense = {f.name for f in model.embedding.dense}
    assert dense and (dense <= set(model.embedding.keys)) == numeric.endswith("both")  # both: bucket ids and values
    target = tmp_path / "p.parquet"
    assert main(["predict", "--model", str(out), "--data", str(out / "ingest" / "holdout" / "test.parquet"), "--out", str(target)]) == 0
    from sklearn.metrics import roc_auc_score

    scored = pl.read_parquet(target)
    assert roc_auc_score(scored[synthetic.LABEL].to_numpy(), scored["probability"].to_numpy()) == pytest.approx(
        metrics["test_auc"], abs=1e-6
    )


@pytest.mark.parametrize("keep", [True, False])
def test_ingest_into_a_relative_directory_writes_every_split_and_the_holdouts_when_kept(tmp_path, monkeypatch, keep):
    # `make run` writes under a relative OUT: the carved valid/test rows (the raw holdouts) must land where the
    # encoded splits read them, and move into OUT/ingest/holdout only when kept; no scratch is left behind.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(f"split: {{keep_raw_holdout: {str(keep).lower()}}}\n")
    assert main(["ingest", "--rows", "5000", "--config", "c.yaml", "--out", "rel", "--no-tracking"]) == 0
    stage = tmp_path / "rel" / "ingest"
    rows = {name: pl.read_parquet(stage / f"{name}.parquet").height for name in ("train", "valid", "test")}
    assert rows["valid"] > 300 and rows["test"] > 300 and sum(rows.values()) == 5000
    holdout = sorted(p.name for p in (stage / "holdout").glob("*.parquet")) if (stage / "holdout").exists() else []
    assert holdout == (["test.parquet", "valid.parquet"] if keep else [])
    if keep:
        for name in ("valid", "test"):
            raw, encoded = pl.read_parquet(stage / "holdout" / f"{name}.parquet"), pl.read_parquet(stage / f"{name}.parquet")
            assert raw.height == rows[name] and raw[synthetic.LABEL].cast(pl.Int8).equals(encoded[synthetic.LABEL])
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".staged") or p.name.startswith("carved-")]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_predict_scores_at_the_precision_the_model_trained_at(tmp_path, precision):
    # On a host where `auto` is bf16 (AMX) an fp32 model, and on one where it is fp32 a bf16 model, scored at `auto`,
    # moved its AUC by ~1e-5: the package records the training autocast and predict uses it.
    from pipeline.package import score

    config = tmp_path / "config.yaml"
    config.write_text(f"train: {{max_epochs: 1, precision: {precision}, baselines: [], choose: deep}}\n")
    out = tmp_path / "out"
    args = ["run", "--rows", "12000", "--config", str(config), "--out", str(out), "--no-tracking", "--search", "none"]
    assert main(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    _, metrics = score(out / "train" / "package", out / "ingest" / "holdout" / "test.parquet", None, "cpu")
    assert metrics["auc"] == pytest.approx(report["test_auc"], abs=1e-12)
    assert metrics["logloss"] == pytest.approx(report["test_logloss"], abs=1e-12)


def test_text_ids_keep_their_form_in_every_split_file_side_table_and_predict(tmp_path):
    # Train reads `zip` as text (A789 is no number); a valid/test file, a side table's key or rows to score whose
    # zips all look like numbers must still read 0123 as "0123", not 123 (an out-of-vocabulary id).
    from pipeline.package import score

    rng = np.random.default_rng(0)
    zips = np.array(["0123", "0456", "9999", "A789"])

    def rows(n, pool):
        z = rng.choice(pool, n)
        click = (rng.random(n) < np.where(z == "0123", 0.8, 0.2)).astype(int)
        return pl.DataFrame({"zip": z, "site": rng.integers(0, 3, n), "click": click})

    data = tmp_path / "data"
    data.mkdir()
    rows(3000, zips).write_csv(data / "train.csv")
    rows(600, zips[:3]).write_csv(data / "valid.csv")  # no letter: polars alone would read these as integers
    rows(600, zips[:3]).write_csv(data / "test.csv")
    (tmp_path / "side.csv").write_text("zip,region\n0123,north\n0456,south\n9999,east\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data: {{label: click, joins: [{{path: {tmp_path / 'side.csv'}, key: zip}}]}}\n"
        "train: {max_epochs: 1, baselines: [], choose: deep}\nrank: {select: {enabled: false}}\n"
    )
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--config", str(config), "--out", str(out), "--no-tracking", "--search", "none"]) == 0
    vocab = dict(pl.read_parquet(out / "ingest" / "vocab" / "zip.parquet").select("value", "id").iter_rows())
    valid = pl.read_parquet(out / "ingest" / "valid.parquet")
    raw_valid = pl.read_csv(data / "valid.csv", schema_overrides={"zip": pl.String})
    assert valid["zip"].to_list() == [vocab[z] for z in raw_valid["zip"]]  # no OOV id (1) among them
    assert 1 not in valid["region"].to_list() and 2 not in valid["region"].to_list()  # every zip found its region
    # predict: the rows alone, and the same rows in a file that also holds a letter id, score alike
    (tmp_path / "score.csv").write_text((data / "valid.csv").read_text())
    with_letter = raw_valid.vstack(pl.DataFrame({"zip": ["A789"], "site": [1], "click": [0]}))
    with_letter.write_csv(tmp_path / "score_letter.csv")
    alone, _ = score(out / "train" / "package", tmp_path / "score.csv", None, "cpu")
    mixed, _ = score(out / "train" / "package", tmp_path / "score_letter.csv", None, "cpu")
    assert alone["probability"].to_list() == mixed["probability"][:-1].to_list()


def test_predict_refuses_infinite_numbers_and_reads_nan_labels_as_missing(tmp_path):
    from featuremap.errors import InputError
    from pipeline.errors import UserError
    from pipeline.package import score

    config = tmp_path / "config.yaml"
    # a thresholded label: NaN passed its missing-label check (NaN is no null) and was encoded as a null label
    config.write_text("data: {label_threshold: 0.5}\ntrain: {max_epochs: 1, baselines: [], choose: deep, numeric_as_value: true}\n")
    out = tmp_path / "out"
    assert main(["run", "--rows", "6000", "--config", str(config), "--out", str(out), "--no-tracking", "--search", "none"]) == 0
    rows = pl.read_parquet(out / "ingest" / "holdout" / "test.parquet")
    rows.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(float("inf")).otherwise(pl.col("num_signal")).alias("num_signal")
    ).write_parquet(tmp_path / "inf.parquet")
    with pytest.raises(UserError, match="column 'num_signal' has infinite values"):
        score(out / "train" / "package", tmp_path / "inf.parquet", None, "cpu")
    # a NaN label in rows to score is a missing label, refused as one (not an encoded null)
    rows.with_columns(pl.col(synthetic.LABEL).cast(pl.Float64).fill_null(0.0)).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(float("nan")).otherwise(pl.col(synthetic.LABEL)).alias(synthetic.LABEL)
    ).write_parquet(tmp_path / "nan_label.parquet")
    with pytest.raises(InputError, match="label column 'label'"):
        score(out / "train" / "package", tmp_path / "nan_label.parquet", None, "cpu")


def test_train_refuses_a_search_output_it_would_apply_wrongly(tmp_path, capsys):
    # A method named for train that the search ran without, and an OptFS search of DeepFM applied to FM: each was applied
    # in silence (the method left out; FM loading part of DeepFM's rewound weights), now one line each, exit 2.
    config = tmp_path / "config.yaml"
    config.write_text("search: {optfs: {epochs: 1}}\ntrain: {max_epochs: 1, batch_size: 1024, baselines: []}\n")
    out = tmp_path / "out"
    common = ["--config", str(config), "--out", str(out), "--no-tracking"]
    assert main(["run", "--rows", "6000", *common, "--search", "encodings,optfs", "--model", "deepfm"]) == 0
    capsys.readouterr()
    assert main(["train", *common, "--search", "encodings,optfs", "--model", "fm"]) == 2
    assert "the search output does not fit this model (the searched weights are another model's" in capsys.readouterr().err
    assert main(["run", "--rows", "6000", *common, "--search", "encodings", "--model", "deepfm"]) == 0
    capsys.readouterr()
    assert main(["train", *common, "--search", "encodings,dnis", "--model", "deepfm"]) == 2
    assert "the search output holds no dnis (its search ran without it)" in capsys.readouterr().err


def test_predict_streams_in_chunks_keeps_columns_and_leaves_nothing_when_a_chunk_fails(tmp_path, capfd, monkeypatch):
    # predict held the whole encoded file in memory (4.2 M rows: 5.9 GB); it now scores `SCORE_ROWS` at a time and writes
    # each chunk as it is done. Chunked or not, every kind's probabilities are the same to the bit.
    from pipeline import package
    from pipeline.package import Scoring, score

    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 1, batch_size: 256, choose: blend, baselines: [lightgbm, wide]}\n")
    out = tmp_path / "out"
    assert main(["run", "--rows", "8000", "--config", str(config), "--out", str(out), "--no-tracking", "--search", "none"]) == 0
    assert json.loads((out / "metrics.json").read_text())["kind"] == "blend"
    rows = pl.read_parquet(out / "ingest" / "holdout" / "test.parquet").with_row_index("request_id")
    rows.write_csv(tmp_path / "rows.csv")
    whole, metrics = score(out / "train" / "package", tmp_path / "rows.csv", None, "cpu")
    chunked = Scoring(out / "train" / "package", tmp_path / "rows.csv", None, "cpu", rows=300)  # 300 -> 256: whole batches
    frames = list(chunked)
    assert [f.height for f in frames[:-1]] == [256] * (len(frames) - 1) and len(frames) == -(-rows.height // 256)
    assert pl.concat(frames).equals(whole) and chunked.metrics["auc"] == metrics["auc"]
    # the CLI: chunks written as they come, a request id kept beside its probability
    monkeypatch.setattr(package, "SCORE_ROWS", 512)
    args = ["predict", "--model", str(out), "--data", str(tmp_path / "rows.csv"), "--keep", "request_id,pair_a"]
    assert main([*args, "--out", str(tmp_path / "p.csv")]) == 0
    written = pl.read_csv(tmp_path / "p.csv")
    assert written.columns == ["request_id", "pair_a", "probability", synthetic.LABEL]
    assert written["request_id"].to_list() == list(range(rows.height)) and written["pair_a"].equals(rows["pair_a"])
    assert written["probability"].to_list() == whole["probability"].to_list()
    capfd.readouterr()
    # bad --keep: one line, exit 2, no file
    for keep, said in (("nope", "no column 'nope' to keep"), ("probability", "the predictions have that column already")):
        assert (
            main(
                ["predict", "--model", str(out), "--data", str(tmp_path / "rows.csv"), "--keep", keep, "--out", str(tmp_path / "k.parquet")]
            )
            == 2
        )
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0] and not (tmp_path / "k.parquet").exists()
    # a bad row in the last chunk: the chunks before it were written to the temporary file, which goes too
    bad = rows.with_columns(
        pl.when(pl.col("request_id") == rows.height - 1).then(float("inf")).otherwise(pl.col("num_signal")).alias("num_signal")
    )
    bad.write_parquet(tmp_path / "bad.parquet")
    assert main(["predict", "--model", str(out), "--data", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "b.parquet")]) == 2
    assert "infinite values" in capfd.readouterr().err and not list(tmp_path.glob("*b.parquet*"))
    # an id written with leading zeros is kept as written; a list column cannot go to CSV (said before any scoring)
    rows.with_columns(pl.col("request_id").cast(pl.String).str.zfill(6), pl.concat_list("pair_a", "pair_b").alias("both")).write_parquet(
        tmp_path / "ids.parquet"
    )
    rows.with_columns(pl.col("request_id").cast(pl.String).str.zfill(6)).write_csv(tmp_path / "ids.csv")
    assert (
        main(
            ["predict", "--model", str(out), "--data", str(tmp_path / "ids.csv"), "--keep", "request_id", "--out", str(tmp_path / "i.csv")]
        )
        == 0
    )
    assert pl.read_csv(tmp_path / "i.csv", schema_overrides={"request_id": pl.String})["request_id"][:2].to_list() == ["000000", "000001"]
    assert (
        main(["predict", "--model", str(out), "--data", str(tmp_path / "ids.parquet"), "--keep", "both", "--out", str(tmp_path / "l.csv")])
        == 2
    )
    assert "column cannot go to a CSV file" in capfd.readouterr().err and not list(tmp_path.glob("*l.csv*"))
    # stopped by a scheduler (SIGTERM) while it scores: the temporary file goes, as on an error
    pl.concat([bad.drop("num_signal").with_columns(rows["num_signal"])] * 400).write_parquet(tmp_path / "many.parquet")
    command = [sys.executable, "-m", "pipeline", "predict", "--model", str(out), "--data", str(tmp_path / "many.parquet")]
    child = subprocess.Popen([*command, "--out", str(tmp_path / "m.parquet")], cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".m.parquet.*.tmp")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 128 + signal.SIGTERM and not list(tmp_path.glob("*m.parquet*"))


def test_a_run_logs_each_epoch_and_each_search_method_where_no_bar_shows(tmp_path, capfd):
    # A scheduler's log is no terminal: the bars are off, and a long stage said nothing until it ended.
    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 2, patience: 5, baselines: []}\n")
    out = tmp_path / "out"
    assert main(["run", "--rows", "6000", "--config", str(config), "--out", str(out), "--no-tracking"]) == 0
    err = capfd.readouterr().err.splitlines()
    epochs = [line for line in err if line.startswith("train: deepfm epoch ")]
    history = json.loads((out / "train" / "history.json").read_text())
    assert len(epochs) == len(history) == 2 and epochs[1].startswith("train: deepfm epoch 2/2: valid AUC ")
    assert f"valid AUC {history[1]['valid_auc']:.4f}" in epochs[1]
    assert [line for line in err if line.startswith("search: encodings done in ")]


def test_a_sqlite_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    # MLflow's default artifact root is ./mlruns: every store's artifacts went to the working directory, mixed, where
    # `make clean` removes them. A store made by a run keeps them in mlruns/ beside its database.
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    (tmp_path / "store").mkdir()
    uri = tracking_store(tmp_path / "store" / "mlflow.db")
    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 1, baselines: [], choose: deep}\npromote: {enabled: false}\n")
    args = ["run", "--rows", "3000", "--config", str(config), "--out", str(tmp_path / "out"), "--search", "none", "--tracking-uri", uri]
    assert main(args) == 0
    experiment = MlflowClient(uri).get_experiment_by_name("ctr-pipeline")
    assert experiment.artifact_location == (tmp_path / "store" / "mlruns").as_uri()
    assert any((tmp_path / "store" / "mlruns").rglob("metrics.json")) and not (tmp_path / "mlruns").exists()
