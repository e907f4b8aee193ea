"""The matrix products of one mlp_mnist training step, alone: what deepgrad's GEMM route (MKL
where installed, else NumPy's BLAS) and PyTorch's take for the GEMMs that step cannot avoid,
without anything else around them."""

from __future__ import annotations

import numpy as np

from .mlp_mnist import BATCH

IN, HIDDEN, OUT = 784, 512, 10  # mlp_mnist's layer widths

NAME = "mlp_gemms"
DESCRIPTION = ("the 8 matrix products of an mlp_mnist step (batch 128; forward x @ W.T of the "
               "3 layers, then each layer's weight and input gradients) under no_grad")
UNIT = "ms"
CHECK = "values"


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return {"x": r(BATCH, IN), "w1": r(HIDDEN, IN), "w2": r(HIDDEN, HIDDEN), "w3": r(OUT, HIDDEN),
            "h1": r(BATCH, HIDDEN), "h2": r(BATCH, HIDDEN), "g1": r(BATCH, HIDDEN),
            "g2": r(BATCH, HIDDEN), "g3": r(BATCH, OUT)}


def build(lib, inputs):
    t = {k: lib.from_numpy(v) for k, v in inputs.items()}
    x, w1, w2, w3 = t["x"], t["w1"], t["w2"], t["w3"]
    h1, h2, g1, g2, g3 = t["h1"], t["h2"], t["g1"], t["g2"], t["g3"]
    outputs: list = []

    def step():
        outputs.clear()
        with lib.no_grad():
            outputs.extend([
                x @ w1.T, h1 @ w2.T, h2 @ w3.T,  # forward
                g3.T @ h2, g3 @ w3,              # last layer: weight and input gradients
                g2.T @ h1, g2 @ w2,              # hidden layer
                g1.T @ x,                        # first layer: weight gradient only
            ])

    return step, outputs


def flops(inputs) -> float:
    b, i, h, o = BATCH, IN, HIDDEN, OUT
    return 2.0 * (b * i * h + b * h * h + b * h * o + 2 * b * h * o + 2 * b * h * h + b * h * i)
