"""A training step of the classic LeNet-5 (tanh, average pooling) on 64 MNIST digits."""

from __future__ import annotations

import numpy as np

from . import _mnist
from ._train import (POOL, TRAIN_FACTOR, batch_pool, lenet5, lenet5_forward_flops, same_init,
                     train_step)

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
    x, y, source = _mnist.digits(train=True, need=BATCH * POOL, allow_full=False)
    return {"x": x, "y": y, "_data": f"{POOL} batches cycled; {source}"}


def build(lib, inputs, batch: int = BATCH, modern: bool = MODERN):
    model = lenet5(lib, modern)
    same_init(lib, model)
    optimizer = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = batch_pool(lib, inputs["x"], inputs["y"], batch)
    return train_step(model, lib.nn.CrossEntropyLoss(), optimizer, batches)


def flops(inputs) -> float:
    return TRAIN_FACTOR * lenet5_forward_flops(BATCH)
