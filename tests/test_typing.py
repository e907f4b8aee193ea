"""The library type-checks with mypy: the whole package, reproduction scripts included."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ["deepgrad"]


def test_library_passes_mypy(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (it comes with the test extra)")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path),
         "--no-error-summary", *CHECK],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"mypy found errors:\n{out.stdout}{out.stderr}"
