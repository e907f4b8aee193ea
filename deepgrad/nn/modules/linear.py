"""Fully connected layers and shape helpers: ``Linear``, ``Bilinear``, ``Identity``,
``Flatten``, ``Unflatten``."""
from __future__ import annotations

import math

import numpy as np

from ... import backend
from ...ops import linalg, reduce, shape
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Identity", "Linear", "Bilinear", "Flatten", "Unflatten"]


def _check_positive(layer: str, **values) -> None:
    for name, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{layer}: {name} must be a positive integer, got {v!r}")


class Identity(Module):
    """Returns its input unchanged (a placeholder that keeps layer indices stable)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """Fully connected layer: ``y = x W^T + b``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: learn an additive bias (default True).

    Shape:
        input ``(*, in_features)``, output ``(*, out_features)``.

    Parameters are initialised as in PyTorch: weight and bias from
    U(-1/sqrt(in_features), 1/sqrt(in_features)).

    Example:
        >>> fc = nn.Linear(784, 10)
        >>> fc(deepgrad.randn(32, 784)).shape
        (32, 10)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        _check_positive("Linear", in_features=in_features, out_features=out_features)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        self.weight = Parameter(np.empty((out_features, in_features), dt))
        if bias:
            self.bias = Parameter(np.empty((out_features,), dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # kaiming_uniform_ with a=sqrt(5) is PyTorch's default; it gives U(+-1/sqrt(fan_in))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        self._check_input(input)
        return linalg.linear(input, self.weight, self.bias)

    def _forward_activated(self, input, activation: str):
        self._check_input(input)
        return linalg.linear_activated(input, self.weight, self.bias, activation)

    def _check_input(self, input) -> None:
        s = input.data.shape
        if not s or s[-1] != self.in_features:
            hint = " Flatten first?" if len(s) > 2 else ""
            raise ValueError(
                f"expected input with last dim {self.in_features}, got shape {s}.{hint}")

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Bilinear(Module):
    """``y = x1^T A x2 + b`` for each output feature.

    Shape:
        input1 ``(*, in1_features)``, input2 ``(*, in2_features)``, output ``(*, out_features)``.
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        _check_positive("Bilinear", in1_features=in1_features, in2_features=in2_features,
                        out_features=out_features)
        self.in1_features = in1_features
        self.in2_features = in2_features
        self.out_features = out_features
        dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        self.weight = Parameter(np.empty((out_features, in1_features, in2_features), dt))
        if bias:
            self.bias = Parameter(np.empty((out_features,), dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        if input1.shape[-1] != self.in1_features or input2.shape[-1] != self.in2_features:
            raise ValueError(
                f"expected inputs with last dims {self.in1_features} and {self.in2_features}, "
                f"got shapes {input1.shape} and {input2.shape}")
        # (*, 1, 1, in1) @ (out, in1, in2) -> (*, out, 1, in2), then dot with x2
        x1 = shape.unsqueeze(shape.unsqueeze(input1, -2), -3)
        t = linalg.matmul(x1, self.weight)
        y = reduce.sum(shape.squeeze(t, -2) * shape.unsqueeze(input2, -2), -1)
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class Flatten(Module):
    """Flattens dims ``start_dim..end_dim`` (by default all but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return shape.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Expands dim ``dim`` into ``unflattened_size``."""

    def __init__(self, dim: int, unflattened_size) -> None:
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, input):
        n = int(np.prod(self.unflattened_size))
        d = self.dim % max(input.ndim, 1)
        if input.ndim == 0 or input.shape[d] != n:
            raise ValueError(
                f"expected dim {self.dim} of size {n} to unflatten into "
                f"{self.unflattened_size}, got shape {input.shape}")
        return shape.unflatten(input, self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
