"""A one-layer MLP step on a tiny batch: matmul, bias broadcast, tanh, reduction, backward.

Still dominated by per-op overhead, but with the ops of a real layer and a broadcasting add
whose gradient must be reduced back to the bias shape.
"""

from __future__ import annotations

import numpy as np

NAME = "tanh_chain"
DESCRIPTION = "tanh(x @ W + b).sum().backward(); x (4, 2), W (2, 8), b (8,)"


def make_inputs(rng: np.random.Generator, quick: bool) -> dict[str, np.ndarray]:
    return {
        "x": rng.standard_normal((4, 2)).astype(np.float32),
        "W": rng.standard_normal((2, 8)).astype(np.float32),
        "b": rng.standard_normal((8,)).astype(np.float32),
    }


def build(lib, inputs):
    x = lib.tensor(inputs["x"])
    W = lib.tensor(inputs["W"], requires_grad=True)
    b = lib.tensor(inputs["b"], requires_grad=True)

    def step():
        W.grad = None
        b.grad = None
        (x @ W + b).tanh().sum().backward()

    return step, [W, b]
