"""Array data on 64-byte boundaries: a NumPy memory handler from the native library.

NumPy allocates array data with ``malloc``, which aligns to 16 bytes, so most of a model's
arrays start part-way into a cache line. MKL's GEMM is slower on such operands: 13% on the
(128 x 784) @ (784 x 512) product of the ``mlp_mnist`` step and 7% on its (128 x 512) @
(512 x 512), measured alternating aligned and unaligned operands in one process. The training
step as a whole took 0.96-1.01 of its time with every array aligned (in-process A/B, eight
runs, median 0.974). PyTorch's CPU allocator aligns every tensor to 64 bytes.

NumPy lets a program choose where array data comes from (NEP 49, "memory handlers"). When the
native kernels load, :func:`install` makes ``memory.c``'s handler the current one, so arrays
created from then on start on a cache line. MKL's results do not depend on the alignment
(tested), so this changes speed, not values. What the handler changes, and what it leaves:

- NumPy keeps the handler in a context variable: it applies to arrays created in the thread
  that installed it (the main thread) and in code that copies its context (asyncio tasks).
  Other threads keep NumPy's default. Each array remembers its handler, so freeing is always
  done by the allocator that made it.
- A handler installed by someone else is left in place: :func:`install` only replaces
  NumPy's default.
- ``DEEPGRAD_ALIGNED_MEMORY=0`` turns it off for a process.

Parameters are created when a module is built, before the first op loads the kernels, so
building an ``nn.Module`` loads them (:func:`deepgrad._native.lib`) and with them this handler.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Any

import numpy as np

__all__ = ["install", "status", "NAME", "ALIGN"]

NAME = "deepgrad_aligned_64"  # memory.c: handler.name
ALIGN = 64
_SET_HANDLER = 304  # PyDataMem_SetHandler's slot in NumPy's C-API table (numpy >= 1.22)
_CAPSULE_NAME = b"mem_handler"  # kept alive here: the capsule holds a pointer to these bytes

_state: dict[str, Any] = {"capsule": None,
                          "reason": "not installed (the native kernels have not loaded)"}
_lock = threading.Lock()


def _multiarray():
    try:
        from numpy._core import _multiarray_umath as m  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import _multiarray_umath as m  # type: ignore[no-redef]
    return m


def _current_name() -> str | None:
    get = getattr(_multiarray(), "get_handler_name", None)
    return get() if get is not None else None


def install(cdll: ctypes.CDLL) -> bool:
    """Make the aligned handler NumPy's current one in this thread's context, unless turned off
    or someone else's handler is current. True if it is current afterwards."""
    with _lock:
        return _install(cdll)


def _install(cdll: ctypes.CDLL) -> bool:
    if os.environ.get("DEEPGRAD_ALIGNED_MEMORY", "1").strip() == "0":
        _state["reason"] = "off (DEEPGRAD_ALIGNED_MEMORY=0)"
        return False
    current = _current_name()
    if current == NAME:
        return True
    if current is None:
        _state["reason"] = f"not available: NumPy {np.__version__} has no memory handlers"
        return False
    if current != "default_allocator":
        _state["reason"] = f"not installed: NumPy's handler is {current!r}, set by someone else"
        return False
    m = _multiarray()
    api = getattr(m, "_ARRAY_API", None)
    # prototypes of our own: setting argtypes on ctypes.pythonapi's shared function objects
    # would change them for every other user in the process
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    new_capsule = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.c_void_p)(("PyCapsule_New", ctypes.pythonapi))
    try:
        table = get_pointer(api, None)
        setter_address = ctypes.cast(table, ctypes.POINTER(ctypes.c_void_p))[_SET_HANDLER]
        handler_fn = cdll.aligned_handler
    except (AttributeError, TypeError, ValueError) as e:
        _state["reason"] = f"not installed: {e}"
        return False
    handler_fn.restype = ctypes.c_void_p
    handler_fn.argtypes = [ctypes.c_int]
    # NumPy's small-block cache, like ours, counts on the GIL to serialise allocations
    import sysconfig  # here, not at import: only this needs it

    has_gil = not sysconfig.get_config_var("Py_GIL_DISABLED")
    capsule = _state["capsule"] or new_capsule(handler_fn(int(has_gil)), _CAPSULE_NAME, None)
    setter = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(setter_address)
    previous = setter(capsule)
    if _current_name() != NAME or not _self_test():
        setter(previous)
        _state["reason"] = "not installed: the handler failed its self-test"
        return False
    _state["capsule"] = capsule
    _state["reason"] = (f"on: new arrays start on {ALIGN}-byte boundaries "
                        f"(in the thread {threading.current_thread().name!r})")
    return True


def _self_test() -> bool:
    """Arrays made through the handler: aligned, zeroed where asked, resizable, readable."""
    try:
        for n in (0, 1, 3, 17, 255, 256, 257, 4096, 1 << 20):
            a = np.empty(n, np.float32)
            if a.ctypes.data % ALIGN:
                return False
            a[...] = 1.5
            z = np.zeros(n, np.float64)
            if z.ctypes.data % ALIGN or z.any():
                return False
            b = np.arange(n, dtype=np.int64)
            b.resize(2 * n + 5, refcheck=False)
            if b.ctypes.data % ALIGN or not np.array_equal(b[:n], np.arange(n)) \
                    or b[n:].any():
                return False
    except Exception:
        return False
    return True


def not_yet(thread: str) -> None:
    """Record that the kernels loaded in another thread than the main one."""
    _state["reason"] = (f"not installed yet: the kernels loaded in thread {thread!r}; the main "
                        "thread installs it when it next builds a module")


def status() -> str:
    """One line: whether new arrays are aligned by deepgrad's handler, and why (or why not)."""
    return f"aligned memory: {_state['reason']}"
