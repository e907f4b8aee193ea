"""LeNet-5's first convolution on a batch of MNIST-sized digits, forward+backward."""

from __future__ import annotations

import numpy as np

from ._layer import copy_weights, init_weights, layer_step

NAME = "lenet_conv"
DESCRIPTION = "Conv2d(1, 6, 5, padding=2) fwd+bwd on x (64, 1, 28, 28)"


def make_inputs(rng: np.random.Generator, quick: bool) -> dict[str, np.ndarray]:
    inputs = {"x": rng.standard_normal((64, 1, 28, 28)).astype(np.float32)}
    inputs.update(init_weights(rng, {"weight": (6, 1, 5, 5), "bias": (6,)}))
    return inputs


def build(lib, inputs):
    layer = lib.nn.Conv2d(1, 6, 5, padding=2)
    copy_weights(lib, layer, inputs)
    return layer_step(lib, layer, inputs)
