"""Benchmark workloads, one module each.

A workload module defines:

    NAME: str                   short name shown in the table (e.g. "op_overhead")
    DESCRIPTION: str            one line: what one step does, with shapes
    make_inputs(rng, quick)     -> dict of NumPy arrays shared by both libraries
    build(lib, inputs)          -> (step, leaves)
        lib is the `deepgrad` or the `torch` module: deepgrad copies PyTorch's API, so one
        function serves both and both run the same computation. `step()` runs one timed
        iteration; `leaves` are tensors whose `.grad` after one step is compared across the
        libraries before anything is timed.

Optional: REPEATS (int) and TARGET_SECONDS (float) to override the runner's defaults for a
workload whose single step is slow. To add a workload, write its module and list it below.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = [
    "op_overhead",
    "tanh_chain",
    "lenet_conv",
    "conv_layer",
    "max_pool",
    "avg_pool",
    "batch_norm",
    "lstm_layer",
]


def load(names: list[str] | None = None) -> list[ModuleType]:
    unknown = sorted(set(names or []) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; expected some of {NAMES}")
    return [importlib.import_module(f"{__name__}.{name}") for name in (names or NAMES)]
