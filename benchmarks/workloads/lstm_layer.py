"""One LSTM layer over a batch of sequences (backpropagation through time)."""

from __future__ import annotations

import numpy as np

from ._layer import copy_weights, init_weights, layer_step

NAME = "lstm_layer"
DESCRIPTION = "LSTM(64, 256, batch_first) fwd+bwd on x (32, 64, 64) (quick: seq 16)"
REPEATS = 5
TARGET_SECONDS = 0.3


def make_inputs(rng: np.random.Generator, quick: bool) -> dict[str, np.ndarray]:
    t = 16 if quick else 64
    inputs = {"x": rng.standard_normal((32, t, 64)).astype(np.float32)}
    inputs.update(init_weights(rng, {"weight_ih_l0": (1024, 64), "weight_hh_l0": (1024, 256),
                                     "bias_ih_l0": (1024,), "bias_hh_l0": (1024,)}))
    return inputs


def build(lib, inputs):
    layer = lib.nn.LSTM(64, 256, batch_first=True)
    copy_weights(lib, layer, inputs)
    return layer_step(lib, layer, inputs)
