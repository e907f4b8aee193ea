"""A training step of a 784-512-512-10 ReLU MLP on a batch of 128 MNIST digits."""

from __future__ import annotations

import numpy as np

from ._train import TRAIN_FACTOR, linear_flops, mnist_batches, sgd_classifier_step

NAME = "mlp_mnist"
DESCRIPTION = ("MLP 784-512-512-10 ReLU, batch 128, CrossEntropyLoss, SGD lr 0.01 momentum 0.9: "
               "one training step")
UNIT = "ms"
TARGET = 1.0
TRAINING = True
BATCH = 128


def mlp(lib):
    nn = lib.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512),
                         nn.ReLU(), nn.Linear(512, 10))


def forward_flops(batch: int) -> float:
    return (linear_flops(batch, 784, 512) + linear_flops(batch, 512, 512)
            + linear_flops(batch, 512, 10))


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    return mnist_batches(BATCH)


def build(lib, inputs):
    return sgd_classifier_step(lib, mlp(lib), inputs, BATCH)


def flops(inputs) -> float:
    return TRAIN_FACTOR * forward_flops(BATCH)
