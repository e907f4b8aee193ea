"""The library type-checks with mypy: everything but the reproduction scripts (reproduce/)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# reproduce/ holds research scripts whose Optional narrowing mypy does not follow yet
CHECK = ["deepgrad", "--exclude", "deepgrad/reproduce/"]


def test_library_passes_mypy(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (it comes with the test extra)")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path),
         "--no-error-summary", *CHECK],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"mypy found errors:\n{out.stdout}{out.stderr}"
