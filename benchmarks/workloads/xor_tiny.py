"""XOR with a 2-8-1 MLP: a whole training step on 4 points, almost all of it per-op overhead."""

from __future__ import annotations

import numpy as np

from ._train import TRAIN_FACTOR, linear_flops, same_init, train_step

NAME = "xor_tiny"
DESCRIPTION = ("MLP 2-8-1 (tanh, sigmoid out), the 4 XOR points as one batch, MSELoss, "
               "SGD lr 0.5: zero_grad + forward + backward + step")
UNIT = "us"
TARGET = 0.5
TRAINING = True


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    return {
        "x": np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32),
        "y": np.array([[0], [1], [1], [0]], dtype=np.float32),
        "_data": "the 4 XOR points",
    }


def build(lib, inputs):
    nn = lib.nn
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid())
    same_init(lib, model)
    optimizer = lib.optim.SGD(model.parameters(), lr=0.5)
    batch = (lib.from_numpy(inputs["x"]), lib.from_numpy(inputs["y"]))
    return train_step(model, nn.MSELoss(), optimizer, [batch])


def flops(inputs) -> float:
    return TRAIN_FACTOR * (linear_flops(4, 2, 8) + linear_flops(4, 8, 1))
