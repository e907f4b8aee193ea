"""Character-level language model step with a single-layer RNN (see _char.py)."""

from __future__ import annotations

from . import _char
from ._char import make_inputs  # noqa: F401  (the workload protocol's make_inputs)

NAME = "char_rnn"
DESCRIPTION = _char.describe("RNN")
UNIT = "ms"
TARGET = 1.0
TRAINING = True


def build(lib, inputs):
    return _char.build(lib, inputs, "RNN")


def flops(inputs) -> float:
    return _char.flops("RNN")
