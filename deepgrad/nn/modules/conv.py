"""Convolution layers: ``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d``."""
from __future__ import annotations

import math

import numpy as np

from ... import backend
from ...ops import conv as conv_ops
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


_ntuple = conv_ops._ntuple


def _check_count(layer: str, name: str, v) -> int:
    if not conv_ops._is_int(v) or v <= 0:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {v!r}")
    return int(v)


class _ConvNd(Module):
    """Shared construction of the convolution layers (PyTorch's attributes and init)."""

    _nd = 2
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding,
                 dilation, output_padding, groups: int, bias: bool, padding_mode: str,
                 device=None, dtype=None) -> None:
        super().__init__()
        name = type(self).__name__
        nd = self._nd
        in_channels = _check_count(name, "in_channels", in_channels)
        out_channels = _check_count(name, "out_channels", out_channels)
        groups = _check_count(name, "groups", groups)
        if in_channels % groups:
            raise ValueError(
                f"{name}: in_channels must be divisible by groups; got in_channels="
                f"{in_channels}, groups={groups}")
        if out_channels % groups:
            raise ValueError(
                f"{name}: out_channels must be divisible by groups; got out_channels="
                f"{out_channels}, groups={groups}")
        kernel_size = _ntuple(name, "kernel_size", kernel_size, nd, 1)
        stride = _ntuple(name, "stride", stride, nd, 1)
        dilation = _ntuple(name, "dilation", dilation, nd, 1)
        output_padding = _ntuple(name, "output_padding", output_padding, nd, 0)
        if isinstance(padding, str):
            if self._transposed or padding not in ("valid", "same"):
                allowed = "an int or a tuple" if self._transposed else \
                    "'valid', 'same', an int or a tuple"
                raise ValueError(f"{name}: padding must be {allowed}, got {padding!r}")
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError(
                    f"{name}: padding='same' is not supported for strided convolutions; got "
                    f"stride={stride}")
            pads = conv_ops._conv_padding(name, padding, nd, kernel_size, stride, dilation)
        else:
            padding = _ntuple(name, "padding", padding, nd, 0)
            pads = tuple((p, p) for p in padding)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of 'zeros', 'reflect', 'replicate', "
                f"'circular', got {padding_mode!r}")
        if self._transposed and padding_mode != "zeros":
            raise ValueError(
                f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = self._transposed
        self.output_padding = output_padding
        self.groups = groups
        self.padding_mode = padding_mode
        self._pads = pads  # (lo, hi) per spatial dim, for the non-zero padding modes
        dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        if self._transposed:
            shape = (in_channels, out_channels // groups) + kernel_size
        else:
            shape = (out_channels, in_channels // groups) + kernel_size
        self.weight = Parameter(np.empty(shape, dt))
        if bias:
            self.bias = Parameter(np.empty((out_channels,), dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's default: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)) for the weight,
        # and U(+-1/sqrt(fan_in)) for the bias, fan_in from the weight's dims 1..
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def _check_input(self, input) -> None:
        nd = self._nd
        s = input.data.shape
        if len(s) != nd + 1 and len(s) != nd + 2:
            if nd == 1:
                want = "2-d (C, L) or 3-d (N, C, L)"
            else:
                want = "3-d (C, H, W) or 4-d (N, C, H, W)"
            raise ValueError(f"expected {want} input, got shape {s}")
        if s[-nd - 1] != self.in_channels:
            raise ValueError(
                f"expected input with {self.in_channels} channels (in_channels="
                f"{self.in_channels}), got shape {s}")

    def extra_repr(self) -> str:
        nd = self._nd
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if isinstance(self.padding, str):
            s += f", padding={self.padding}"
        elif self.padding != (0,) * nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    def forward(self, input):
        return self._forward_activated(input, None)

    def _forward_activated(self, input, activation: str | None):
        self._check_input(input)
        padding = self.padding
        if self.padding_mode != "zeros":
            input = conv_ops._mode_pad(input, self._pads, self.padding_mode)
            padding = 0
        nd = self._nd
        return conv_ops._conv(f"conv{nd}d", nd, input, self.weight, self.bias, self.stride,
                              padding, self.dilation, self.groups, activation)


class Conv2d(_Conv):
    """2-d convolution layer (cross-correlation) over (N, C, H, W) inputs.

    Args:
        in_channels, out_channels: channels of the input and of the output.
        kernel_size: an int or a pair.
        stride, dilation: an int or a pair (default 1).
        padding: an int, a pair, 'valid' or 'same' (stride 1 only); default 0.
        groups: independent channel groups; both channel counts must divide by it.
        bias: learn an additive bias per output channel (default True).
        padding_mode: 'zeros' (default), 'reflect', 'replicate' or 'circular'.

    Shape:
        input ``(N, C_in, H, W)`` or ``(C_in, H, W)``, output ``(N, C_out, H_out, W_out)``
        with ``H_out = (H + 2*padding - dilation*(kernel-1) - 1) // stride + 1``.

    Parameters: ``weight (C_out, C_in/groups, kH, kW)``, ``bias (C_out,)``, initialised as in
    PyTorch (kaiming_uniform_ with a=sqrt(5); bias U(+-1/sqrt(fan_in))).

    Example:
        >>> conv = nn.Conv2d(1, 6, 5, padding=2)
        >>> conv(deepgrad.randn(64, 1, 28, 28)).shape
        (64, 6, 28, 28)
    """

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 0,
                         groups, bias, padding_mode, device, dtype)


class Conv1d(_Conv):
    """1-d convolution layer over (N, C, L) inputs; arguments as in ``Conv2d`` with single
    ints.

    Shape:
        input ``(N, C_in, L)`` or ``(C_in, L)``; weight ``(C_out, C_in/groups, kL)``.

    Example:
        >>> nn.Conv1d(2, 8, 5)(deepgrad.randn(4, 2, 50)).shape
        (4, 8, 46)
    """

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 0,
                         groups, bias, padding_mode, device, dtype)


class _ConvTranspose(_ConvNd):
    _transposed = True

    def _output_padding(self, input, output_size) -> tuple:
        if output_size is None:
            return self.output_padding
        nd = self._nd
        output_size = tuple(int(v) for v in output_size)
        if len(output_size) == nd + 2 or len(output_size) == nd + 1:
            output_size = output_size[-nd:]
        if len(output_size) != nd:
            raise ValueError(
                f"output_size must have {nd} or {nd + 2} elements, got {output_size}")
        res = []
        spatial = input.data.shape[-nd:]
        for d in range(nd):
            lo = ((spatial[d] - 1) * self.stride[d] - 2 * self.padding[d]
                  + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            hi = lo + self.stride[d] - 1
            if not lo <= output_size[d] <= hi:
                raise ValueError(
                    f"requested output_size {output_size} is not reachable from input shape "
                    f"{input.data.shape}; expected sizes between {lo} and {hi} in dim {d}")
            res.append(output_size[d] - lo)
        return tuple(res)

    def forward(self, input, output_size=None):
        self._check_input(input)
        output_padding = self._output_padding(input, output_size)
        f = conv_ops.conv_transpose1d if self._nd == 1 else conv_ops.conv_transpose2d
        return f(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                 self.groups, self.dilation)


class ConvTranspose2d(_ConvTranspose):
    """2-d transposed convolution layer (the gradient of ``Conv2d`` with respect to its input),
    used to upsample.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as ``Conv2d``.
        padding: removes ``dilation*(kernel-1) - padding`` of implicit zero padding.
        output_padding: extra rows/columns on the bottom/right of the output, smaller than
            stride or dilation. ``forward(input, output_size)`` can pick it from a size.

    Shape:
        output ``H_out = (H - 1)*stride - 2*padding + dilation*(kernel-1) + output_padding + 1``.

    Parameters: ``weight (C_in, C_out/groups, kH, kW)``, ``bias (C_out,)``.

    Example:
        >>> up = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
        >>> up(deepgrad.randn(2, 16, 7, 7)).shape
        (2, 8, 14, 14)
    """

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         output_padding, groups, bias, padding_mode, device, dtype)


class ConvTranspose1d(_ConvTranspose):
    """1-d transposed convolution layer; see ``ConvTranspose2d``."""

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         output_padding, groups, bias, padding_mode, device, dtype)
