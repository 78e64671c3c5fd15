"""Lint and formatting as `make lint` checks them, run by `make test` so that CI catches drift: ruff's rules and its
formatter over the whole tree (settings in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

RUFF = Path(sys.executable).parent / "ruff"


def _ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUFF), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ruff_rules_pass():
    done = _ruff("check", ".")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_tree_is_formatted():
    done = _ruff("format", "--check", ".")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_ruff_sees_a_violation(tmp_path):
    # With the project's settings, an unused import and a badly formatted line are reported: the checks are not vacuous.
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\nx = {  'a':1 }\n")
    assert "F401" in _ruff("check", "bad.py", cwd=tmp_path).stdout
    assert _ruff("format", "--check", "bad.py", cwd=tmp_path).returncode == 1
