"""Test configuration: every test starts from the same random state."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg

try:
    import torch

    # one thread: the oracle's results don't depend on it, and on a loaded two-core machine
    # torch's thread pool can turn a microsecond op into milliseconds
    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    torch = None


@pytest.fixture(autouse=True)
def _fixed_seed():
    np.random.seed(0)
    if hasattr(dg, "manual_seed"):
        dg.manual_seed(0)
    if torch is not None:
        torch.manual_seed(0)
    yield
