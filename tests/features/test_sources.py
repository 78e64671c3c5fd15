from pathlib import Path

import polars as pl
import pytest

from featuremap.errors import InputError
from features import delimited
from features.discovery import FORMATS, detect_format, split_files
from features.sources import CRITEO_CATEGORICAL, CRITEO_NUMERIC, READERS, SourceOptions, open_source
from tests.conftest import shared


def test_criteo_sample_reads_with_fixed_schema():
    path = shared("criteo_sample") / "train.txt"
    src = open_source([path], SourceOptions(format="criteo"))
    frame = src.frame.collect()
    assert frame.height == 7200 and frame.width == 40
    assert src.known_kinds["I1"] == "numeric" and src.known_kinds["C26"] == "categorical"
    assert frame["I1"].null_count() > 0 and frame["C1"].dtype == pl.String
    assert set(CRITEO_NUMERIC + CRITEO_CATEGORICAL) == set(src.known_kinds)
    assert abs(frame["label"].mean() - 0.215) < 0.01


def test_frappe_libsvm_positions_are_fields():
    src = open_source([shared("frappe") / "test.libsvm"], SourceOptions(format="libsvm"))
    frame = src.frame.collect()
    assert frame.width == 11 and frame.height == 28_860
    assert set(frame["label"].unique().to_list()) == {0.0, 1.0}


def test_libsvm_field_ranges_and_minus_one_labels(tmp_path):
    path = tmp_path / "d.libsvm"
    path.write_text("-1 1:1 7:1 8:1\n1 2:1 9:1\n")
    src = open_source([path], SourceOptions(format="libsvm", libsvm_field_ranges=((0, 5), (5, 10))))
    frame = src.frame.collect()
    assert frame["label"].to_list() == [0.0, 1.0]
    assert frame["f1"].to_list() == [[7, 8], [9]] and src.known_kinds["f1"] == "multi"


def test_ragged_libsvm_without_ranges_names_the_line(tmp_path):
    path = tmp_path / "d.libsvm"
    path.write_text("0 1:1 2:1\n1 3:1\n")
    with pytest.raises(InputError, match="line 2 has 1 indices"):
        open_source([path], SourceOptions(format="libsvm"))


def test_csv_ragged_row_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('y,a,b\n1,"x, with comma",2\n0,3\n')
    with pytest.raises(InputError, match=r"line 3 has 2 columns, expected 3"):
        open_source([path], SourceOptions(format="csv"))


def test_criteo_row_with_too_many_columns(tmp_path):
    good = "\t".join(["1"] + ["5"] * 13 + ["ab"] * 26)
    path = tmp_path / "train.txt"
    path.write_text(good + "\n" + good + "\tEXTRA\n")
    with pytest.raises(InputError, match="line 2 has 41 columns, expected 40"):
        open_source([path], SourceOptions(format="criteo"))


@pytest.mark.parametrize(
    ("content", "line", "found"),
    [
        ("y,a,b\n1,2,3\n0,3\n1,4,5\n", 3, 2),  # the separators do not add up
        ("y,a,b\n1,2,3\n0,3,4,9\n1,4\n", 3, 4),  # they add up: one line too long, a later one too short
        ("y,a,b\n1,2,3\n0,3\n1,4,5,9\n", 3, 2),  # the short line comes first
    ],
)
def test_unquoted_csv_uneven_lines_name_the_first(tmp_path, content, line, found):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=rf"line {line} has {found} columns, expected 3"):
        open_source([path], SourceOptions(format="csv"))


def test_even_csv_without_trailing_newline_reads_every_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("y,a,b\n1,2,3\r\n0,3,4\n1,4,5")
    assert open_source([path], SourceOptions(format="csv")).frame.collect()["b"].to_list() == [3, 4, 5]


@pytest.mark.parametrize("whole", [True, False])
def test_a_plain_file_read_whole_is_the_file_read_in_chunks(tmp_path, monkeypatch, whole):
    # Empty last fields make the whole read count the lines; a short line among them is still named, and a value that
    # does not parse as the inferred type sends the whole read back to the chunks, which name the lines.
    rows = "".join(f"{i % 2},{i},{'' if i % 3 else 'x'}\n" for i in range(30_000))
    path = tmp_path / "d.csv"
    path.write_text("y,a,b\n" + rows)
    if not whole:
        monkeypatch.setattr(delimited, "WHOLE_FILE_RATIO", 1 << 40)
    got = open_source([path], SourceOptions(format="csv")).frame.collect()
    assert got.equals(pl.read_csv(path)) and got["b"].null_count() == 20_000
    path.write_text("y,a,b\n" + rows + "1,5\n" + rows)
    with pytest.raises(InputError, match=r"line 30002 has 2 columns, expected 3"):
        open_source([path], SourceOptions(format="csv"))
    path.write_text("y,a,b\n" + rows + "1,five,x\n")
    with pytest.raises(InputError, match=r"lines \d+-30002 do not parse \(could not parse `five`"):
        open_source([path], SourceOptions(format="csv"))


@pytest.mark.parametrize("whole", [True, False])
def test_blank_lines_are_no_rows(tmp_path, monkeypatch, whole):
    # A file that ends in blank lines (or has one in the middle, CRLF or not) reads as if they were not there; a short
    # line is still named.
    if not whole:
        monkeypatch.setattr(delimited, "WHOLE_FILE_RATIO", 1 << 40)
    path = tmp_path / "d.csv"
    path.write_text("y,a,b\n1,x,2\n\n0,y,3\r\n\r\n1,z,\n\n\n")
    frame = open_source([path], SourceOptions(format="csv")).frame.collect()
    assert frame["y"].to_list() == [1, 0, 1] and frame["b"].to_list() == [2, 3, None]
    path.write_text("y,a,b\n1,x,2\n\n0,3\n")
    with pytest.raises(InputError, match=r"line 4 has 2 columns, expected 3"):
        open_source([path], SourceOptions(format="csv"))
    svm = tmp_path / "d.libsvm"
    svm.write_text("1 1:1 5:1\n\n0 2:1 6:1\n\n\n")
    assert open_source([svm], SourceOptions(format="libsvm")).frame.collect()["label"].to_list() == [1.0, 0.0]


@pytest.mark.parametrize(("content", "message"), [("", "file is empty"), ("y,a\n", "header but no data rows")])
def test_empty_and_header_only(tmp_path, content, message):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        open_source([path], SourceOptions(format="csv"))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        open_source([tmp_path / "nope.csv"], SourceOptions(format="csv"))
    with pytest.raises(InputError, match="unknown format"):
        open_source([tmp_path], SourceOptions(format="xlsx"))


def test_parquet_directory_of_shards(tmp_path):
    for i in range(3):
        pl.DataFrame({"label": [0, 1], "a": [i, i]}).write_parquet(tmp_path / f"part-{i}.parquet")
    assert open_source([tmp_path], SourceOptions(format="parquet")).frame.collect().height == 6


def test_detect_format_and_split_files(tmp_path):
    assert detect_format(Path("x.parquet")) == "parquet" and detect_format(Path("x.tsv")) == "csv"
    assert detect_format(shared("criteo_sample") / "train.txt") == "criteo"
    assert detect_format(shared("frappe") / "train.libsvm") == "libsvm"
    found = split_files(shared("criteo_sample"))
    assert found is not None and found["valid"][0].name == "dev.txt"
    assert split_files(tmp_path) is None
    unknown = tmp_path / "data.bin"
    unknown.write_text("x")
    with pytest.raises(InputError, match=r"set data\.format"):
        detect_format(unknown)


def test_discovery_knows_every_reader():
    assert set(FORMATS) == set(READERS)


def test_libsvm_labels_of_three_classes_are_refused(tmp_path):
    path = tmp_path / "d.libsvm"
    path.write_text("-1 1:1\n0 2:1\n1 3:1\n")
    with pytest.raises(InputError, match="libsvm labels hold both -1 and 0"):
        open_source([path], SourceOptions(format="libsvm"))
