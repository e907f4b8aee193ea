"""Character-level language model step with a single-layer LSTM (see _char.py)."""

from __future__ import annotations

from . import _char
from ._char import make_inputs  # noqa: F401  (the workload protocol's make_inputs)

NAME = "char_lstm"
DESCRIPTION = _char.describe("LSTM")
UNIT = "ms"
TARGET = 1.0
TRAINING = True


def build(lib, inputs):
    return _char.build(lib, inputs, "LSTM")


def flops(inputs) -> float:
    return _char.flops("LSTM")
