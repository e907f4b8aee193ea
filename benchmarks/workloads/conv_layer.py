"""A 3x3 convolution of a ResNet-style block: Conv2d(64, 64, 3, padding=1), forward+backward."""

from __future__ import annotations

import numpy as np

from ._layer import copy_weights, init_weights, layer_step
from ._train import TRAIN_FACTOR, conv_flops

NAME = "conv_layer"
DESCRIPTION = "Conv2d(64, 64, 3, padding=1) fwd+bwd on x (32, 64, 32, 32)"
UNIT = "ms"
TARGET = 1.2
REPEATS = 5
TARGET_SECONDS = 0.3
BATCH = 32


def make_inputs(rng: np.random.Generator, quick: bool) -> dict[str, np.ndarray]:
    # quick keeps the full batch: the target is for this shape, and a step is under 0.1 s
    inputs = {"x": rng.standard_normal((BATCH, 64, 32, 32)).astype(np.float32)}
    inputs.update(init_weights(rng, {"weight": (64, 64, 3, 3), "bias": (64,)}))
    return inputs


def build(lib, inputs):
    layer = lib.nn.Conv2d(64, 64, 3, padding=1)
    copy_weights(lib, layer, inputs)
    return layer_step(lib, layer, inputs)


def flops(inputs) -> float:
    # forward, input gradient and weight gradient: x requires grad here
    return TRAIN_FACTOR * conv_flops(BATCH, 64, 64, 3, 32, 32)
