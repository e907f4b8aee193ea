"""Benchmark workloads, one module each.

A timed workload module defines:

    NAME: str                   short name shown in the table (e.g. "xor_tiny")
    DESCRIPTION: str            one line: what one step does, with shapes
    make_inputs(rng, quick)     -> dict of NumPy arrays shared by both libraries; a key starting
                                   with "_" is metadata, e.g. "_data": where the data came from
                                   (shown in the table's notes and saved in the JSON)
    build(lib, inputs)          -> (step, leaves)
        lib is the `deepgrad` or the `torch` module: deepgrad copies PyTorch's API, so one
        function serves both and both run the same computation. `step()` runs one timed
        iteration; `leaves` are tensors whose `.grad` after one step is compared across the
        libraries before anything is timed.

Optional attributes:

    UNIT                        "us", "ms" or "s": how the table shows this row (default: picked
                                from the time)
    TARGET                      the issue's target for the ratio deepgrad / PyTorch (<= TARGET)
    TRAINING                    True for a training-step workload: it counts in the geometric
                                mean of the training ratios
    CHECK                       "grad" (default) or "values": compare the leaves' values instead
                                of their gradients (inference, where nothing has a gradient)
    build_check(lib, inputs)    -> (step, leaves) used for the check instead of `build` (when one
                                timed step cannot be compared, e.g. an epoch over shuffled data)
    flops(inputs)               FLOPs of one timed step, for the roofline columns
    REPEATS, TARGET_SECONDS     full run: repetitions, and seconds each repetition lasts at least
    QUICK_REPEATS, QUICK_TARGET_SECONDS   the same for --quick (defaults 3 and 0.02)

A module with PRODUCES = "rows" (startup) or "roofline" instead defines `measure(ctx)`,
returning its table rows or the machine's GEMM peak; `ctx` has `quick`, `repeats`, `threads`
and `libs` (names of the libraries present).

To add a workload, write its module and list it below. Modules starting with "_" are shared
helpers, not workloads.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The suite first (in its order), then the single-op and single-layer rows kept from
# the first version of the suite, which have no targets.
NAMES = [
    "xor_tiny",
    "mlp_mnist",
    "mlp_mnist_infer",
    "lenet5",
    "lenet5_epoch",
    "lenet_modern_64",
    "lenet_modern_256",
    "char_lstm",
    "char_gru",
    "char_rnn",
    "conv_layer",
    "startup",
    "roofline",
    "op_overhead",
    "tanh_chain",
    "lenet_conv",
    "max_pool",
    "avg_pool",
    "batch_norm",
    "lstm_layer",
    "mlp_gemms",
    "lstm_gemms",
]


def load(names: list[str] | None = None) -> list[ModuleType]:
    unknown = sorted(set(names or []) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; expected some of {NAMES}")
    return [importlib.import_module(f"{__name__}.{name}") for name in (names or NAMES)]
