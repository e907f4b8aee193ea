"""Multilayer perceptrons."""
from __future__ import annotations

from .. import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid} if hasattr(
    nn, "ReLU") else {}


def mlp(sizes=(784, 512, 512, 10), activation: str = "relu", batch_norm: bool = False,
        dropout: float = 0.0) -> nn.Sequential:
    """A fully connected network: ``Flatten``, then ``Linear`` layers of ``sizes`` with
    ``activation`` (and optional batch norm and dropout) between them, no activation at the end.

    Example:
        >>> mlp((784, 100, 10), "tanh")
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp: sizes needs at least an input and an output size, got {sizes}")
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"mlp: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(_ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
