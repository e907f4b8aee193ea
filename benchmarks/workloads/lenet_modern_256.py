"""A training step of LeNet-5 with ReLU and max pooling on 256 MNIST digits (see lenet5.py)."""

from __future__ import annotations

import numpy as np

from . import lenet5
from ._train import TRAIN_FACTOR, lenet5_forward_flops, mnist_batches

NAME = "lenet_modern_256"
DESCRIPTION = ("LeNet-5 with ReLU and MaxPool2d(2) instead of tanh and AvgPool, batch 256, "
               "CrossEntropyLoss, SGD lr 0.01 momentum 0.9: one training step")
UNIT = "ms"
TARGET = 1.0
TRAINING = True
BATCH = 256


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    return mnist_batches(BATCH)


def build(lib, inputs):
    return lenet5.build(lib, inputs, batch=BATCH, modern=True)


def flops(inputs) -> float:
    return TRAIN_FACTOR * lenet5_forward_flops(BATCH)
