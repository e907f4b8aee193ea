"""Dropout layers: ``Dropout``, ``Dropout1d``, ``Dropout2d``.

Active in training mode only (``model.train()``); in eval mode they return their input. Masks
come from deepgrad's global generator, so ``deepgrad.manual_seed`` makes them reproducible.
``inplace=True`` is accepted and gives the same result as ``inplace=False``.
"""
from __future__ import annotations

from ...ops import nn_ops
from ..module import Module

__all__ = ["Dropout", "Dropout1d", "Dropout2d"]


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ValueError(
                f"{type(self).__name__}: dropout probability has to be between 0 and 1, "
                f"but got {p!r}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability ``p`` in training; scale the rest by ``1/(1-p)``.

    Shape:
        input ``(*)``, output the same shape.

    Example:
        >>> drop = nn.Dropout(0.2)
        >>> y = drop(deepgrad.ones(4, 5))   # entries are 0 or 1.25
    """

    def forward(self, input):
        if not self.training or self.p == 0:
            return input
        return nn_ops.dropout(input, self.p, True)


class Dropout1d(_DropoutNd):
    """Zero whole channels: each ``(n, c)`` slice of an ``(N, C, L)`` input (or ``c`` of
    ``(C, L)``) with probability ``p``; scale the rest by ``1/(1-p)``."""

    def forward(self, input):
        return nn_ops.dropout1d(input, self.p, self.training)


class Dropout2d(_DropoutNd):
    """Zero whole channels: each ``(n, c)`` feature map of an ``(N, C, H, W)`` input with
    probability ``p``; scale the rest by ``1/(1-p)``. A 3-d input is taken as ``(N, C, L)``,
    as in PyTorch."""

    def forward(self, input):
        return nn_ops.dropout2d(input, self.p, self.training)
