"""A training step of a 784-512-512-10 ReLU MLP on a batch of 128 MNIST digits."""

from __future__ import annotations

import numpy as np

from . import _mnist
from ._train import POOL, TRAIN_FACTOR, batch_pool, linear_flops, same_init, train_step

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
    x, y, source = _mnist.digits(train=True, need=BATCH * POOL, allow_full=False)
    return {"x": x, "y": y, "_data": f"{POOL} batches cycled; {source}"}


def build(lib, inputs):
    model = mlp(lib)
    same_init(lib, model)
    optimizer = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = batch_pool(lib, inputs["x"], inputs["y"], BATCH)
    return train_step(model, lib.nn.CrossEntropyLoss(), optimizer, batches)


def flops(inputs) -> float:
    return TRAIN_FACTOR * forward_flops(BATCH)
