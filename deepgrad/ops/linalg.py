"""Matrix products."""
from __future__ import annotations

import numpy as np

from .. import _native
from .._native import parallel
from .._native.mkl import matmul as gemm
from .._native.mkl import native_gemm
from ..autograd.function import Function
from ..tensor import Tensor
from . import elementwise, fused
from .elementwise import _operands


class MatMul(Function):
    def forward(self, a, b):
        self.a = a
        self.b = b
        return gemm(a, b)

    def backward(self, grad):
        a, b = self.a, self.b
        na, nb = self.needs_input_grad
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:  # dot product: grad is 0-d
            ga = grad * b if na else None
            gb = grad * a if nb else None
        elif a.ndim == 1:  # (k) @ (..., k, n) -> (..., n)
            if na:
                ga = (grad[..., None, :] @ b.swapaxes(-1, -2))[..., 0, :]
            if nb:
                gb = a[:, None] * grad[..., None, :]
        elif b.ndim == 1:  # (..., m, k) @ (k) -> (..., m)
            if na:
                ga = grad[..., :, None] * b
            if nb:
                gb = (a.swapaxes(-1, -2) @ grad[..., :, None])[..., 0]
        else:
            # batch dims that were broadcast are summed away by the engine
            if na:
                ga = gemm(grad, b.swapaxes(-1, -2))
            if nb:
                gb = gemm(a.swapaxes(-1, -2), grad)
        return ga, gb


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch semantics: 1-d operands, batched broadcasting."""
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise TypeError(
            f"matmul: both operands must be tensors, got {type(input).__name__} and "
            f"{type(other).__name__}")
    sa, sb = input.data.shape, other.data.shape
    if not sa or not sb:
        raise ValueError(f"matmul: both operands need at least 1 dim; a.shape={sa}, b.shape={sb}")
    if sa[-1] != sb[-2 if len(sb) > 1 else 0]:
        raise ValueError(f"matmul: inner dimensions differ; a.shape={sa}, b.shape={sb}")
    input, other = _operands("matmul", input, other)
    try:
        return MatMul.apply(input, other)
    except ValueError:
        raise ValueError(
            f"matmul: batch dims do not broadcast; a.shape={sa}, b.shape={sb}") from None


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    if input.data.ndim != 2 or mat2.data.ndim != 2:
        raise ValueError(f"mm: expects 2-d tensors; a.shape={input.shape}, b.shape={mat2.shape}")
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    if input.data.ndim != 3 or mat2.data.ndim != 3 or input.shape[0] != mat2.shape[0]:
        raise ValueError(
            f"bmm: expects 3-d tensors with the same batch size; a.shape={input.shape}, "
            f"b.shape={mat2.shape}")
    return matmul(input, mat2)


def dot(input: Tensor, other: Tensor) -> Tensor:
    if input.data.ndim != 1 or other.data.ndim != 1:
        raise ValueError(f"dot: expects 1-d tensors; a.shape={input.shape}, b.shape={other.shape}")
    return matmul(input, other)


class Linear(Function):
    """``y = x @ w.T + b`` as one node: one GEMM forward, two GEMMs and a sum backward.

    The bias is added after the product, in place: a layer fused with the activation after it
    (ops/fused.py) adds it in the activation's pass instead, with the same bits. (Writing the
    bias rows first for the GEMM to add onto cost a pass of its own: on mlp_mnist's 1000-row
    inference batches, product, bias and ReLU took 3.86/2.57 ms per layer that way against
    3.76/2.48 ms with the bias in the ReLU's pass, medians of 60 alternating blocks; the
    whole inference step 0.95 and mlp_mnist's training step 0.97 of their time, in-process.)"""

    def forward(self, x, w, b):
        if x.size * w.shape[0] >= _NARROW_MIN_MACS:  # the check forward_in_parts starts with
            y = self.forward_in_parts(False, x, w, b)
            if y is not None:
                return y
        y, b = self.forward_unbiased(x, w, b)
        # the add the fused activations make too (elementwise.ACTIVATIONS), so their bits agree
        return y if b is None else elementwise._add_rows(y, b)

    def forward_in_parts(self, relu: bool, x, w, b):
        """``x @ w.T + b`` (then ReLU if ``relu``) by the kernels that fuse the epilogue: a
        narrow layer's own tiles (kernels.c: linear_narrow), else row parts, each part's
        product and epilogue on one thread (linear_rows); or None where neither applies (then
        the product goes whole to the GEMM, the epilogue after it). The layer alone and fused
        with any activation take the same route, so their bits agree."""
        macs = x.size * w.shape[0]
        if x.ndim < 2 or macs < _NARROW_MIN_MACS:
            return None
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
        y = _narrow(x2, w, b, relu)
        if y is None and macs >= _ROWS_MIN_MACS:
            y = _in_row_parts(x2, w, b, relu)
        if y is None:
            return None
        self.x = x
        self.w = w
        return y.reshape(x.shape[:-1] + (w.shape[0],)) if x.ndim > 2 else y

    def forward_unbiased(self, x, w, b):
        """``(x @ w.T, b)``: the product, and the bias still to add."""
        self.x = x
        self.w = w
        # one GEMM over all leading dims: matmul on a 3-d array runs one small GEMM per row
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
        y = gemm(x2, w.T)
        return (y.reshape(x.shape[:-1] + (w.shape[0],)) if x.ndim > 2 else y), b

    def backward(self, grad):
        nx, nw, nb = self.needs_input_grad
        x, w = self.x, self.w
        g2 = grad.reshape(-1, grad.shape[-1])
        gx = gemm(g2, w).reshape(x.shape) if nx else None
        gw = gb = None
        if nw:
            gw = gemm(g2.T, x.reshape(-1, x.shape[-1]))
        if nb:
            gb = elementwise._sum_rows(g2)
        return gx, gw, gb


# A product of at least this many multiply-adds runs in row parts where the native kernels split
# their work (parallel.py); below it, handing a part to another thread costs more than it saves.
# LeNet-5's first fully connected layer (64 x 400 by 400 x 120, 3.1 million) lost in parts: the
# demo's training ran at 9,400 samples/s with it in parts against 10,700 without (three
# alternating runs each); mlp_mnist_infer's products (1000 rows: 400 and 260 million) and
# char_lstm's head (34 million) gain.
_ROWS_MIN_MACS = 1 << 24
# ... and at least this many rows a part. mlp_mnist's batch of 128 (64 rows a part) trained at
# 0.91-0.97 of its step time with its products whole (MKL's two threads, then the epilogue), in
# five processes of 30 alternating blocks: each part had packed all of the weight for 64 rows.
# Without a graph the two ways were even at 128 rows, and the parts ahead from 256 (0.95-0.98)
# and 512 (0.82).
_ROWS_MIN_PART_ROWS = 128


def _in_row_parts(x, w, b, relu: bool):
    """``x @ w.T + b`` (then ReLU if ``relu``) by ``linear_rows``, or None where it does not
    apply: no parallel loop, no MKL, or operands it cannot take (the caller has checked the
    size against ``_ROWS_MIN_MACS``)."""
    m, k = x.shape
    n = w.shape[0]
    parts = parallel.parts()
    if parts < 2 or m < _ROWS_MIN_PART_ROWS * parts or max(m, n, k) >= 2**31:
        return None  # (MKL's LP64 dimensions are C ints)
    dt = x.dtype
    kern = _native.for_dtype(dt)
    if (kern is None or w.dtype != dt or not x.flags.c_contiguous or w.ndim != 2
            or (b is not None and (b.dtype != dt or not b.flags.c_contiguous))):
        return None
    if w.flags.c_contiguous:
        transw, ldw = 1, k
    elif w.flags.f_contiguous:
        transw, ldw = 0, n
    else:
        return None
    fn, local = native_gemm(dt)
    if fn is None:
        return None
    y = np.empty((m, n), dt)
    addr = _native.address
    if kern.linear_rows[dt](fn, local, addr(x), addr(w), ldw, transw,
                            None if b is None else addr(b), relu, addr(y), m, n, k) != 0:
        return None
    return y


# A layer with at most this many outputs (a classifier's head) and at least _NARROW_MIN_MACS
# multiply-adds runs on the narrow kernel. MKL packs x for a GEMM blocked for wide outputs: on
# mlp_mnist's head (1000 x 512 by 512 x 10) it took 465-527 us and PyTorch 497-675, the narrow
# kernel 152-167 (two threads, medians of 9 alternating blocks). On LeNet-5's head (64 x 84 by
# 84 x 10, 54,000) the call cost more than MKL's 6 us; at 32 outputs MKL was as fast.
_NARROW_MAX = 16
_NARROW_MIN_MACS = 1 << 18


def _narrow(x, w, b, relu: bool):
    """``x @ w.T + b`` (then ReLU if ``relu``) by ``linear_narrow``, or None where it does not
    apply: not float32, no such kernel in the build, too many outputs, or operands it cannot
    take (the caller has checked the size against ``_NARROW_MIN_MACS``)."""
    m, k = x.shape
    n = w.shape[0]
    dt = x.dtype
    if not 2 <= n <= _NARROW_MAX or dt != np.float32 or w.dtype != dt or w.ndim != 2:
        return None
    kern = _native.for_dtype(dt)
    if kern is None or not kern.narrow:
        return None
    size = dt.itemsize
    sx, (sn, sk) = x.strides, w.strides
    if (sx[1] != size or sx[0] % size or sx[0] < 0 or sn % size or sk % size
            or (b is not None and (b.dtype != dt or not b.flags.c_contiguous))):
        return None
    y = np.empty((m, n), dt)
    addr = _native.address
    if kern.linear_narrow[dt](addr(x), sx[0] // size, addr(w), sn // size, sk // size,
                              None if b is None else addr(b), relu, addr(y), m, n, k) != 0:
        raise MemoryError(f"linear: no memory for the packed weight of shape {w.shape}")
    return y


# Linear followed by an activation, one node each (ops/fused.py)
_LINEAR_ACTIVATED = fused.activated(Linear)


def _check_linear(input: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    sx, sw = input.data.shape, weight.data.shape
    if len(sw) != 2 or not sx or sx[-1] != sw[1]:
        raise ValueError(
            f"linear: expected input with last dim {sw[1] if len(sw) == 2 else '?'} to match "
            f"weight of shape {sw}, got input of shape {sx}")
    if bias is not None and bias.data.shape != (sw[0],):
        raise ValueError(f"linear: bias of shape {bias.shape} must be ({sw[0]},)")
    if input.data.dtype != weight.data.dtype:
        raise TypeError(
            f"linear: input dtype {input.dtype} differs from weight dtype {weight.dtype}; "
            "convert the input (x.float()) or the model (model.double())")


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``; input ``(*, in_features)``, weight ``(out, in)``."""
    _check_linear(input, weight, bias)
    return Linear.apply(input, weight, bias)


def linear_activated(input: Tensor, weight: Tensor, bias: Tensor | None,
                     activation: str) -> Tensor:
    """``activation(linear(input, weight, bias))`` as one node, ``activation`` one of
    ``elementwise.ACTIVATIONS`` (the separate ops for integer tensors)."""
    _check_linear(input, weight, bias)
    if input.data.dtype.kind != "f":
        return getattr(elementwise, activation)(Linear.apply(input, weight, bias))
    return _LINEAR_ACTIVATED[activation].apply(input, weight, bias)
