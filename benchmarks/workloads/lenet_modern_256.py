"""A training step of LeNet-5 with ReLU and max pooling on 256 MNIST digits."""

from __future__ import annotations

import numpy as np

from . import _mnist
from . import lenet5
from ._train import POOL, TRAIN_FACTOR, lenet5_forward_flops

NAME = "lenet_modern_256"
DESCRIPTION = ("LeNet-5 with ReLU and MaxPool2d(2) instead of tanh and AvgPool, batch 256, "
               "CrossEntropyLoss, SGD lr 0.01 momentum 0.9: one training step")
UNIT = "ms"
TARGET = 1.0
TRAINING = True
BATCH = 256


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    x, y, source = _mnist.digits(train=True, need=BATCH * POOL, allow_full=False)
    return {"x": x, "y": y, "_data": f"{POOL} batches cycled; {source}"}


def build(lib, inputs):
    return lenet5.build(lib, inputs, batch=BATCH, modern=True)


def flops(inputs) -> float:
    return TRAIN_FACTOR * lenet5_forward_flops(BATCH)
