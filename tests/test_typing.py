"""The core (tensor, autograd, ops, nn, optim and what they import) type-checks with mypy."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ["deepgrad/__init__.py", "deepgrad/tensor.py", "deepgrad/backend.py",
        "deepgrad/dtypes.py", "deepgrad/creation.py", "deepgrad/random.py",
        "deepgrad/autograd", "deepgrad/ops", "deepgrad/nn", "deepgrad/optim"]


def test_core_passes_mypy(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (it comes with the test extra)")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path),
         "--no-error-summary", *CORE],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"mypy found errors in the core:\n{out.stdout}{out.stderr}"
