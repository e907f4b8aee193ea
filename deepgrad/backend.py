"""Array backend and dtype helpers.

Op math is written against ``xp``, the array module of its inputs. Today that is always NumPy;
the indirection keeps the door open for CuPy without touching the ops. Nothing here runs at
import time beyond defining names.
"""
from __future__ import annotations

import math
import sys
import threading

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

_default_float = [float32]


def get_default_dtype() -> np.dtype:
    """The dtype given to tensors made from Python floats (float32 unless changed)."""
    return _default_float[0]


def set_default_dtype(dtype) -> None:
    """Set the dtype of tensors made from Python floats; float32 or float64."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dt}")
    _default_float[0] = dt


def get_array_module(*arrays):
    """Return the array module (``numpy`` or ``cupy``) that owns ``arrays``."""
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy  # type: ignore[import-not-found]  # optional, imported only when its arrays appear

            return cupy
    return np


def is_floating(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """Type promotion as PyTorch does it for two tensors.

    NumPy promotes int64 with float32 to float64; PyTorch keeps the float type of the float
    operand, which is what keeps float32 models in float32.
    """
    if a == b:
        return a
    ka, kb = a.kind, b.kind
    fa, fb = ka == "f", kb == "f"
    if fa and not fb:
        return a
    if fb and not fa:
        return b
    return np.promote_types(a, b)


def dtype_name(dtype) -> str:
    return "deepgrad." + np.dtype(dtype).name


# -- reusable arrays -----------------------------------------------------------------------


class Workspace:
    """Recycles large arrays across calls, keyed by (shape, dtype).

    First touching a fresh array of megabytes costs a page fault per 4 KiB page (the kernel
    zeroes each page), and the C allocator hands large blocks back to the OS when they are
    freed, so an op that allocates its output anew on every training step can spend more time
    faulting than computing. An array handed out here is reused only once nothing but the
    workspace refers to it: every view of it, every Tensor wrapping it, a saved array on a graph
    node, a ``.grad`` holds a reference, so the reference count says when its lifetime is over.
    That makes it safe for arrays returned to the caller too. Arrays are plain ``np.empty``
    results (``base is None``), so the engine may adopt them as ``.grad`` without a copy.

    At most ``max_bytes`` are kept; beyond that, free arrays are dropped oldest first, and if
    that is not enough the array comes from the allocator as usual.
    """

    min_bytes = 1 << 17  # smaller arrays come from the allocator's heap, without page faults

    def __init__(self, max_bytes: int = 1 << 28) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.arrays: dict = {}  # (shape, dtype) -> list of arrays, oldest first
        self.lock = threading.Lock()
        self.free_refs: int | None = None
        if hasattr(sys, "getrefcount"):
            # calibrate: the count that take() sees for an array nobody else holds
            probe = [np.empty(1, np.uint8)]
            for a in probe:
                self.free_refs = sys.getrefcount(a)

    def empty(self, shape: tuple, dtype, align: int = 0) -> np.ndarray:
        """An uninitialised array; with ``align``, a view starting on an ``align``-byte
        boundary of a reusable byte buffer (NumPy aligns to 16 bytes only; elementwise loops
        over operands that straddle cache lines can run much slower)."""
        if not isinstance(dtype, np.dtype):
            dtype = np.dtype(dtype)
        n = dtype.itemsize * math.prod(shape)
        if not align and n < self.min_bytes:  # the common case for small models: no lookup
            return np.empty(shape, dtype)
        shape = tuple(shape)
        if align:
            raw = self._take((n + align,), np.dtype(np.uint8), n + align)
            off = -raw.ctypes.data % align
            return raw[off:off + n].view(dtype).reshape(shape)
        return self._take(shape, dtype, n)

    def _take(self, shape: tuple, dtype: np.dtype, n: int) -> np.ndarray:
        if self.free_refs is None or n < self.min_bytes:
            return np.empty(shape, dtype)
        key = (shape, dtype)
        free_refs = self.free_refs
        with self.lock:
            stack = self.arrays.get(key)
            if stack is not None:
                for a in stack:
                    if sys.getrefcount(a) <= free_refs:
                        return a
            a = np.empty(shape, dtype)
            if self.nbytes + n > self.max_bytes and not self._make_room(n):
                return a
            if stack is None:
                stack = self.arrays[key] = []
            stack.append(a)
            self.nbytes += n
            return a

    def _make_room(self, n: int) -> bool:
        free_refs = self.free_refs
        if free_refs is None:
            return False
        for key in list(self.arrays):
            stack = self.arrays[key]
            keep = []
            for a in stack:
                if self.nbytes + n > self.max_bytes and sys.getrefcount(a) <= free_refs:
                    self.nbytes -= a.nbytes
                else:
                    keep.append(a)
            if keep:
                self.arrays[key] = keep
            else:
                del self.arrays[key]
            if self.nbytes + n <= self.max_bytes:
                return True
        return False

    def clear(self) -> None:
        with self.lock:
            self.arrays.clear()
            self.nbytes = 0


workspace = Workspace()


def empty(shape: tuple, dtype, xp=np, align: int = 0):
    """An uninitialised array that may reuse the memory of an earlier one of the same shape
    and dtype that is no longer referenced anywhere (see ``Workspace``); ``align`` (bytes,
    e.g. 64) returns an aligned view instead of a plain array."""
    if xp is not np:
        return xp.empty(shape, dtype)
    return workspace.empty(shape, dtype, align)
