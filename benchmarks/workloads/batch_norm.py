"""Batch normalization in training mode (batch statistics), forward+backward."""

from __future__ import annotations

import numpy as np

from ._layer import layer_step

NAME = "batch_norm"
DESCRIPTION = "BatchNorm2d(64) train fwd+bwd on x (32, 64, 16, 16)"


def make_inputs(rng: np.random.Generator, quick: bool) -> dict[str, np.ndarray]:
    return {"x": rng.standard_normal((32, 64, 16, 16)).astype(np.float32)}


def build(lib, inputs):
    return layer_step(lib, lib.nn.BatchNorm2d(64), inputs)
