"""Per-op overhead: the fixed Python cost of building and running a tiny graph.

With 2x2 inputs the arithmetic is negligible, so this measures what every op pays in
Tensor creation, graph recording and the backward engine.
"""

from __future__ import annotations

import numpy as np

NAME = "op_overhead"
DESCRIPTION = "(a + b).sum().backward() on 2x2 float32 leaves"


def make_inputs(rng: np.random.Generator, quick: bool) -> dict[str, np.ndarray]:
    return {
        "a": rng.standard_normal((2, 2)).astype(np.float32),
        "b": rng.standard_normal((2, 2)).astype(np.float32),
    }


def build(lib, inputs):
    a = lib.tensor(inputs["a"], requires_grad=True)
    b = lib.tensor(inputs["b"], requires_grad=True)

    def step():
        a.grad = None
        b.grad = None
        (a + b).sum().backward()

    return step, [a, b]
