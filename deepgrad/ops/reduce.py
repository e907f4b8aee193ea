"""Reductions: sum, mean, var/std, max/min, logsumexp, prod, argmax/argmin."""
from __future__ import annotations

import builtins
import math
from collections import namedtuple

import numpy as np

from .. import backend
from ..autograd.function import Function
from ..tensor import Tensor, _make

values_indices = namedtuple("values_indices", ["values", "indices"])


def _axes(op: str, dim, ndim: int):
    """Normalise ``dim`` (None, int or tuple) to a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    n = builtins.max(ndim, 1)  # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    out = []
    for d in dims:
        d = int(d)
        if not -n <= d < n:
            raise IndexError(
                f"{op}: dimension out of range; expected dim in [{-n}, {n - 1}], got {d} "
                f"for a tensor with {ndim} dims")
        out.append(d % n)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dim {dims} repeats a dimension")
    return tuple(sorted(out)) if ndim else ()


def _expand_grad(grad, x_shape, axes, keepdim):
    """Give a reduced gradient back its reduced axes so it broadcasts against the input."""
    if not keepdim and axes:
        grad = grad.reshape(tuple(1 if i in axes else n for i, n in enumerate(x_shape)))
    return grad


# Below this many elements a dense copy is cheaper than building a broadcast view (NumPy
# builds one in Python, about 5 us) and keeps the next op on its fast paths.
_VIEW_MIN = 4096


def _spread(grad, shape):
    """``grad`` broadcast to ``shape``. For large shapes a read-only view: every element of the
    input gets the same gradient, so nothing needs writing; the next backward reads the view
    (a multiply reads it from cache) and the engine copies a view before it becomes a leaf's
    ``.grad``. Writing out a full array took 1.2 of conv_layer's 53 ms."""
    if math.prod(shape) >= _VIEW_MIN:
        return np.broadcast_to(grad, shape)
    out = np.empty(shape, grad.dtype)
    np.copyto(out, grad)
    return out


class Sum(Function):
    saves_inputs = False

    def forward(self, x, axes, keepdim):
        self.shape = x.shape
        self.axes = axes
        self.keepdim = keepdim
        # ufunc.reduce directly: np.sum makes the same call through a Python layer (1.6 us)
        return np.add.reduce(x, axis=axes, keepdims=keepdim)

    def backward(self, grad):
        g = _expand_grad(grad, self.shape, self.axes, self.keepdim)
        return _spread(g, self.shape), None, None


def sum(input, dim=None, keepdim=False, dtype=None):
    """Sum over ``dim`` (all dims if None). Integer and bool tensors sum to int64."""
    if dtype is not None:
        input = input.to(dtype)
    elif input.data.dtype.kind in "iub":
        return _make(np.add.reduce(input.data, axis=_axes("sum", dim, input.ndim),
                                   keepdims=keepdim, dtype=np.int64))
    return Sum.apply(input, _axes("sum", dim, input.data.ndim), keepdim)


class Mean(Function):
    saves_inputs = False

    def forward(self, x, axes, keepdim):
        self.shape = x.shape
        self.axes = axes
        self.keepdim = keepdim
        self.count = count = math.prod([x.shape[a] for a in axes])
        if not count or x.dtype == np.float16:
            return np.mean(x, axis=axes, keepdims=keepdim)
        # np.mean's own steps (numpy/_core/_methods.py: _mean) without its Python layers: the
        # sum, then the division by the count as an intp, so the same bits
        s = np.add.reduce(x, axis=axes, keepdims=keepdim)
        if type(s) is np.ndarray:
            return np.true_divide(s, np.intp(count), out=s, casting="unsafe")
        return s.dtype.type(s / np.intp(count))

    def backward(self, grad):
        g = _expand_grad(grad, self.shape, self.axes, self.keepdim)
        return _spread(g / self.count, self.shape), None, None


def mean(input, dim=None, keepdim=False, dtype=None):
    """Mean over ``dim`` (all dims if None)."""
    if dtype is not None:
        input = input.to(dtype)
    if input.data.dtype.kind not in "fc":
        raise TypeError(
            f"mean: expected a floating-point tensor, got {input.dtype}; convert with .float()")
    return Mean.apply(input, _axes("mean", dim, input.data.ndim), keepdim)


class Var(Function):
    def forward(self, x, axes, correction, keepdim, take_sqrt):
        self.axes = axes
        self.keepdim = keepdim
        n = math.prod([x.shape[a] for a in axes])
        self.centered = x - np.mean(x, axis=axes, keepdims=True)
        self.denom = builtins.max(n - correction, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.sum(self.centered * self.centered, axis=axes, keepdims=keepdim)
            out = out / x.dtype.type(self.denom) if self.denom else out * np.nan
            if take_sqrt:
                out = np.sqrt(out)
        self.take_sqrt = take_sqrt
        self.out = out
        return out

    def backward(self, grad):
        g = _expand_grad(grad, self.centered.shape, self.axes, self.keepdim)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.take_sqrt:
                s = _expand_grad(self.out, self.centered.shape, self.axes, self.keepdim)
                gx = g * self.centered / (self.denom * s)
            else:
                gx = g * self.centered * (2.0 / self.denom)
        return gx.astype(self.centered.dtype, copy=False), None, None, None, None


def _correction(op, dim, unbiased, correction):
    if isinstance(dim, bool):  # var(False) is var(unbiased=False), as in PyTorch
        dim, unbiased = None, dim
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    elif unbiased is not None:
        raise ValueError(f"{op}: pass either unbiased or correction, not both")
    return dim, correction


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` with Bessel's ``correction`` (1 by default, as in PyTorch)."""
    dim, correction = _correction("var", dim, unbiased, correction)
    return Var.apply(input, _axes("var", dim, input.data.ndim), correction, keepdim, False)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation over ``dim`` with Bessel's ``correction`` (1 by default)."""
    dim, correction = _correction("std", dim, unbiased, correction)
    return Var.apply(input, _axes("std", dim, input.data.ndim), correction, keepdim, True)


class Amax(Function):
    """Max (or min) over axes; the gradient is shared evenly among tied extremes."""

    def forward(self, x, axes, keepdim, smallest):
        self.x = x
        self.axes = axes
        self.keepdim = keepdim
        self.out = np.minimum.reduce(x, axis=axes, keepdims=True) if smallest else \
            np.maximum.reduce(x, axis=axes, keepdims=True)
        return self.out if keepdim else self.out.squeeze(axis=axes)

    def backward(self, grad):
        g = _expand_grad(grad, self.x.shape, self.axes, self.keepdim)
        hit = self.x == self.out
        count = np.sum(hit, axis=self.axes, keepdims=True)
        return (g * hit / count.astype(g.dtype)).astype(g.dtype, copy=False), None, None, None


class MaxDim(Function):
    """Max (or min) along one dim, returning values and indices; grad goes to the index."""

    def forward(self, x, axis, keepdim, smallest):
        idx = np.argmin(x, axis=axis, keepdims=True) if smallest else \
            np.argmax(x, axis=axis, keepdims=True)
        values = np.take_along_axis(x, idx, axis=axis)
        self.shape = x.shape
        self.axis = axis
        self.idx = idx
        self.dtype = x.dtype
        if not keepdim:
            values = np.squeeze(values, axis=axis)
            idx = np.squeeze(idx, axis=axis)
        self.keepdim = keepdim
        return values, idx.astype(np.int64, copy=False)

    def backward(self, grad, _grad_indices):
        if not self.keepdim:
            grad = np.expand_dims(grad, self.axis)
        gx = np.zeros(self.shape, self.dtype)
        np.put_along_axis(gx, self.idx, grad, axis=self.axis)
        return gx, None, None, None


def _max_min(op, input, dim, keepdim, smallest):
    if isinstance(dim, Tensor):  # max(a, b) is the elementwise maximum
        from .elementwise import maximum, minimum

        return (minimum if smallest else maximum)(input, dim)
    if input.data.size == 0:
        raise ValueError(f"{op}: the tensor of shape {input.shape} is empty; nothing to reduce")
    if dim is None:
        if input.data.dtype.kind not in "fc":
            return _make(np.min(input.data) if smallest else np.max(input.data))
        return Amax.apply(input, _axes(op, None, input.ndim), False, smallest)
    (axis,) = _axes(op, dim, input.data.ndim) or (0,)
    if input.data.ndim == 0:
        return values_indices(input, _make(np.zeros((), np.int64)))
    if input.data.dtype.kind not in "fc":
        arr = input.data
        idx = (np.argmin if smallest else np.argmax)(arr, axis=axis, keepdims=keepdim)
        vals = (np.min if smallest else np.max)(arr, axis=axis, keepdims=keepdim)
        return values_indices(_make(vals), _make(idx.astype(np.int64)))
    return values_indices(*MaxDim.apply(input, axis, keepdim, smallest))


def max(input, dim=None, keepdim=False):
    """Largest value; with ``dim``, a ``(values, indices)`` pair along that dim."""
    return _max_min("max", input, dim, keepdim, False)


def min(input, dim=None, keepdim=False):
    """Smallest value; with ``dim``, a ``(values, indices)`` pair along that dim."""
    return _max_min("min", input, dim, keepdim, True)


def amax(input, dim=(), keepdim=False):
    """Largest value over ``dim`` (all dims if empty); ties share the gradient."""
    return Amax.apply(input, _axes("amax", dim if dim != () else None, input.ndim), keepdim, False)


def amin(input, dim=(), keepdim=False):
    """Smallest value over ``dim`` (all dims if empty); ties share the gradient."""
    return Amax.apply(input, _axes("amin", dim if dim != () else None, input.ndim), keepdim, True)


def argmax(input, dim=None, keepdim=False):
    """Index of the largest value (in the flattened tensor when ``dim`` is None)."""
    if dim is None:
        idx = np.asarray(np.argmax(input.data), np.int64)
        return _make(idx.reshape((1,) * input.data.ndim) if keepdim else idx)
    (axis,) = _axes("argmax", dim, input.data.ndim) or (0,)
    return _make(np.argmax(input.data, axis=axis, keepdims=keepdim).astype(np.int64))


def argmin(input, dim=None, keepdim=False):
    """Index of the smallest value (in the flattened tensor when ``dim`` is None)."""
    if dim is None:
        idx = np.asarray(np.argmin(input.data), np.int64)
        return _make(idx.reshape((1,) * input.data.ndim) if keepdim else idx)
    (axis,) = _axes("argmin", dim, input.data.ndim) or (0,)
    return _make(np.argmin(input.data, axis=axis, keepdims=keepdim).astype(np.int64))


class LogSumExp(Function):
    def forward(self, x, axes, keepdim):
        m = np.max(x, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)  # all -inf rows: keep log(0) = -inf, not nan
        with np.errstate(divide="ignore"):
            out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
        self.x = x
        self.out = out
        self.axes = axes
        self.keepdim = keepdim
        return out if keepdim else out.squeeze(axis=axes)

    def backward(self, grad):
        g = _expand_grad(grad, self.x.shape, self.axes, self.keepdim)
        return g * np.exp(self.x - self.out), None, None


def logsumexp(input, dim=None, keepdim=False):
    """``log(sum(exp(x)))`` over ``dim``, computed without overflow."""
    if input.data.dtype.kind != "f":
        input = input.to(backend.get_default_dtype())
    return LogSumExp.apply(input, _axes("logsumexp", dim, input.data.ndim), keepdim)


class Prod(Function):
    def forward(self, x, axes, keepdim):
        self.x = x
        self.axes = axes
        self.keepdim = keepdim
        return np.prod(x, axis=axes, keepdims=keepdim)

    def backward(self, grad):
        x, axes = self.x, self.axes
        g = _expand_grad(grad, x.shape, axes, self.keepdim)
        # product of all the other elements, from exclusive cumulative products on both sides,
        # so zeros in the input need no division
        rest = [a for a in range(x.ndim) if a not in axes]
        perm = rest + list(axes)
        xt = np.transpose(x, perm)
        lead = xt.shape[:len(rest)]
        flat = xt.reshape(lead + (-1,))
        ones = np.ones(lead + (1,), x.dtype)
        left = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        right = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
        others = (left * right).reshape(xt.shape)
        others = np.transpose(others, np.argsort(perm))
        return g * others, None, None


def prod(input, dim=None, keepdim=False, dtype=None):
    """Product over ``dim`` (all dims if None)."""
    if dtype is not None:
        input = input.to(dtype)
    if dim is not None and not isinstance(dim, (int, np.integer)):
        raise TypeError(f"prod: dim must be an int or None, got {dim!r} (as in PyTorch)")
    return Prod.apply(input, _axes("prod", dim, input.data.ndim), keepdim)


def all(input, dim=None, keepdim=False):
    axes = None if dim is None else _axes("all", dim, input.data.ndim)
    return _make(np.all(input.data, axis=axes, keepdims=keepdim))


def any(input, dim=None, keepdim=False):
    axes = None if dim is None else _axes("any", dim, input.data.ndim)
    return _make(np.any(input.data, axis=axes, keepdims=keepdim))
