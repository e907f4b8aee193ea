"""A training step of the classic LeNet-5 (tanh, average pooling) on 64 MNIST digits."""

from __future__ import annotations

import numpy as np

from ._train import TRAIN_FACTOR, lenet5, lenet5_forward_flops, mnist_batches, sgd_classifier_step

NAME = "lenet5"
DESCRIPTION = ("LeNet-5: Conv 1-6 5x5 pad 2, tanh, AvgPool 2, Conv 6-16 5x5, tanh, AvgPool 2, "
               "Conv 16-120 5x5, tanh, Flatten, Linear 120-84, tanh, Linear 84-10; batch 64, "
               "CrossEntropyLoss, SGD lr 0.01 momentum 0.9: one training step")
UNIT = "ms"
TARGET = 0.8
TRAINING = True
BATCH = 64
MODERN = False


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    return mnist_batches(BATCH)


def build(lib, inputs, batch: int = BATCH, modern: bool = MODERN):
    return sgd_classifier_step(lib, lenet5(lib, modern), inputs, batch)


def flops(inputs) -> float:
    return TRAIN_FACTOR * lenet5_forward_flops(BATCH)
