"""Normalization layers: ``BatchNorm1d``, ``BatchNorm2d``, ``BatchNorm3d``, ``LayerNorm``."""
from __future__ import annotations

import numpy as np

from ... import backend
from ...ops import nn_ops
from ...tensor import Tensor
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm"]


def _dtype(dtype) -> np.dtype:
    return np.dtype(dtype) if dtype is not None else backend.get_default_dtype()


class _BatchNorm(Module):
    """Shared body of the batch-norm layers; subclasses set the accepted input dims."""

    _ndims: tuple = ()
    _shape_doc = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None, *, bias: bool = True) -> None:
        super().__init__()
        name = type(self).__name__
        if (not isinstance(num_features, (int, np.integer)) or isinstance(num_features, bool)
                or num_features <= 0):
            raise ValueError(f"{name}: num_features must be a positive integer, got "
                             f"{num_features!r}")
        if not eps >= 0:
            raise ValueError(f"{name}: eps must be non-negative, got {eps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dt = _dtype(dtype)
        if affine:
            self.weight = Parameter(np.empty((num_features,), dt))
            if bias:
                self.bias = Parameter(np.empty((num_features,), dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros((num_features,), dt)))
            self.register_buffer("running_var", Tensor(np.ones((num_features,), dt)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data.fill(0)
            self.running_var.data.fill(1)
            self.num_batches_tracked.data.fill(0)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        s = input.data.shape
        if len(s) not in self._ndims:
            dims = " or ".join(f"{d}D" for d in self._ndims)
            raise ValueError(f"expected {dims} input {self._shape_doc}, got {len(s)}D input of "
                             f"shape {s}")
        if s[1] != self.num_features:
            raise ValueError(
                f"expected input with {self.num_features} channels "
                f"(num_features={self.num_features}), got shape {s}")
        factor = 0.0 if self.momentum is None else self.momentum
        training = self.training
        if training and self.track_running_stats:
            nbt = self.num_batches_tracked
            if nbt is not None:
                nbt.data += 1
                if self.momentum is None:  # cumulative moving average
                    factor = 1.0 / float(nbt.data)
        if training:
            m = s[0]
            for k in s[2:]:
                m *= k
            if m <= 1:
                raise ValueError(
                    f"expected more than 1 value per channel when training, got input of "
                    f"shape {s}")
            use_batch = True
        else:
            use_batch = self.running_mean is None and self.running_var is None
        keep = not training or self.track_running_stats
        return nn_ops.batch_norm(input, self.running_mean if keep else None,
                                 self.running_var if keep else None, self.weight, self.bias,
                                 use_batch, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization over a 2-d or 3-d input (Ioffe & Szegedy, 2015).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel. In training, ``mean``
    and the biased ``var`` come from the batch, and ``running_mean``/``running_var`` are
    updated with ``momentum`` (``None``: cumulative average) using the unbiased variance; in
    eval mode the running statistics are used.

    Args:
        num_features: ``C``, the number of channels.
        eps: added to the variance for stability (default 1e-5).
        momentum: the weight of the new batch in the running statistics (default 0.1).
        affine: learn ``weight`` (init 1) and ``bias`` (init 0) (default True).
        track_running_stats: keep running statistics (default True); if False, batch
            statistics are used in eval mode too.

    Shape:
        input ``(N, C)`` or ``(N, C, L)``, output the same shape.

    Example:
        >>> bn = nn.BatchNorm1d(16)
        >>> bn(deepgrad.randn(8, 16)).shape
        (8, 16)
    """

    _ndims = (2, 3)
    _shape_doc = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization over a 4-d input ``(N, C, H, W)``; see ``BatchNorm1d``.

    Shape:
        input ``(N, C, H, W)``, output the same shape.
    """

    _ndims = (4,)
    _shape_doc = "(N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalization over a 5-d input ``(N, C, D, H, W)``; see ``BatchNorm1d``."""

    _ndims = (5,)
    _shape_doc = "(N, C, D, H, W)"


class LayerNorm(Module):
    """Layer normalization over the trailing dims (Ba et al., 2016).

    Args:
        normalized_shape: the trailing shape to normalise over (an int for the last dim).
        eps: added to the variance (default 1e-5).
        elementwise_affine: learn ``weight`` (init 1) and ``bias`` (init 0) of
            ``normalized_shape`` (default True).
        bias: learn the bias too (default True).

    Shape:
        input ``(*, *normalized_shape)``, output the same shape.

    Example:
        >>> ln = nn.LayerNorm(64)
        >>> ln(deepgrad.randn(2, 10, 64)).shape
        (2, 10, 64)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        normalized_shape = tuple(int(v) for v in normalized_shape)
        if not normalized_shape or any(v <= 0 for v in normalized_shape):
            raise ValueError(f"LayerNorm: normalized_shape must be a non-empty shape of "
                             f"positive sizes, got {normalized_shape}")
        self.normalized_shape = normalized_shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dt = _dtype(dtype)
        if elementwise_affine:
            self.weight = Parameter(np.empty(normalized_shape, dt))
            if bias:
                self.bias = Parameter(np.empty(normalized_shape, dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        s = input.data.shape
        ns = self.normalized_shape
        if s[len(s) - len(ns):] != ns or len(s) < len(ns):
            raise ValueError(
                f"expected input with shape (*, {', '.join(map(str, ns))}) "
                f"(normalized_shape={ns}), got shape {s}")
        return nn_ops.layer_norm(input, ns, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")
