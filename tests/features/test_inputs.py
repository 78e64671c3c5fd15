"""Inputs as users have them: compressed text, string labels, header quirks, other separators."""

import bz2
import gzip
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from featuremap.errors import InputError
from features import delimited, textio
from features.discovery import data_files, detect_format, split_files
from features.encode import Encoder, EncoderParams
from features.ingest import IngestParams, ingest, load_raw, prepare
from features.schema import SchemaOptions, infer_schema
from features.sources import SourceOptions, open_source
from tests.conftest import shared


def _compress(src: Path, dst: Path, codec: str) -> Path:
    data = src.read_bytes()
    if codec == "gzip":
        dst.write_bytes(gzip.compress(data))
    elif codec == "bz2":
        dst.write_bytes(bz2.compress(data))
    else:
        with pa.output_stream(str(dst), compression=codec) as out:
            out.write(data)
    return dst


def _csv(tmp_path: Path, rows: int = 15_000) -> Path:
    lines = ["y,a,b,c"]
    for i in range(rows):
        note = f'"line {i}\nwith a newline, and a comma"' if i % 97 == 0 else f"t{i % 13}"
        lines.append(f"{i % 2},{i % 7},{note},{i * 0.5}")
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 KiB, so that a small file crosses many chunk boundaries (and quoted newlines land on some)."""
    monkeypatch.setattr(textio, "CHUNK_BYTES", 4096)


@pytest.mark.parametrize(("codec", "suffix"), [("gzip", ".gz"), ("bz2", ".bz2"), ("zstd", ".zst")])
@pytest.mark.parametrize("memory", ["held", "spilled"])
def test_compressed_csv_reads_as_the_plain_file(tmp_path, small_chunks, monkeypatch, codec, suffix, memory):
    plain = _csv(tmp_path)
    packed = _compress(plain, tmp_path / f"d.csv{suffix}", codec)
    want = open_source([plain], SourceOptions(format="csv")).frame.collect()
    if memory == "spilled":
        monkeypatch.setattr(delimited, "IN_MEMORY_BYTES", 0)
    got = open_source([packed], SourceOptions(format="csv"), tmp_path / "scratch")
    shards = list((tmp_path / "scratch").rglob("*.parquet"))
    assert len(shards) > 10 if memory == "spilled" else not shards  # parsed once, in many chunks: kept, or staged
    # The first chunk holds the 10,000 rows the schema is inferred from; the rest cross many 4 KiB boundaries.
    assert got.frame.collect().equals(want) and want.height == 15_000 and want["b"].str.contains("\n").sum() == 155


def test_parsed_text_past_the_memory_budget_goes_to_shards_from_the_file_that_crosses_it(tmp_path, small_chunks, monkeypatch):
    first, second = _csv(tmp_path, 12_000), tmp_path / "e.csv"
    first.rename(tmp_path / "first.csv")
    first = tmp_path / "first.csv"
    second.write_text("y,a,b,c\n" + "".join(f"{i % 2},{i % 5},t{i % 3},{i}.5\n" for i in range(20_000)))
    chunks = list(delimited.delimited_chunks(first, None, ",", 4, True, {"separator": ",", "infer_schema_length": 10_000}))
    # room for the first file and a few chunks of the second: the second crosses the budget and is staged whole
    monkeypatch.setattr(delimited, "IN_MEMORY_BYTES", sum(c.estimated_size() for c in chunks) + 5000)
    got = open_source([first, second], SourceOptions(format="csv"), tmp_path / "scratch").frame.collect()
    staged = list((tmp_path / "scratch").rglob("*.parquet"))
    assert staged and {p.parent.name.split("-")[0] for p in staged} == {"e"}  # the first file stayed in memory
    want = pl.concat([pl.read_csv(first), pl.read_csv(second)], how="vertical_relaxed")
    assert got.equals(want) and got.height == 32_000


def test_magic_bytes_win_over_the_name_and_a_false_suffix_is_an_error(tmp_path):
    plain = _csv(tmp_path, 50)
    hidden = _compress(plain, tmp_path / "hidden.csv", "gzip")  # gzip data without .gz
    assert open_source([hidden], SourceOptions(format="csv")).frame.collect().equals(pl.read_csv(plain))
    fake = tmp_path / "fake.csv.gz"
    shutil.copy(plain, fake)
    with pytest.raises(InputError, match=r"fake.csv.gz: named .gz but is not gzip data"):
        open_source([fake], SourceOptions(format="csv"))
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gzip.compress(plain.read_bytes())[:200])
    with pytest.raises(InputError, match=r"cut\.csv\.gz: not valid gzip data"):
        open_source([truncated], SourceOptions(format="csv")).frame.collect()


def test_compressed_ragged_line_is_named_across_chunks(tmp_path, small_chunks):
    plain = tmp_path / "r.csv"
    plain.write_text("y,a,b\n" + "1,2,3\n" * 20_000 + "0,1\n")
    packed = _compress(plain, tmp_path / "r.csv.gz", "gzip")
    with pytest.raises(InputError, match=r"r.csv.gz: line 20002 has 2 columns, expected 3"):
        open_source([packed], SourceOptions(format="csv"))


def test_directory_of_criteo_day_files_is_one_input_in_day_order(tmp_path):
    rows = (shared("criteo_sample") / "train.txt").read_text().splitlines(keepends=True)
    days = tmp_path / "criteo"
    days.mkdir()
    for day, start in ((0, 0), (2, 100), (10, 200)):  # natural order: day_2 before day_10
        (days / f"day_{day}.gz").write_bytes(gzip.compress("".join(rows[start : start + 100]).encode()))
    assert detect_format(days) == "criteo" and [p.name for p in data_files(days)] == ["day_0.gz", "day_2.gz", "day_10.gz"]
    frame = open_source([days], SourceOptions(format="criteo")).frame.collect()
    plain = tmp_path / "plain.txt"
    plain.write_text("".join(rows[:300]))
    assert frame.equals(open_source([plain], SourceOptions(format="criteo")).frame.collect())


def test_compressed_libsvm_and_split_directory(tmp_path):
    src = shared("frappe") / "test.libsvm"
    folder = tmp_path / "frappe"
    folder.mkdir()
    head = "".join(src.read_text().splitlines(keepends=True)[:2000])
    for name in ("train", "valid", "test"):
        (folder / f"{name}.libsvm.gz").write_bytes(gzip.compress(head.encode()))
    found = split_files(folder)
    assert found is not None and found["valid"][0].name == "valid.libsvm.gz" and detect_format(found["train"][0]) == "libsvm"
    plain = tmp_path / "p.libsvm"
    plain.write_text(head)
    got = open_source(found["train"], SourceOptions(format="libsvm")).frame.collect()
    assert got.equals(open_source([plain], SourceOptions(format="libsvm")).frame.collect()) and got.height == 2000


def test_bare_gz_with_a_header_is_csv(tmp_path):
    packed = tmp_path / "train.gz"  # Avazu's layout
    packed.write_bytes(gzip.compress(b"id,click,site\n1,0,a\n2,1,b\n"))
    assert detect_format(packed) == "csv"


def _ingest_csv(tmp_path: Path, text: str, **schema) -> tuple:
    path = tmp_path / "l.csv"
    path.write_text(text)
    params = IngestParams(source=SourceOptions(format="csv"), schema=SchemaOptions(**schema))
    result = ingest(load_raw(path, params, 0, 0), params)
    return result, result.splits["train"].collect()


@pytest.mark.parametrize(
    "values",
    [
        ("yes", "no"),
        ("True", "False"),  # polars reads these as booleans
        ("Y", "n"),
        ("click", "no_click"),
        ("clicked", "not clicked"),
        ("1", "0"),
    ],
)
def test_common_text_label_pairs_map_without_settings(tmp_path, values):
    rows = "".join(f"{values[0] if i % 3 == 0 else values[1]},{i % 5}\n" for i in range(300))
    result, train = _ingest_csv(tmp_path, "y,a\n" + rows)
    assert train["y"].dtype == pl.Int8 and sum(s.collect()["y"].sum() for s in result.splits.values()) == 100
    assert values[0] == "1" or any(f"{values[0].lower()!r} -> 1" in note.lower() for note in result.notes)


def test_explicit_positive_and_text_that_is_no_known_pair(tmp_path):
    text = "y,a\n" + "".join(f"{('sure', 'maybe', 'never')[i % 3]},{i % 5}\n" for i in range(300))
    with pytest.raises(InputError, match=r"holds text \('maybe', 'never', 'sure'\) that is not a known binary pair; set data.positive"):
        _ingest_csv(tmp_path, text)
    result, _train = _ingest_csv(tmp_path, text, positive=("sure", "maybe"))
    assert result.schema.positive == ("sure", "maybe") and result.schema.negative is None
    assert sum(s.collect()["y"].sum() for s in result.splits.values()) == 200


def test_a_value_outside_the_detected_pair_in_another_split_is_an_error(tmp_path):
    schema = infer_schema(
        open_source([_write(tmp_path / "t.csv", "y,a\nyes,1\nno,2\n")], SourceOptions(format="csv")), SchemaOptions(), "t"
    )
    encoder = Encoder(schema, EncoderParams()).fit(pl.LazyFrame({"y": ["yes", "no"] * 10, "a": [1, 2] * 10}))
    with pytest.raises(InputError, match=r"values other than 'yes', 'no'"):
        encoder.check_labels(pl.LazyFrame({"y": ["yes", "maybe"], "a": [1, 2]}), "test split")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("y,a,b,a", r"header repeats column name\(s\) 'a' at positions 2, 4"),
        ("y,a,,b", r"empty column name at position\(s\) 3"),
        ("y,a,__u,b", r"'__u' clash with the pipeline's derived columns"),
        ("y,a,b__num,b", r"'b__num' clash with the pipeline's derived columns"),
    ],
)
def test_header_quirks_are_errors(tmp_path, header, message):
    with pytest.raises(InputError, match=message):
        _ingest_csv(tmp_path, header + "\n" + "1,2,3,4\n0,1,2,3\n" * 5)


def test_separator_is_sniffed_from_a_one_column_header_and_said(tmp_path):
    result, _train = _ingest_csv(tmp_path, "click;a;b\n" + "1;x;2\n0;y;3\n" * 10, label="click")
    assert list(result.schema.kinds) == ["a", "b"]
    assert any("read as ';'-separated" in note for note in result.notes)
    path = _write(tmp_path / "p.csv", "click|a|b\n1|x|2\n")
    with pytest.raises(InputError, match=r"looks '\|'-separated: set data.separator to '\|'"):
        open_source([path], SourceOptions(format="csv", separator=","))


def test_a_directory_reads_only_its_data_files_of_one_format(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "README.txt").write_text("Click logs, one file a day.\n")
    for day in (1, 2):
        (folder / f"clicks_{day}.csv").write_text("y,a\n" + f"{day % 2},x\n1,y\n")
    assert detect_format(folder) == "csv"
    assert open_source([folder], SourceOptions(format="csv")).frame.collect().height == 4
    (folder / "more.parquet").write_bytes(b"")
    with pytest.raises(InputError, match=r"several formats \(csv, parquet\)"):
        detect_format(folder)


def test_a_split_given_twice_is_an_error(tmp_path):
    for name in ("train.csv", "test.csv"):
        (tmp_path / name).write_text("y,a\n1,2\n")
    (tmp_path / "train.csv.gz").write_bytes(gzip.compress(b"y,a\n1,2\n"))
    with pytest.raises(InputError, match=r"several train files \(train.csv, train.csv.gz\)"):
        split_files(tmp_path)


def test_a_header_only_part_keeps_the_other_parts_types(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "part-0.csv").write_text("y,a,b\n")
    (folder / "part-1.csv").write_text("y,a,b\n1,2,0.5\n0,3,1.5\n")
    frame = open_source([folder], SourceOptions(format="csv")).frame.collect()
    assert frame.schema["a"] == pl.Int64 and frame.schema["b"] == pl.Float64 and frame.height == 2


def test_an_unbalanced_quote_in_a_compressed_file_is_an_error_not_a_growing_buffer(tmp_path, small_chunks):
    rows = "".join(f"{i % 2},{i}\n" for i in range(20_000))
    packed = tmp_path / "q.csv.gz"
    packed.write_bytes(gzip.compress(('y,a\n1,"5 inch\n' + rows).encode()))
    with pytest.raises(InputError, match=r"q\.csv\.gz: from line 2 on, .* no record end outside double quotes"):
        open_source([packed], SourceOptions(format="csv"))
    # after many chunks already parsed: the line number counts the text they held
    packed.write_bytes(gzip.compress(("y,a\n" + rows + '1,"5 inch\n' + rows).encode()))
    with pytest.raises(InputError, match=r"q\.csv\.gz: from line 20002 on, .* no record end outside double quotes"):
        open_source([packed], SourceOptions(format="csv"))


def test_text_labels_match_in_any_case_and_numeric_labels_by_value(tmp_path):
    schema = infer_schema(
        open_source([_write(tmp_path / "t.csv", "y,a\nyes,1\nno,2\n")], SourceOptions(format="csv")), SchemaOptions(), "t"
    )
    frame = pl.LazyFrame({"y": ["Yes", " NO", "yes"], "a": [1, 2, 3]})
    assert frame.select(schema.label_expr()).collect()["y"].to_list() == [1, 0, 1]
    encoder = Encoder(schema, EncoderParams()).fit(pl.LazyFrame({"y": ["yes", "no"] * 10, "a": [1, 2] * 10}))
    encoder.check_labels(frame, "test split")  # other spellings of the same pair are no error
    floats = _write(tmp_path / "f.csv", "y,a\n" + "1.0,1\n0.0,2\n" * 10)
    schema = infer_schema(open_source([floats], SourceOptions(format="csv")), SchemaOptions(positive=("1",)), "f")
    assert pl.read_csv(floats).lazy().select(schema.label_expr()).collect()["y"].sum() == 10
    with pytest.raises(InputError, match=r"is numeric; data\.positive"):
        infer_schema(open_source([floats], SourceOptions(format="csv")), SchemaOptions(positive=("yes",)), "f")


def test_the_pandas_index_column_is_ignored_and_dropped_columns_are_not_checked(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"label": [0, 1] * 5, "a": list(range(10)), "__index_level_0__": list(range(10)), "__u": [1] * 10}).write_parquet(path)
    schema = infer_schema(open_source([path], SourceOptions(format="parquet")), SchemaOptions(drop=("__u",)), "p")
    assert list(schema.kinds) == ["a"]


def test_compressed_csv_infers_types_from_the_same_first_rows_as_the_plain_reader(tmp_path, small_chunks):
    # Column b is integral for 5,000 rows, then fractional: the plain reader sees both in its first 10,000 rows.
    plain = tmp_path / "w.csv"
    plain.write_text("y,b\n" + "".join(f"{i % 2},{i if i < 5000 else i + 0.5}\n" for i in range(12_000)))
    packed = _compress(plain, tmp_path / "w.csv.gz", "gzip")
    want = open_source([plain], SourceOptions(format="csv")).frame.collect()
    got = open_source([packed], SourceOptions(format="csv")).frame.collect()
    assert want.schema["b"] == pl.Float64 and got.equals(want)


def test_the_first_chunk_counts_records_not_lines_when_fields_hold_newlines(tmp_path, small_chunks):
    # Three physical lines a row: 10,001 lines would be 3,334 rows, and b turns fractional at row 9,000.
    rows = "".join(f'{i % 2},{i if i < 9000 else i + 0.5},"one\ntwo\nthree"\n' for i in range(12_000))
    plain = tmp_path / "m.csv"
    plain.write_text("y,b,note\n" + rows)
    packed = _compress(plain, tmp_path / "m.csv.gz", "gzip")
    want = open_source([plain], SourceOptions(format="csv")).frame.collect()
    assert want.schema["b"] == pl.Float64
    assert open_source([packed], SourceOptions(format="csv")).frame.collect().equals(want)


def test_text_that_is_not_utf8_is_a_one_line_error(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes("y,a\n1,2\n0,3\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"u16\.csv: cannot be read as csv \(invalid utf-8 sequence\); is it UTF-8 text"):
        open_source([path], SourceOptions(format="csv")).frame.collect()


def test_a_column_with_text_after_its_first_rows_reads_as_text_when_listed(tmp_path):
    # Typed from its first rows (digits), the column meets text later: an error that says what to do, and the listed
    # column (data.text_columns) reads as text.
    rows = delimited.INFER_ROWS + 500
    path = tmp_path / "late.csv"
    path.write_text("label,cnt\n" + "".join(f"{i % 2},{i if i < rows - 3 else 'abc'}\n" for i in range(rows)))
    with pytest.raises(InputError, match=r"do not parse .*list the column in data\.text_columns"):
        open_source([path], SourceOptions(format="csv")).frame.collect()
    frame = open_source([path], SourceOptions(format="csv", text_columns=("cnt",))).frame.collect()
    assert frame["cnt"].dtype == pl.String and frame["cnt"][-1] == "abc" and frame.height == rows


def test_na_cells_are_missing_when_listed_and_a_note_says_so_when_not(tmp_path):
    # One 'NA' in a float column made it text (and ids), silently; the run now says so, and data.null_values fixes it.
    path = tmp_path / "na.csv"
    path.write_text("label,x\n" + "".join(f"{i % 2},{'NA' if i == 7 else i / 3}\n" for i in range(400)))
    for nulls, kind in (((), "categorical"), (("NA",), "numeric")):
        params = IngestParams(source=SourceOptions(format="csv", null_values=nulls))
        plan, _ = prepare(load_raw(path, params, 0, 0, tmp_path / kind), params, tmp_path / kind)
        noted = any("x read as ids (text) though nearly every value is a number" in n for n in plan.notes)
        assert plan.schema.kinds == {"x": kind} and noted == (not nulls)


def test_valid_inputs_the_file_checks_must_let_through(tmp_path):
    # A byte-order mark on one CSV file (Excel's), and a parquet column all null in one file (pandas writes its type as
    # null): polars reads both, so the header and schema comparisons between files must too.
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "a.csv").write_bytes(b"\xef\xbb\xbflabel,u\n1,a\n0,b\n")
    (tmp_path / "csv" / "b.csv").write_text("label,u\n0,a\n1,b\n")
    files = sorted((tmp_path / "csv").iterdir())
    assert open_source(files, SourceOptions(format="csv", text_columns=("label",))).frame.collect().height == 4
    (tmp_path / "pq").mkdir()
    pl.DataFrame({"label": [0, 1], "c": ["a", "b"]}).write_parquet(tmp_path / "pq" / "a.parquet")
    pl.DataFrame({"label": [1, 0], "c": [None, None]}, schema_overrides={"c": pl.Null}).write_parquet(tmp_path / "pq" / "b.parquet")
    frame = open_source(sorted((tmp_path / "pq").iterdir()), SourceOptions(format="parquet")).frame.collect()
    assert frame["c"].to_list() == ["a", "b", None, None]
