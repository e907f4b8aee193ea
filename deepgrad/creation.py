"""Functions that make tensors: from data, filled, ranges, and random."""
from __future__ import annotations

import numpy as np

from . import backend
from .ops.shape import _size_args
from .random import _generator
from .tensor import Tensor, _as_array, _make


def _finish(arr: np.ndarray, requires_grad: bool) -> Tensor:
    t = _make(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _float_dtype(dtype):
    dt = backend.get_default_dtype() if dtype is None else np.dtype(dtype)
    return dt


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (Python floats become float32, ints int64)."""
    arr = _as_array(data, dtype)
    if isinstance(data, (np.ndarray, Tensor)) or arr is data:
        arr = arr.copy()
    return _finish(arr, requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with an ndarray or tensor when it can."""
    if isinstance(data, Tensor) and (dtype is None or np.dtype(dtype) == data.dtype):
        return data
    return _make(_as_array(data, dtype))


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``ndarray`` (same dtype)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy: expected an ndarray, got {type(ndarray).__name__}")
    return _make(ndarray)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _finish(np.zeros(_size_args("zeros", size), _float_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _finish(np.ones(_size_args("ones", size), _float_dtype(dtype)), requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _finish(np.empty(_size_args("empty", size), _float_dtype(dtype)), requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = _as_array(fill_value).dtype
    return _finish(np.full(_size_args("full", (size,)), fill_value, np.dtype(dtype)),
                   requires_grad)


def _like(input: Tensor, dtype):
    return input.shape, (input.dtype if dtype is None else np.dtype(dtype))


def zeros_like(input, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return _finish(np.zeros(shape, dt), requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return _finish(np.ones(shape, dt), requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return _finish(np.empty(shape, dt), requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return _finish(np.full(shape, fill_value, dt), requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False):
    """Values from ``start`` up to (not including) ``end``; int64 for integer arguments."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if is_int else backend.get_default_dtype()
    dtype = np.dtype(dtype)
    # count with the arguments' own precision, then cast, as PyTorch does
    n = max(int(np.ceil((end - start) / step)), 0)
    arr = (start + step * np.arange(n, dtype=np.float64 if dtype.kind == "f" else np.int64))
    return _finish(arr.astype(dtype), requires_grad)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False):
    if steps < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    return _finish(np.linspace(start, end, steps).astype(_float_dtype(dtype)), requires_grad)


def logspace(start, end, steps: int, base: float = 10.0, dtype=None, requires_grad=False):
    return _finish(np.logspace(start, end, steps, base=base).astype(_float_dtype(dtype)),
                   requires_grad)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False):
    return _finish(np.eye(n, m, dtype=_float_dtype(dtype)), requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False):
    """Uniform samples in [0, 1)."""
    dt = _float_dtype(dtype)
    arr = _generator(generator).random(_size_args("rand", size), dtype=dt)
    return _finish(arr, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False):
    """Standard normal samples."""
    dt = _float_dtype(dtype)
    arr = _generator(generator).standard_normal(_size_args("randn", size), dtype=dt)
    return _finish(arr, requires_grad)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None,
            requires_grad: bool = False):
    """Integers in ``[low, high)``; ``randint(high, size)`` starts at 0, as in PyTorch."""
    if size is None:
        low, high, size = 0, low, high
    elif high is None:
        raise TypeError("randint: expected randint(high, size) or randint(low, high, size)")
    if size is None:
        raise TypeError("randint: size is required")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    arr = _generator(generator).integers(low, high, _size_args("randint", (size,)))
    return _finish(arr.astype(np.int64 if dtype is None else dtype), requires_grad)


def randperm(n: int, generator=None, dtype=None, device=None) -> Tensor:
    return _make(_generator(generator).permutation(n).astype(np.int64 if dtype is None else dtype))


def normal(mean=0.0, std=1.0, size=None, generator=None) -> Tensor:
    m = mean.data if isinstance(mean, Tensor) else mean
    s = std.data if isinstance(std, Tensor) else std
    shape = _size_args("normal", (size,)) if size is not None else np.broadcast(m, s).shape
    dt = mean.dtype if isinstance(mean, Tensor) else backend.get_default_dtype()
    return _make(_generator(generator).normal(m, s, shape).astype(dt))


def bernoulli(input, p=None, generator=None) -> Tensor:
    probs = input.data if p is None else np.full(input.shape, p)
    return _make((_generator(generator).random(input.shape) < probs).astype(input.dtype))


def rand_like(input, dtype=None, generator=None, requires_grad: bool = False) -> Tensor:
    return rand(*input.shape, dtype=input.dtype if dtype is None else dtype, generator=generator,
                requires_grad=requires_grad)


def randn_like(input, dtype=None, generator=None, requires_grad: bool = False) -> Tensor:
    return randn(*input.shape, dtype=input.dtype if dtype is None else dtype, generator=generator,
                 requires_grad=requires_grad)


def randint_like(input, low, high=None, dtype=None, generator=None) -> Tensor:
    if high is None:
        low, high = 0, low
    return randint(low, high, input.shape, dtype=input.dtype if dtype is None else dtype, generator=generator)


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:
    return input.numel()
