"""A layer's op and the activation after it as one node.

``Sequential`` runs a ``Linear`` or a convolution followed by ``ReLU``, ``Sigmoid`` or ``Tanh``
as one op (``nn/modules/container.py``). The activation is applied in place to the layer's
output, a fresh array that nothing else holds, and its gradient is taken first in backward.
The float operations are those of the two separate ops, so the results are the same bits; what
goes is one output array (a pass over memory into new pages) and one node's bookkeeping, which
is most of an activation's cost on small tensors (about 19 us a node, forward and backward,
measured on XOR's 4x8).
"""
from __future__ import annotations

from ..autograd.function import Function
from .elementwise import ACTIVATIONS


class _Activated(Function):
    """Mixed in before a single-output op: its forward, then the activation on the output;
    backward the activation's gradient, then the op's."""

    saves_output = True  # the activation's gradient reads it

    @staticmethod
    def into(x, out):
        raise NotImplementedError

    @staticmethod
    def grad_of(y, grad):
        raise NotImplementedError

    @staticmethod
    def biased(y, bias):
        raise NotImplementedError

    def forward(self, *args, **params):
        y = super().forward(*args, **params)
        self.y = self.into(y, y)
        return self.y

    def backward(self, grad):
        return super().backward(self.grad_of(self.y, grad))


class _ActivatedBiased(_Activated):
    """``_Activated`` for an op with ``forward_unbiased`` (its output before the bias, and the
    bias): the bias is added in the activation's pass."""

    activation = ""
    in_parts = None  # the op's forward_in_parts, if it has one

    def forward(self, *args, **params):
        if self.in_parts is not None:  # Linear's row parts (linalg.py)
            relu = self.activation == "relu"
            y = self.in_parts(relu, *args, **params)
            if y is not None:
                self.y = y if relu else self.into(y, y)
                return self.y
        y, bias = super().forward_unbiased(*args, **params)
        self.y = self.into(y, y) if bias is None else self.biased(y, bias)
        return self.y


def activated(op: type[Function]) -> dict[str, type[Function]]:
    """``{activation: op followed by it}`` for the activations of ``ACTIVATIONS``, each a
    subclass of ``op`` named e.g. ``LinearRelu`` (its nodes print as ``LinearReluBackward``)."""
    mixin = _ActivatedBiased if hasattr(op, "forward_unbiased") else _Activated
    return {name: type(f"{op.__name__}{name.capitalize()}", (mixin, op),
                       {"into": staticmethod(into), "grad_of": staticmethod(grad_of),
                        "biased": staticmethod(biased), "activation": name,
                        "in_parts": getattr(op, "forward_in_parts", None),
                        "__module__": op.__module__})
            for name, (into, grad_of, biased) in ACTIVATIONS.items()}
