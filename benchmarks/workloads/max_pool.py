"""2x2 max pooling of LeNet-sized feature maps, forward+backward."""

from __future__ import annotations

import numpy as np

from ._layer import layer_step

NAME = "max_pool"
DESCRIPTION = "MaxPool2d(2) fwd+bwd on x (64, 16, 28, 28)"


def make_inputs(rng: np.random.Generator, quick: bool) -> dict[str, np.ndarray]:
    return {"x": rng.standard_normal((64, 16, 28, 28)).astype(np.float32)}


def build(lib, inputs):
    return layer_step(lib, lib.nn.MaxPool2d(2), inputs)
