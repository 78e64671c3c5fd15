"""Operations: stage cache and run journal, the output lock, kill -9 and resume, concurrent runs, faults."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from pipeline import cache
from pipeline.cli import main
from tests.conftest import ROOT

CONFIG = "train: {max_epochs: 3, batch_size: 512}\n"


def _config(tmp_path, text=CONFIG):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def _journal(out):
    return json.loads((out / "run.json").read_text())


def _command(out, config, rows=20000):
    return [sys.executable, "-m", "pipeline", "run", "--out", str(out), "--config", str(config), "--no-tracking", "--rows", str(rows)]


def test_rerun_reuses_unchanged_stages_and_reruns_what_a_change_invalidates(tmp_path, capsys):
    out = tmp_path / "out"
    config = _config(tmp_path)
    args = ["run", "--out", str(out), "--config", str(config), "--no-tracking", "--rows", "5000"]
    assert main(args) == 0
    first = _journal(out)
    assert first["status"] == "succeeded" and {s["action"] for s in first["stages"].values()} == {"ran"}
    assert set(first["stages"]) == {"ingest", "rank", "search", "train", "report"}
    for stage in first["stages"].values():
        assert stage["start"] <= stage["end"] and stage["wall_seconds"] >= 0 and len(stage["fingerprint"]) == 20
    metrics = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert main(args) == 0
    second = _journal(out)
    assert {s["action"] for s in second["stages"].values()} == {"reused"}
    assert "rank: reused" in capsys.readouterr().err
    assert [second["stages"][s]["fingerprint"] for s in second["stages"]] == [first["stages"][s]["fingerprint"] for s in first["stages"]]
    assert (out / "metrics.json").read_text() == metrics
    # A rank setting changes rank and everything after it; ingest is reused.
    config.write_text(CONFIG + "rank: {score: plain}\n")
    assert main(args) == 0
    third = _journal(out)
    assert {k: v["action"] for k, v in third["stages"].items()} == {
        "ingest": "reused",
        "rank": "ran",
        "search": "ran",
        "train": "ran",
        "report": "ran",
    }
    # --force reruns everything.
    assert main([*args, "--force"]) == 0
    assert {s["action"] for s in _journal(out)["stages"].values()} == {"ran"}


def test_fingerprint_follows_input_files_and_code(tmp_path, monkeypatch):
    from pipeline.config import load_config

    data = tmp_path / "data.csv"
    data.write_text("label,a\n1,x\n0,y\n")
    cfg = load_config(None, {"data": {"path": str(data)}, "out": str(tmp_path / "out")})
    before = cache.stage_fingerprint(cfg, "ingest")
    assert cache.stage_fingerprint(cfg, "ingest") == before
    data.write_text("label,a\n1,x\n0,z\n1,w\n")  # new content (size and mtime)
    changed = cache.stage_fingerprint(cfg, "ingest")
    assert changed != before
    # the same size and mtime, other bytes (cp -p, touch -r, rsync): the ctime and inode tell
    stat = data.stat()
    data.write_text("label,a\n0,x\n1,z\n0,w\n")
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data.stat().st_size == stat.st_size and cache.stage_fingerprint(cfg, "ingest") != changed
    changed = cache.stage_fingerprint(cfg, "ingest")
    monkeypatch.setattr(cache, "code_version", lambda: "another version")
    assert cache.stage_fingerprint(cfg, "ingest") != changed
    # a side table joined to the synthetic data is an input too
    side = tmp_path / "side.csv"
    side.write_text("inf_c2,extra\n0,a\n")
    synthetic = load_config(None, {"data": {"joins": [{"path": str(side), "key": "inf_c2"}]}, "out": str(tmp_path / "o2")})
    first = cache.stage_fingerprint(synthetic, "ingest")
    side.write_text("inf_c2,extra\n0,a\n1,b\n")
    assert cache.stage_fingerprint(synthetic, "ingest") != first
    # train's registry: another store or name is another train output (a model registered elsewhere is none here)
    tracked = load_config(None, {"out": str(tmp_path / "o3"), "tracking": {"uri": "sqlite:///a.db"}})
    elsewhere = load_config(None, {"out": str(tmp_path / "o3"), "tracking": {"uri": "sqlite:///b.db"}})
    renamed = load_config(None, {"out": str(tmp_path / "o3"), "tracking": {"uri": "sqlite:///a.db", "registered_model": "x"}})
    prints = {cache.stage_fingerprint(c, "train") for c in (tracked, elsewhere, renamed)}
    assert len(prints) == 3


def test_a_second_run_into_a_locked_output_directory_fails_at_once_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("theirs")
    with cache.out_lock(out):
        started = time.perf_counter()
        code = main(["run", "--out", str(out), "--no-tracking", "--rows", "2000", "--stages", "ingest"])
        assert time.perf_counter() - started < 10
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"(pid {os.getpid()}) is writing this output directory" in err
    assert sorted(p.name for p in out.iterdir()) == [".lock", "keep.txt"]


@pytest.mark.slow
def test_kill_9_during_training_then_rerun_resumes_to_the_uninterrupted_metrics(tmp_path):
    config = _config(tmp_path, "train: {max_epochs: 3, batch_size: 256, checkpoint_seconds: 0.5, precision: fp32}\nsearch: {methods: []}\n")
    reference = tmp_path / "reference"
    assert main(_command(reference, config)[3:]) == 0  # the uninterrupted run, in process
    out = tmp_path / "killed"
    victim = subprocess.Popen(_command(out, config), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / ".checkpoints" / "train.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a mid-epoch checkpoint or two later
    assert victim.poll() is None, "training finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (out / "train").exists() and checkpoint.is_file()
    assert any(out.glob(".train.tmp-*"))  # the dead run's staging directory
    done = subprocess.run(_command(out, config), cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "train: resuming from" in done.stderr
    journal = _journal(out)
    assert journal["stages"]["ingest"]["action"] == "reused" and journal["stages"]["train"]["action"] == "ran"
    assert not any(out.glob(".*.tmp-*")) and not checkpoint.exists()
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    for key in ("valid_auc", "valid_logloss", "test_auc", "test_logloss", "epochs", "best_epoch"):
        assert got[key] == want[key], key


@pytest.mark.slow
def test_concurrent_runs_same_seed_give_identical_outputs_and_a_shared_directory_is_locked(tmp_path):
    config = _config(tmp_path, "train: {max_epochs: 2, batch_size: 512}\n")
    outs = [tmp_path / "a", tmp_path / "b"]
    runs = [
        subprocess.Popen(_command(out, config, 6000), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for out in outs
    ]
    lock = outs[0] / ".lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and runs[0].poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    third = subprocess.run(_command(outs[0], config, 6000), cwd=ROOT, capture_output=True, text=True)  # same directory as the first
    results = [(r.wait(), r.stderr.read()) for r in runs]
    assert [code for code, _ in results] == [0, 0], results
    assert third.returncode == 2 and "is writing this output directory" in third.stderr
    # The same seed twice: identical ranking (every score) and identical CPU metrics.
    first, second = (pl.read_csv(out / "rank" / "ranking.csv") for out in outs)
    assert first.equals(second)
    metrics = [json.loads((out / "metrics.json").read_text()) for out in outs]
    assert metrics[0]["precision"] == metrics[1]["precision"]  # chosen by the CPU's flags, never by a timing under load
    for key in ("valid_auc", "valid_logloss", "test_auc", "test_logloss", "params"):
        assert metrics[0][key] == metrics[1][key], key
    for name, candidate in metrics[0]["candidates"].items():  # every candidate, not only the chosen one
        for key in ("valid_auc", "valid_logloss", "test_auc", "test_logloss"):
            assert candidate[key] == metrics[1]["candidates"][name][key], (name, key)


def test_a_write_error_mid_stage_leaves_the_committed_output_and_no_partial_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    config = _config(tmp_path)
    args = ["run", "--out", str(out), "--config", str(config), "--no-tracking", "--rows", "5000", "--stages", "ingest,rank"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in (out / "rank").iterdir()}
    config.write_text(CONFIG + "rank: {score: plain}\n")  # rank must rerun
    real = pl.DataFrame.write_csv

    def disk_full(self, file=None, *a, **k):
        if file is not None and str(file).endswith("pairs.csv"):  # after ranking.csv was written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, file, *a, **k)

    monkeypatch.setattr(pl.DataFrame, "write_csv", disk_full)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("error: rank: write error: No space left on device")
    assert {p.name: p.read_bytes() for p in (out / "rank").iterdir()} == before  # the old committed output, whole
    assert not list(out.glob(".*tmp*"))
    assert _journal(out)["status"] == "failed"


def test_unreachable_tracking_server_fails_fast_or_falls_back_to_the_local_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    args = ["run", "--out", str(out), "--rows", "2000", "--stages", "ingest", "--tracking-uri", "http://10.255.255.1:5000"]
    import mlflow  # noqa: F401  (imported before the clock starts: the claim is about the wait on the network, not import time)

    started = time.perf_counter()
    assert main(args) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tracking store http://10.255.255.1:5000 is not usable" in err
    assert not out.exists()
    _config(tmp_path, "tracking: {fallback: true}\n")
    assert main([*args, "--config", str(tmp_path / "config.yaml")]) == 0
    assert "logging to the local store" in capsys.readouterr().err
    assert (tmp_path / "mlflow.db").is_file() and (out / "ingest" / "feature_map.json").is_file()


def test_many_synthetic_rows_are_ingested_out_of_core_to_the_same_files(tmp_path, monkeypatch):
    from features import synthetic

    outs = []
    for limit in (10**9, 4_000):  # in memory; then as parquet shards in the stage's scratch, read out of core
        monkeypatch.setattr(synthetic, "IN_MEMORY_ROWS", limit)
        out = tmp_path / f"out{limit}"
        assert main(["ingest", "--rows", "30000", "--out", str(out), "--no-tracking"]) == 0
        outs.append(out / "ingest")
    for name in ("train.parquet", "valid.parquet", "test.parquet"):
        assert pl.read_parquet(outs[0] / name).equals(pl.read_parquet(outs[1] / name))
    assert (outs[0] / "feature_map.json").read_text() == (outs[1] / "feature_map.json").read_text()
    assert not any(p.name.startswith(".") for p in outs[1].iterdir())  # the scratch shards are gone


def test_generate_writes_whole_or_nothing(tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["generate", "--rows", "3000", "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["part-00000.parquet"] and pl.read_parquet(out).height == 3000
    for args, said in (
        (["--rows", "10", "--out", str(out)], "already holds parquet shards"),
        (["--rows", "10", "--seed", "-1", "--out", str(tmp_path / "s")], "--seed must be 0 or more"),
        (["--rows", str(10**13), "--out", str(tmp_path / "huge")], "synthetic rows need about"),  # more than any disk here
    ):
        capsys.readouterr()
        assert main(["generate", *args]) == 2 and said in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # nothing else written, no hidden work folder left
    assert main(["run", "--rows", str(10**13), "--out", str(tmp_path / "r"), "--no-tracking"]) == 2  # the same check
    assert not (tmp_path / "r").exists()


def test_train_is_keyed_on_what_auto_resolves_to_on_this_host(tmp_path, monkeypatch):
    # A train output shared between hosts (runs_root on shared storage) is not reused where `auto` means another
    # precision (bf16 on an AMX CPU, fp32 elsewhere) or device.
    from models import trainer
    from pipeline.config import load_config

    cfg = load_config(None, {"out": str(tmp_path / "out")})
    monkeypatch.setattr(trainer, "cpu_bf16_pays", lambda: True)
    bf16 = cache.stage_fingerprint(cfg, "train")
    monkeypatch.setattr(trainer, "cpu_bf16_pays", lambda: False)
    assert cache.stage_fingerprint(cfg, "train") != bf16
    assert cache.stage_fingerprint(cfg, "rank") == cache.stage_fingerprint(cfg, "rank")  # rank does not train
