"""LeNet-5 as published (LeCun, Bottou, Bengio & Haffner, 1998), and two common variants.

``LeNet5`` follows the paper layer by layer: 32x32 input, C1 6@28x28, S2 trainable
subsampling, C3 16@10x10 with the paper's partial connection table (Table I), S4, C5 120, F6 84,
and the scaled tanh squashing function f(a) = 1.7159 tanh(2a/3) after every layer up to F6.
Its parameter and connection counts are exactly the paper's (60,000 trainable parameters up to
F6). The output layer is our documented choice: the paper's Euclidean RBF units compare F6 with
fixed +-1 bitmaps of stylised digits that the paper does not list, so we use 10 linear units
trained with softmax cross-entropy, the form modern reproductions use.

Weights start as in the paper's appendix: uniform in +-2.4 / fan_in.
"""
from __future__ import annotations

import math

import numpy as np

from .. import from_numpy, nn
from ..nn import functional as F
from ..nn import init
from ..nn.parameter import Parameter
from ..ops import elementwise

# Table I of the paper: which S2 maps (columns) feed each C3 map (rows). The first six C3 maps
# see three contiguous S2 maps, the next six four contiguous ones, the next three four
# discontinuous ones, and the last one all six: it breaks the symmetry between maps and keeps
# the connection count down.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

SQUASH_AMPLITUDE = 1.7159
SQUASH_SLOPE = 2.0 / 3.0


def scaled_tanh(x):
    """The paper's squashing function f(a) = 1.7159 tanh(2a/3): f(1) = 1 and f(-1) = -1."""
    return elementwise.tanh(x * SQUASH_SLOPE) * SQUASH_AMPLITUDE


class ScaledTanh(nn.Module):
    """Module form of ``scaled_tanh``."""

    def forward(self, input):
        return scaled_tanh(input)


def _paper_uniform_(tensor, fan_in: int) -> None:
    bound = 2.4 / fan_in
    init.uniform_(tensor, -bound, bound)


class Subsampling(nn.Module):
    """LeNet's S layers: each unit adds a 2x2 window of its map, multiplies the sum by the
    map's trainable coefficient and adds the map's trainable bias (2 parameters per map).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H/2, W/2)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels <= 0:
            raise ValueError(f"Subsampling: channels must be positive, got {channels}")
        self.channels = channels
        self.weight = Parameter(np.empty((channels,), np.float32))
        self.bias = Parameter(np.empty((channels,), np.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _paper_uniform_(self.weight, 4)
        _paper_uniform_(self.bias, 4)

    def forward(self, input):
        if input.ndim != 4 or input.shape[1] != self.channels:
            raise ValueError(
                f"expected input of shape (N, {self.channels}, H, W), got {input.shape}")
        window_sum = F.avg_pool2d(input, 2) * 4.0
        c = self.channels
        return window_sum * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)

    def connections(self, input_shape, output_shape) -> int:
        # four inputs and a bias per unit, as the paper counts them
        return 5 * math.prod(output_shape[1:]) * output_shape[0]

    def extra_repr(self) -> str:
        return f"{self.channels}"


class PartialConv2d(nn.Module):
    """A convolution in which output map ``j`` sees only the input maps ``table[j]``.

    Only the kernels that exist are parameters: ``weight`` holds one ``(k, k)`` kernel per
    (output map, input map) link in table order, so parameter counts are the paper's.
    """

    def __init__(self, in_channels: int, table, kernel_size: int = 5) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = len(table)
        self.kernel_size = kernel_size
        self.table = tuple(tuple(int(i) for i in row) for row in table)
        for j, row in enumerate(self.table):
            if not row or len(set(row)) != len(row) or not all(0 <= i < in_channels for i in row):
                raise ValueError(
                    f"PartialConv2d: row {j} of the table, {row}, must list distinct input "
                    f"maps in [0, {in_channels})")
        links = sum(len(row) for row in self.table)
        self.weight = Parameter(np.empty((links, kernel_size, kernel_size), np.float32))
        self.bias = Parameter(np.empty((self.out_channels,), np.float32))
        # where each (out, in) kernel of the dense weight comes from; `links` is an all-zero
        # kernel appended for the pairs the table leaves out
        index = np.full((self.out_channels, in_channels), links, np.int64)
        k = 0
        for j, row in enumerate(self.table):
            for i in row:
                index[j, i] = k
                k += 1
        self.register_buffer("kernel_index", from_numpy(index), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the paper's +-2.4 / fan_in, where a C3 unit's fan-in depends on its row of the table
        k2 = self.kernel_size ** 2
        fan_in = np.array([len(row) * k2 for row in self.table], np.float32)
        link_fan_in = np.repeat(fan_in, [len(row) for row in self.table])
        init.uniform_(self.weight, -1.0, 1.0)
        init.uniform_(self.bias, -1.0, 1.0)
        self.weight.data *= (2.4 / link_fan_in)[:, None, None]
        self.bias.data *= 2.4 / fan_in

    def dense_weight(self):
        """The equivalent full ``(out, in, k, k)`` weight, zero where the table has no link."""
        from .. import cat, zeros

        k = self.kernel_size
        padded = cat([self.weight, zeros(1, k, k, dtype=self.weight.dtype)], 0)
        return padded[self.kernel_index]

    def forward(self, input):
        if input.ndim != 4 or input.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape (N, {self.in_channels}, H, W), got {input.shape}")
        return F.conv2d(input, self.dense_weight(), self.bias)

    def connections(self, input_shape, output_shape) -> int:
        area = math.prod(output_shape[2:])
        per_unit = sum(len(row) * self.kernel_size ** 2 + 1 for row in self.table)
        return per_unit * area * output_shape[0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"links={self.weight.shape[0]}")


class LeNet5(nn.Module):
    """LeNet-5 as in the 1998 paper (see the module docstring for the output layer).

    Shape: input ``(N, 1, 32, 32)`` (MNIST digits padded by 2), output ``(N, 10)`` logits.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = Subsampling(6)
        self.c3 = PartialConv2d(6, C3_TABLE, 5)
        self.s4 = Subsampling(16)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)
        for layer, fan_in in ((self.c1, 25), (self.c5, 400), (self.f6, 120), (self.output, 84)):
            _paper_uniform_(layer.weight, fan_in)
            _paper_uniform_(layer.bias, fan_in)

    def features(self, x) -> dict:
        """Every layer's output for ``x``, by layer name (for the feature-map figures)."""
        out = {}
        for name in ("c1", "s2", "c3", "s4", "c5"):
            x = scaled_tanh(getattr(self, name)(x))
            out[name] = x
        x = scaled_tanh(self.f6(x.flatten(1)))
        out["f6"] = x
        out["output"] = self.output(x)
        return out

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (1, 32, 32):
            raise ValueError(
                f"expected input of shape (N, 1, 32, 32) (MNIST padded by 2 pixels), got "
                f"{x.shape}")
        x = scaled_tanh(self.c1(x))
        x = scaled_tanh(self.s2(x))
        x = scaled_tanh(self.c3(x))
        x = scaled_tanh(self.s4(x))
        x = scaled_tanh(self.c5(x))
        x = scaled_tanh(self.f6(x.flatten(1)))
        return self.output(x)


def lenet5_classic(activation: str = "tanh", pooling: str = "avg") -> nn.Sequential:
    """The LeNet-5 most code calls by that name: 28x28 input padded in C1, full C3, plain
    pooling, a linear classifier; ``activation='relu', pooling='max'`` gives the modern variant.
    """
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    pool = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[pooling]
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), act(), pool(2),
        nn.Conv2d(6, 16, 5), act(), pool(2),
        nn.Conv2d(16, 120, 5), act(), nn.Flatten(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, 10),
    )
