"""The layering of ../shared/STYLE.md, checked by import-linter's contracts in .importlinter."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT = Path(sys.executable).parent / "lint-imports"


def _lint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    done = _lint()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "6 kept, 0 broken" in done.stdout


def test_the_linter_sees_real_imports(tmp_path):
    # A contract the code breaks (the pipeline wires features in) must be reported broken: the check is not vacuous.
    config = tmp_path / "broken.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    features\n    pipeline\n\n"
        "[importlinter:contract:wrong]\nname = pipeline never imports features\ntype = forbidden\n"
        "source_modules =\n    pipeline\nforbidden_modules =\n    features\n"
    )
    done = _lint(str(config))
    assert done.returncode != 0 and "BROKEN" in done.stdout
