"""Each bad input: one line on stderr naming the problem, exit code 2, no traceback, no output directory."""

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import ROOT, tracking_store

CRITEO_ROW = "\t".join(["1"] + ["5"] * 13 + ["ab"] * 26)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _files(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in files.items():
        _write(directory / name, text)
    return directory


def _parquet(path: Path, frame: pl.DataFrame) -> Path:
    frame.write_parquet(path)
    return path


def _rows(n: int, start: int = 0, a: str | None = None) -> str:
    return "label,a,b,t\n" + "".join(
        f"{i % 2},{a if a and i == start + 3 else i / 7:.6},{'xyz'[i % 3]},{i % 3}\n" for i in range(start, start + n)
    )


def _with_config(d: Path, data: Path, config: str) -> list[str]:
    return ["--data", str(data), "--config", str(_write(d / "c.yaml", config))]


def _damaged_shards(d: Path) -> list[str]:
    """Two good parquet shards and a third cut short: the error names the third."""
    shards = _files(d / "shards", {})
    for i in range(2):
        _parquet(shards / f"part-{i}.parquet", pl.DataFrame({"label": [0, 1] * 20, "a": range(40)}))
    _write_bytes(shards / "part-2.parquet", b"PAR1 cut short")
    return ["--data", str(shards)]


def _mixed_splits(d: Path) -> list[str]:
    """Split files of two formats: one reader would read the other as what it is not."""
    splits = _files(d / "splits", {"train.csv": _rows(60), "test.csv": _rows(20)})
    _parquet(splits / "valid.parquet", pl.read_csv(_rows(20).encode()))
    return ["--data", str(splits)]


def _join_case(d: Path) -> list[str]:
    side = _write(d / "side.csv", "b,label\nx,1\ny,0\n")
    config = _write(d / "j.yaml", f"data: {{joins: [{{path: {side}, key: b}}]}}\n")
    return ["--data", str(_write(d / "d.csv", _rows(60))), "--config", str(config)]


CASES = {
    "missing file": (lambda d: ["--data", str(d / "nope.csv")], "nope.csv: file not found"),
    "empty file": (lambda d: ["--data", str(_write(d / "e.csv", ""))], "file is empty"),
    "header only": (lambda d: ["--data", str(_write(d / "h.csv", "label,a,b\n"))], "header but no data rows"),
    "wrong column count": (
        lambda d: ["--data", str(_write(d / "r.csv", "label,a,b\n1,2,3\n0,1,2\n1,2\n"))],
        "line 4 has 2 columns, expected 3",
    ),
    "criteo wrong column count": (
        lambda d: ["--data", str(_write(d / "c.txt", f"{CRITEO_ROW}\n{CRITEO_ROW}\textra\n")), "--format", "criteo"],
        "line 2 has 41 columns, expected 40",
    ),
    "text in a criteo integer column": (
        lambda d: [
            "--data",
            str(_write(d / "i.txt", f"{CRITEO_ROW}\n" + CRITEO_ROW.replace("\t5\t", "\tfive\t", 1) + "\n")),
            "--format",
            "criteo",
        ],
        "lines 1-2 do not parse (could not parse `five`",  # parsed once, chunk by chunk: the error names the lines
    ),
    "label column missing": (
        lambda d: ["--data", str(_write(d / "l.csv", "a,b\n1,2\n")), "--label", "click"],
        "label column 'click' not found",
    ),
    "label not binary": (lambda d: ["--data", str(_write(d / "n.csv", "label,a\n" + "3,1\n0,2\n1,3\n" * 20))], "is not binary"),
    "repeated header name": (
        lambda d: ["--data", str(_write(d / "dup.csv", "label,a,b,a\n" + "1,2,3,4\n0,1,2,3\n" * 10))],
        "header repeats column name(s) 'a' at positions 2, 4",
    ),
    "separator given but another one used": (
        lambda d: ["--data", str(_write(d / "semi.csv", "label;a;b\n" + "1;2;3\n0;1;2\n" * 10)), "--separator", ","],
        "looks ';'-separated: set data.separator (--separator) to ';'",
    ),
    "text label that is no known pair": (
        lambda d: ["--data", str(_write(d / "txt.csv", "label,a\n" + "good,1\nbad,2\n" * 10))],
        "holds text ('bad', 'good') that is not a known binary pair; set data.positive",
    ),
    "positive as a bare YAML boolean": (
        lambda d: ["--config", str(_write(d / "p.yaml", "data: {positive: yes}\n"))],
        "data.positive: Value error, quote the value",
    ),
    "truncated gzip": (
        lambda d: [
            "--data",
            str(
                _write_bytes(d / "cut.csv.gz", gzip.compress(("label,a\n" + "".join(f"{i % 2},{i}\n" for i in range(5000))).encode())[:300])
            ),
        ],
        "cut.csv.gz: not valid gzip data",
    ),
    "all-null feature": (lambda d: ["--data", str(_write(d / "z.csv", "label,a,b\n" + "1,,x\n0,,y\n" * 20))], "column 'a' has no values"),
    "unknown format": (
        lambda d: ["--data", str(_write(d / "u.csv", "label,a\n1,2\n")), "--format", "xlsx"],
        "data.format: Input should be",
    ),
    "bad config key": (lambda d: ["--config", str(_write(d / "k.yaml", "rank:\n  scroe: plain\n"))], "rank.scroe: unknown key"),
    "bad config type": (
        lambda d: ["--config", str(_write(d / "t.yaml", "split:\n  valid: half\n"))],
        "split.valid: Input should be a valid number",
    ),
    "unknown stage": (lambda d: ["--stages", "ingest,fly"], "stages.1: Input should be"),
    "unknown model": (lambda d: ["--model", "xgboost"], "train.model: Input should be"),
    "empty validation split": (
        lambda d: ["--config", str(_write(d / "v.yaml", "data: {synthetic_rows: 2000}\nsplit: {valid: 0.0}\nstages: [ingest, train]\n"))],
        "validation split is empty",
    ),
    "search stage without a method": (lambda d: ["--stages", "search", "--search", "none"], "the search stage needs a method"),
    "unknown search method": (lambda d: ["--search", "nas"], "search.methods.0: Input should be"),
    "zero search epochs": (
        lambda d: ["--config", str(_write(d / "z.yaml", "search: {methods: [optfs], optfs: {epochs: 0}}\n"))],
        "search.optfs.epochs: Input should be greater than or equal to 1",
    ),
    "zero feature budget": (
        lambda d: ["--config", str(_write(d / "b.yaml", "search: {methods: [optfs], max_features: 0}\n"))],
        "search.max_features: Input should be greater than or equal to 1",
    ),
    "study range upside down": (
        lambda d: ["--config", str(_write(d / "r.yaml", "search: {methods: [optuna], optuna: {optfs_l1: [0.01, 0.001]}}\n"))],
        "optfs_l1: need 0 < low <= high, got [0.01, 0.001]",
    ),
    "optinter warm-up as long as its search": (
        lambda d: [
            "--config",
            str(_write(d / "w.yaml", "search: {methods: [optinter], optinter: {search_epochs: 3, warmup_epochs: 3}}\n")),
        ],
        "warmup_epochs (3) must be below search_epochs (3)",
    ),
    "optinter with another method": (lambda d: ["--search", "optfs,optinter"], "optinter chooses the model, so it runs alone"),
    "a constant label": (
        lambda d: ["--data", str(_write(d / "one.csv", "label,a,b\n" + "1,x,3\n1,y,4\n" * 40))],
        "label column 'label' has a single class",
    ),
    "unified with another method": (lambda d: ["--search", "optfs,unified"], "unified chooses the model, so it runs alone"),
    "the old unified model": (lambda d: ["--model", "unified"], "Unified Embedding is the method unified now: search.methods [unified]"),
    "unified over a model that cannot take shared tables": (
        lambda d: [
            "--config",
            str(_write(d / "s.yaml", "data: {synthetic_rows: 3000}\nstages: [ingest, search]\n")),
            "--search",
            "unified",
            "--model",
            "fgcnn",
        ],
        "search unified with model 'fgcnn': model 'fgcnn' cannot take shared tables",
    ),
    "chunk counts by rank without the rank stage": (
        lambda d: [
            "--config",
            str(
                _write(
                    d / "u.yaml",
                    "data: {synthetic_rows: 3000}\nstages: [ingest, search]\nsearch: {methods: [unified], unified: {chunks: 2, chunk_counts: rank}}\n",
                )
            ),
        ],
        "a search setting takes the rank stage's order; run rank first",
    ),
    "bare carriage returns": (
        lambda d: ["--data", str(_write(d / "cr.csv", "label,a,b\r1,2,3\r0,1,2\r"))],
        "cr.csv: the header line holds a bare carriage return",
    ),
    "negative split seed": (
        lambda d: ["--config", str(_write(d / "s.yaml", "split: {seed: -1}\n"))],
        "split.seed: Input should be greater than or equal to 0",
    ),
    "config not UTF-8": (
        lambda d: ["--config", str(_write_bytes(d / "u.yaml", "split: {valid: 0.2}\n".encode("utf-16")))],
        "u.yaml: not UTF-8 text",
    ),
    "an infinity in the test split": (
        lambda d: [
            "--data",
            str(_files(d / "given", {"train.csv": _rows(60), "valid.csv": _rows(20, 60), "test.csv": _rows(20, 80, "inf")})),
        ],
        "(test split): column 'a' has infinite values",
    ),
    "an infinity in a test file whose column is integers in train": (
        lambda d: [
            "--data",
            str(
                _files(
                    d / "given",
                    {
                        "train.csv": "label,a,b\n" + "".join(f"{i % 2},{i * 7 % 50},{'xy'[i % 2]}\n" for i in range(60)),
                        "valid.csv": "label,a,b\n" + "".join(f"{i % 2},{i % 50},x\n" for i in range(20)),
                        "test.csv": "label,a,b\n" + "".join(f"{i % 2},{'inf' if i == 3 else i / 2},y\n" for i in range(20)),
                    },
                )
            ),
            "--config",
            str(_write(d / "n.yaml", "schema: {numeric: [a]}\n")),
        ],
        "(test split): column 'a' has infinite values",
    ),
    "valid and test files without train": (
        lambda d: ["--data", str(_files(d / "holdouts", {"valid.csv": _rows(20), "test.csv": _rows(20, 20)}))],
        "split files (valid.csv, test.csv) without a train file",
    ),
    "a time split with too few distinct times": (
        lambda d: _with_config(d, _write(d / "t.csv", _rows(90)), "split: {method: time, time_column: t}\n"),
        "split.time_column 't': the valid split would be empty",
    ),
    "a time column without values": (
        lambda d: _with_config(
            d,
            _parquet(
                d / "t.parquet", pl.DataFrame({"label": [1, 0] * 20, "a": range(40), "t": [None] * 40}, schema_overrides={"t": pl.Datetime})
            ),
            "split: {method: time, time_column: t}\n",
        ),
        "split.time_column 't' has no values",
    ),
    "a side table with a column named like the label": (_join_case, "a side table (data.joins) has a column named like the label 'label'"),
    "csv files whose headers differ": (
        lambda d: ["--data", str(_write(d / "a.csv", _rows(30))), "--data", str(_write(d / "b.csv", "b,a,label,t\nx,1,0,2\n"))],
        "b.csv: its header has the same columns in another order than a.csv's",
    ),
    "a parquet column without a name": (
        lambda d: ["--data", str(_parquet(d / "e.parquet", pl.DataFrame({"label": [0, 1] * 20, "": range(40), "a": range(40)})))],
        "a column has an empty name",
    ),
    "the label listed in the schema": (
        lambda d: _with_config(d, _write(d / "d.csv", _rows(30)), "schema: {drop: [label]}\n"),
        "schema.drop names the label column 'label'",
    ),
    "a column given two kinds": (
        lambda d: _with_config(d, _write(d / "d.csv", _rows(30)), "schema: {numeric: [a], categorical: [a]}\n"),
        "column 'a' is in both schema.categorical and schema.numeric",
    ),
    "parquet shards whose types differ": (
        lambda d: [
            "--data",
            str(_parquet(d / "a.parquet", pl.DataFrame({"label": [0, 1] * 20, "a": range(40)}))),
            "--data",
            str(_parquet(d / "b.parquet", pl.DataFrame({"a": range(40), "label": [0, 1] * 20}, schema_overrides={"label": pl.Int32}))),
        ],
        "b.parquet: its columns differ from a.parquet's (label is Int32 here, Int64 there)",
    ),
    "a libsvm token that is no idx:val pair": (
        lambda d: ["--data", str(_write(d / "t.libsvm", "1 1:1 5:1\n0 2:1 6\n" * 20)), "--format", "libsvm"],
        "line 2 has a token that is not idx:val",
    ),
    "a list column whose lists are all empty": (
        lambda d: [
            "--data",
            str(
                _parquet(
                    d / "l.parquet",
                    pl.DataFrame({"label": [0, 1] * 20, "a": range(40), "tags": [[]] * 40}, schema_overrides={"tags": pl.List(pl.String)}),
                )
            ),
        ],
        "column 'tags' has no values",
    ),
    "a device as the input": (lambda d: ["--data", "/dev/null", "--format", "csv"], "/dev/null: not a regular file (a pipe or a device)"),
    "labels -1, 0 and 1": (
        lambda d: ["--data", str(_write(d / "m.csv", "label,a\n" + "-1,1\n0,2\n1,3\n" * 20))],
        "label column 'label' holds both -1 and 0",
    ),
    "a libsvm label of -2": (
        lambda d: ["--data", str(_write(d / "n.libsvm", "1 1:1 5:1\n-2 2:1 6:1\n0 3:1 5:1\n" * 20)), "--format", "libsvm"],
        "is not binary",
    ),
    "a config key given twice": (
        lambda d: ["--config", str(_write(d / "c.yaml", "train:\n  max_epochs: 1\n  max_epochs: 2\n"))],
        "not valid YAML (key 'max_epochs' given twice (line 3))",
    ),
    "a damaged parquet shard among good ones": (_damaged_shards, "part-2.parquet: not a readable parquet file"),
    "a side table that is not there": (
        lambda d: _with_config(d, _write(d / "d.csv", _rows(30)), f"data: {{joins: [{{path: {d / 'side.csv'}, key: a}}]}}\n"),
        "side.csv: side table not found; check data.joins' path",
    ),
    "split files of two formats": (_mixed_splits, "files of several formats (train.csv: csv, valid.parquet: parquet, test.csv: csv)"),
    "a list-of-lists column": (
        lambda d: [
            "--data",
            str(_parquet(d / "ll.parquet", pl.DataFrame({"label": [0, 1] * 20, "a": range(40), "ll": [[[1], [2, 3]]] * 40}))),
        ],
        "column 'll' is a list of List(Int64); flatten it",
    ),
    "schema.multi on an integer column": (
        lambda d: _with_config(
            d, _parquet(d / "i.parquet", pl.DataFrame({"label": [0, 1] * 20, "n": range(40)})), "schema: {multi: [n]}\n"
        ),
        "schema.multi names column 'n' of type Int64",
    ),
    "a wide model's C that is no positive number": (
        lambda d: ["--config", str(_write(d / "c.yaml", "train: {baseline_params: {wide: {C: [1, -2]}}}\n"))],
        "baseline_params.wide.C: [1, -2] is not a positive number or a list of them",
    ),
    "a device that is none": (lambda d: ["--device", "gpu"], "train.device: String should match pattern"),
    "too few rows for a valid split": (lambda d: ["--rows", "5"], "the valid split got no rows (split.valid = 0.1"),
    "a valid split of one class": (lambda d: ["--rows", "20"], "(valid split): its 1 row(s) all have label 1, so AUC is undefined"),
    "unknown chunk count rule": (
        lambda d: ["--config", str(_write(d / "c.yaml", "search: {methods: [unified], unified: {chunks: 2, chunk_counts: sizes}}\n"))],
        "search.unified.chunk_counts",
    ),
}


# Every case runs in process (main() as `python -m pipeline` calls it; the imports are paid once per worker, where
# a process per case cost 4-6 s of start-up); these also run as whole processes, so that the entry point's exit code
# and stderr are checked as a user sees them: an error before any stage (data, config), one inside ingest, one after
# a stage has finished.
AS_PROCESS = ("missing file", "bad config key", "a constant label", "chunk counts by rank without the rank stage")


def _in_process(args: list[str], capfd) -> tuple[int, str]:
    from pipeline.cli import main

    capfd.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capfd.readouterr().err


@pytest.mark.parametrize(
    ("case", "whole_process"),
    [(c, False) for c in CASES] + [(c, True) for c in AS_PROCESS],
    ids=lambda v: v if isinstance(v, str) else ("process" if v else "in process"),
)
def test_bad_input_exits_2_with_one_line(tmp_path, case, whole_process, capfd):
    make_args, expected = CASES[case]
    out = tmp_path / "out"
    args = ["run", *make_args(tmp_path), "--out", str(out), "--tracking-uri", tracking_store(tmp_path / "m.db")]
    if whole_process:
        proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        code, stderr = proc.returncode, proc.stderr
    else:
        code, stderr = _in_process(args, capfd)
    # Stage summaries of stages that finished before the error ("ingest: 2,000 rows ...") may precede it.
    lines = [
        line for line in stderr.splitlines() if line.strip() and "INFO" not in line and not re.match(r"(ingest|rank|search|train): ", line)
    ]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], stderr
    assert not out.exists()


def test_an_output_path_that_is_a_file(tmp_path, capfd):
    taken = _write(tmp_path / "taken", "")
    for out in (taken, taken / "sub"):
        code, stderr = _in_process(["run", "--rows", "2000", "--out", str(out), "--no-tracking"], capfd)
        assert code == 2 and "cannot make the output directory" in stderr and "Traceback" not in stderr
    assert taken.read_text() == ""


def test_nested_output_directories_are_removed_on_error(tmp_path):
    bad = _write(tmp_path / "h.csv", "label,a\n")
    out = tmp_path / "a" / "b" / "c"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--data", str(bad), "--out", str(out), "--no-tracking"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and not (tmp_path / "a").exists()


def test_multi_character_separator_is_a_config_error(tmp_path):
    cfg = _write(tmp_path / "s.yaml", "data:\n  separator: '::'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--config", str(cfg), "--no-tracking", "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "data.separator" in proc.stderr and "Traceback" not in proc.stderr


def test_gpu_asked_for_where_there_is_none(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline", "run", "--rows", "2000", "--device", "cuda", "--out", str(out), "--no-tracking"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert "ingest:" not in proc.stderr and not out.exists()  # said before any stage ran
    # fp16 needs CUDA too: in process, the same way
    config = _write(tmp_path / "p.yaml", "train: {precision: fp16}\n")
    from pipeline.cli import main

    assert main(["run", "--rows", "2000", "--config", str(config), "--out", str(out), "--no-tracking"]) == 2
    assert not out.exists()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("{model: dcnv2, params: {structure: wide}}", "structure: Input should be 'parallel', 'stacked' or 'crossnet_only'"),
        ("{model: dcnv2, params: {cross_layers: 0}}", "cross_layers and experts must be at least 1"),  # the config's own check
        ("{model: dnn, params: {hidden: abc}}", "hidden: Input should be a valid list (got 'abc')"),
        ("{model: deepfm, params: {hiden: [8]}}", "unknown setting(s) hiden"),
        ("{model: fm, params: {hidden: [8]}}", "model takes no settings"),
    ],
)
def test_bad_model_settings_are_refused_before_any_stage_runs(tmp_path, capfd, params, expected):
    config = _write(tmp_path / "c.yaml", f"train: {params}\n")
    out = tmp_path / "out"
    code, stderr = _in_process(["run", "--rows", "2000", "--config", str(config), "--out", str(out), "--no-tracking"], capfd)
    assert code == 2 and expected in stderr and "Traceback" not in stderr, stderr
    assert "ingest:" not in stderr and not out.exists()


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write in (chmod for a user; chattr +i for root, whom modes do not stop)."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root, and chattr cannot make a read-only directory here")
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_output_directory_that_cannot_be_written(read_only_dir, capfd):
    code, stderr = _in_process(["ingest", "--rows", "2000", "--out", str(read_only_dir), "--no-tracking"], capfd)
    assert code == 2 and "cannot write in the output directory" in stderr and "Traceback" not in stderr, stderr
    assert list(read_only_dir.iterdir()) == []


def test_predict_refuses_an_output_it_cannot_or_should_not_write(tmp_path, read_only_dir, capfd):
    data = tmp_path / "rows.parquet"
    pl.DataFrame({"label": [0, 1] * 10, "a": range(20)}).write_parquet(data)
    _write(tmp_path / "afile", "")
    cases = {
        str(tmp_path / "p.txt"): "give the predictions file a .parquet or .csv name",
        str(data): "is the input file",
        str(tmp_path / "afile" / "p.parquet"): "cannot write the predictions there",
        str(read_only_dir / "p.parquet"): "cannot write the predictions there",
    }
    for target, expected in cases.items():
        # said before the model is looked for (a missing one here), so before any scoring
        code, stderr = _in_process(["predict", "--model", str(tmp_path / "no-run"), "--data", str(data), "--out", target], capfd)
        assert code == 2 and expected in stderr and "Traceback" not in stderr, (target, stderr)
    assert pl.read_parquet(data).height == 20 and list(read_only_dir.iterdir()) == []


def test_predict_device_that_is_none():
    from featuremap.errors import InputError
    from models.trainer import resolve_device

    with pytest.raises(InputError, match="device 'mps': use auto, cpu, cuda or cuda:N"):
        resolve_device("mps")
    assert resolve_device("cpu").type == "cpu"


def test_feature_map_that_does_not_match_the_data(tmp_path):
    out = tmp_path / "out"
    assert (
        subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--rows", "3000", "--stages", "ingest", "--out", str(out), "--no-tracking"], cwd=ROOT
        ).returncode
        == 0
    )
    fm_path = out / "ingest" / "feature_map.json"
    fm_path.write_text(fm_path.read_text().replace('"column": "inf_c2"', '"column": "gone"'))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "train", "--out", str(out), "--no-tracking"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "does not match the data" in proc.stderr and "Traceback" not in proc.stderr


def test_a_damaged_package_or_run_summary_is_no_traceback(tmp_path, capfd):
    import json
    import shutil

    from pipeline.cli import main

    config = _write(tmp_path / "c.yaml", "train: {max_epochs: 1, baselines: []}\n")
    out = tmp_path / "out"
    assert main(["run", "--rows", "3000", "--config", str(config), "--out", str(out), "--no-tracking"]) == 0
    rows = tmp_path / "rows.parquet"
    pl.read_parquet(out / "ingest" / "holdout" / "test.parquet").write_parquet(rows)
    damages = {
        "model.json": lambda p: (p / "model.json").write_text("{not json"),
        "model.pt": lambda p: (p / "model.pt").unlink(),
        "encoder.json": lambda p: (p / "encoder" / "encoder.json").write_text("{}"),
    }
    for name, damage in damages.items():
        package = tmp_path / f"package-{name}"
        shutil.copytree(out / "train" / "package", package)
        damage(package)
        code, stderr = _in_process(["predict", "--model", str(package), "--data", str(rows), "--out", str(tmp_path / "p.parquet")], capfd)
        assert code == 2 and "the model package is damaged or incomplete" in stderr and "Traceback" not in stderr, (name, stderr)
    # A run summary cut short is written again from the stages (reused here), with a warning.
    summary = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text('{"model": ')
    code, stderr = _in_process(["run", "--rows", "3000", "--config", str(config), "--out", str(out), "--no-tracking"], capfd)
    assert code == 0 and "metrics.json cannot be read" in stderr, stderr
    assert json.loads((out / "metrics.json").read_text()) == summary


def test_predict_from_a_tracking_store_that_is_not_there_creates_none(tmp_path, capfd):
    store = tmp_path / "none.db"
    args = ["predict", "--model", "runs:/abc", "--data", str(tmp_path / "x.csv"), "--out", str(tmp_path / "p.parquet")]
    code, stderr = _in_process([*args, "--tracking-uri", f"sqlite:///{store}"], capfd)
    assert code == 2 and "no tracking store at" in stderr and "Traceback" not in stderr, stderr
    assert not store.exists()
