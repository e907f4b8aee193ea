"""Inference of the 10,000 MNIST test digits in batches of 1,000 by the mlp_mnist model."""

from __future__ import annotations

import numpy as np

from . import _mnist
from ._train import same_init
from .mlp_mnist import forward_flops, mlp

NAME = "mlp_mnist_infer"
DESCRIPTION = ("mlp_mnist's MLP classifying the 10,000 MNIST test digits in batches of 1,000 "
               "under no_grad")
UNIT = "ms"
TARGET = 1.0
CHECK = "values"  # nothing has a gradient: the logits of every batch are compared instead
N, BATCH = 10_000, 1_000


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    x, _, source = _mnist.digits(train=False, need=N)
    return {"x": x, "_data": source}


def build(lib, inputs):
    model = mlp(lib)
    same_init(lib, model)
    model.eval()
    x = inputs["x"]
    batches = [lib.from_numpy(np.ascontiguousarray(x[k:k + BATCH])) for k in range(0, N, BATCH)]
    outputs: list = []

    def step():
        outputs.clear()
        with lib.no_grad():
            for xb in batches:
                outputs.append(model(xb))

    return step, outputs


def flops(inputs) -> float:
    return forward_flops(N)
