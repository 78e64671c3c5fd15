"""Which files an input path stands for, and in which format: suffixes, first-line sniffing, split files.

A `--data` directory is either split files (`train.*`, `valid.*`/`val.*`/`dev.*`, `test.*`,
`split_files`) or one input made of its data files of one format (`data_files`). A file's
format comes from its suffix under any codec suffix, or from the first line of a `.txt` or
bare compressed file (`features.textio` reads it, decompressing when needed).
"""

from __future__ import annotations

from pathlib import Path

from featuremap.errors import InputError
from features.textio import CODEC_SUFFIXES, data_stem, data_suffix, first_line, natural_key

FORMATS = ("criteo", "csv", "libsvm", "parquet")
SPLIT_NAMES = ("train", "valid", "test")
# File stems accepted for each split in a --data directory.
SPLIT_STEMS = {"train": ("train",), "valid": ("valid", "val", "validation", "dev"), "test": ("test",)}
# Separators a header is sniffed for when the default one leaves it a single column.
SNIFF_SEPARATORS = (";", "|", "\t", ",")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".libsvm": "libsvm",
    ".svm": "libsvm",
    ".libfm": "libsvm",
}


def _sniff(line: str) -> str | None:
    if line.count("\t") == 39:
        return "criteo"
    if ":" in line.split(" ", 2)[-1]:
        return "libsvm"
    return None


def _format_of(p: Path) -> str | None:
    """A file's format: from its suffix (under any codec's), else, for a `.txt` or a bare compressed file
    (`day_0.gz`, Avazu's `train.gz`), from its first line; None when neither tells (a README, a note)."""
    if not p.is_file() or p.name.startswith("."):
        return None
    suffix = data_suffix(p)
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    compressed = suffix == "" and p.suffix.lower() in CODEC_SUFFIXES
    if suffix != ".txt" and not compressed:
        return None
    line = first_line(p)
    sniffed = _sniff(line)
    if sniffed is None and compressed and any(sep in line for sep in SNIFF_SEPARATORS):
        return "csv"  # a bare compressed file with a header row
    return sniffed


def _formats(directory: Path) -> dict[Path, str]:
    """Each file of `directory` whose format can be told, with that format (one look at each file)."""
    found = {p: _format_of(p) for p in directory.iterdir()}
    return {p: f for p, f in found.items() if f is not None}


def data_files(path: Path, fmt: str | None = None) -> list[Path]:
    """The files of format `fmt` (any known format when None) a directory input stands for, in natural order
    (`day_2` before `day_10`); other files (a README, another format) are left out. A file stands for itself."""
    if not path.is_dir():
        return [path]
    return sorted((p for p, f in _formats(path).items() if fmt is None or f == fmt), key=natural_key)


def detect_format(path: Path) -> str:
    """Guess the format from the extension (under any .gz/.bz2/.zst), or from the first line of a .txt or bare compressed file.

    For a directory: the format of its data files, which must all be of one format."""
    probe = path
    if path.is_dir():
        kinds = sorted(set(_formats(path).values()))
        if not kinds:
            raise InputError(f"{path}: no data files found in this directory; set data.format and give a file")
        if len(kinds) > 1:
            raise InputError(f"{path}: holds data files of several formats ({', '.join(kinds)}); set data.format to choose one")
        return kinds[0]
    found = _format_of(probe) if probe.is_file() else EXTENSIONS.get(data_suffix(probe))
    if found is None:
        raise InputError(f"{probe}: cannot tell the format from its name; set data.format to one of {', '.join(FORMATS)}")
    return found


def split_files(path: Path) -> dict[str, list[Path]] | None:
    """For a directory holding train.*, valid.* (or val/dev) and test.* files, those files by split; else None."""
    if not path.is_dir():
        return None
    found: dict[str, list[Path]] = {}
    for name in SPLIT_NAMES:
        matches = sorted(p for p in path.iterdir() if p.is_file() and data_stem(p) in SPLIT_STEMS[name] and p.suffix != ".zip")
        if len(matches) > 1:  # e.g. train.csv beside its gzip -k copy train.csv.gz: reading both would double the rows
            raise InputError(f"{path}: several {name} files ({', '.join(p.name for p in matches)}); keep one per split")
        if matches:
            found[name] = matches
    if "train" not in found:
        if found:  # read as one input, the holdout files would be split again, their rows into train
            named = ", ".join(p.name for files in found.values() for p in files)
            raise InputError(f"{path}: split files ({named}) without a train file; add train.* or rename them")
        return None
    return found
