"""Reference networks built only from ``deepgrad.nn``, and a registry of them by name.

``create(name)`` builds a model; ``MODELS[name].input_shape`` is the shape of one sample it
takes (after the dataset's transforms).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .lenet import LeNet5, PartialConv2d, ScaledTanh, Subsampling, lenet5_classic, scaled_tanh
from .mlp import mlp


@dataclass(frozen=True)
class ModelSpec:
    build: Callable
    input_shape: tuple
    description: str


MODELS = {
    "lenet5": ModelSpec(LeNet5, (1, 32, 32),
                        "LeNet-5 as published (1998): C3 connection table, trainable "
                        "subsampling, scaled tanh; softmax output"),
    "lenet5-classic": ModelSpec(lenet5_classic, (1, 28, 28),
                                "LeNet-5 as commonly coded: padded C1, tanh, average pooling"),
    "lenet5-modern": ModelSpec(lambda: lenet5_classic("relu", "max"), (1, 28, 28),
                               "LeNet-5 with ReLU and max pooling"),
    "mlp": ModelSpec(mlp, (1, 28, 28), "MLP 784-512-512-10 with ReLU"),
}


def create(name: str):
    """Build the model registered as ``name`` (see ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name].build()


__all__ = ["LeNet5", "PartialConv2d", "ScaledTanh", "Subsampling", "lenet5_classic", "mlp",
           "scaled_tanh", "MODELS", "ModelSpec", "create"]
