"""Pooling layers: ``MaxPool1d``, ``MaxPool2d``, ``AvgPool1d``, ``AvgPool2d``,
``AdaptiveAvgPool1d``, ``AdaptiveAvgPool2d``."""
from __future__ import annotations

from ...ops import conv as conv_ops
from ..module import Module

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
           "AdaptiveAvgPool2d"]


def _check_dims(input, nd: int) -> None:
    s = input.data.shape
    if len(s) != nd + 1 and len(s) != nd + 2:
        want = "2-d (C, L) or 3-d (N, C, L)" if nd == 1 else "3-d (C, H, W) or 4-d (N, C, H, W)"
        raise ValueError(f"expected {want} input, got shape {s}")


def _validate(layer: str, nd: int, kernel_size, stride, padding, dilation=1) -> None:
    """Fail at construction on arguments that can never work (the values are kept as given)."""
    conv_ops._ntuple(layer, "kernel_size", kernel_size, nd, 1)
    if stride is not None:
        conv_ops._ntuple(layer, "stride", stride, nd, 1)
    conv_ops._ntuple(layer, "padding", padding, nd, 0)
    conv_ops._ntuple(layer, "dilation", dilation, nd, 1)


class _MaxPoolNd(Module):
    _nd = 2

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        _validate(type(self).__name__, self._nd, kernel_size, stride, padding, dilation)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):
        _check_dims(input, self._nd)
        f = conv_ops.max_pool1d if self._nd == 1 else conv_ops.max_pool2d
        return f(input, self.kernel_size, self.stride, self.padding, self.dilation,
                 self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool2d(_MaxPoolNd):
    """2-d max pooling over (N, C, H, W) inputs.

    Args:
        kernel_size: window size, an int or a pair.
        stride: window step (default: ``kernel_size``).
        padding: implicit -inf padding, at most half the kernel.
        dilation: spacing between window elements.
        return_indices: also return the flat index of each maximum (for ``MaxUnpool2d``).
        ceil_mode: round the output size up.

    Shape:
        input ``(N, C, H, W)`` or ``(C, H, W)``; output ``H_out = (H + 2*padding -
        dilation*(kernel-1) - 1) // stride + 1`` (rounded up with ``ceil_mode``).

    Example:
        >>> nn.MaxPool2d(2)(deepgrad.randn(64, 6, 28, 28)).shape
        (64, 6, 14, 14)
    """

    _nd = 2


class MaxPool1d(_MaxPoolNd):
    """1-d max pooling over (N, C, L) inputs; see ``MaxPool2d``."""

    _nd = 1


class AvgPool2d(Module):
    """2-d average pooling over (N, C, H, W) inputs.

    Args:
        kernel_size: window size, an int or a pair.
        stride: window step (default: ``kernel_size``).
        padding: implicit zero padding, at most half the kernel.
        ceil_mode: round the output size up.
        count_include_pad: count the padding in the divisor (default True).
        divisor_override: divide every window sum by this instead.

    Example:
        >>> nn.AvgPool2d(2)(deepgrad.randn(64, 6, 28, 28)).shape
        (64, 6, 14, 14)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        super().__init__()
        _validate("AvgPool2d", 2, kernel_size, stride, padding)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        _check_dims(input, 2)
        return conv_ops.avg_pool2d(input, self.kernel_size, self.stride, self.padding,
                                   self.ceil_mode, self.count_include_pad,
                                   self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(Module):
    """1-d average pooling over (N, C, L) inputs; see ``AvgPool2d`` (no divisor_override).

    As in PyTorch, the sizes are stored as 1-tuples: ``AvgPool1d(kernel_size=(3,), ...)``.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = conv_ops._ntuple("AvgPool1d", "kernel_size", kernel_size, 1, 1)
        self.stride = (conv_ops._ntuple("AvgPool1d", "stride", stride, 1, 1)
                       if stride is not None else self.kernel_size)
        self.padding = conv_ops._ntuple("AvgPool1d", "padding", padding, 1, 0)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input):
        _check_dims(input, 1)
        return conv_ops.avg_pool1d(input, self.kernel_size, self.stride, self.padding,
                                   self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AdaptiveAvgPoolNd(Module):
    _nd = 2

    def __init__(self, output_size) -> None:
        super().__init__()
        nd = self._nd
        ok = conv_ops._is_int(output_size) and output_size > 0
        if not ok and isinstance(output_size, (tuple, list)) and len(output_size) == nd:
            ok = all(o is None or (conv_ops._is_int(o) and o > 0) for o in output_size)
        if not ok:
            raise ValueError(
                f"{type(self).__name__}: output_size must be a positive int or a tuple of {nd} "
                f"positive ints (or None), got {output_size!r}")
        self.output_size = tuple(output_size) if isinstance(output_size, list) else output_size

    def forward(self, input):
        _check_dims(input, self._nd)
        f = conv_ops.adaptive_avg_pool1d if self._nd == 1 else conv_ops.adaptive_avg_pool2d
        return f(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed output size (H_out, W_out), whatever the input size.

    Args:
        output_size: an int or a pair; ``None`` keeps that input dim.

    Example:
        >>> nn.AdaptiveAvgPool2d(1)(deepgrad.randn(2, 512, 7, 7)).shape
        (2, 512, 1, 1)
    """

    _nd = 2


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed output length over (N, C, L) inputs."""

    _nd = 1
