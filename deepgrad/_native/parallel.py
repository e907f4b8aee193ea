"""The native kernels' parallel loop: oneTBB's, on the threads MKL's TBB layer already runs.

Most of a small model's step is MKL's products, which run on both cores. Between them come
elementwise kernels (an optimizer's update, a layer's bias and ReLU, the LSTM's gate math) that
ran on one core while MKL's second thread waited. Threads of deepgrad's own lost: they compete
with MKL's waiting workers for the same cores (benchmarks/README.md, "Measured and not kept").
TBB's workers are the ones MKL uses, so handing them work costs no extra thread: an SGD update
of 670,000 weights took 0.27 ms in two parts against 0.45 ms in one, and 0.28 ms less beside an
mlp_mnist step's products (medians of 60 alternating blocks).

``parallel.cpp`` is a TBB ``parallel_for`` behind a C function. It is compiled with the C++
compiler (``$CXX``, else ``c++``, ``g++`` or ``clang++``) against the TBB headers of the
``tbb-devel`` package (part of ``deepgrad[mkl]``), into the native kernels' cache, and linked to
the ``libtbb`` MKL loaded. It is attached once both the kernels and MKL with its TBB layer are
loaded (:func:`kernels_loaded`, :func:`tbb_loaded`); kernels.c's ``set_parallel`` then splits
every kernel of at least ``PARALLEL_MIN`` elements into :func:`deepgrad._native.threads` parts.
Each element gets the same operations in whichever part it falls, so the results are the same
bits with or without the loop (tests/test_parallel.py).

Without MKL's TBB layer (no MKL, one thread, another layer), without headers or a C++
compiler, or with ``DEEPGRAD_PARALLEL=0``, the kernels run whole on the calling thread, as
before; :func:`status` says which and why.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

__all__ = ["status", "parts", "split", "min_elements"]

_SOURCE = Path(__file__).with_name("parallel.cpp")
_FLAGS = ["-O2", "-std=c++17", "-fPIC", "-shared"]
_HEADER = os.path.join("oneapi", "tbb", "parallel_for.h")

_lock = threading.Lock()
_state: dict[str, Any] = {"kernels": None, "tbb": None, "loop": None, "parts": 1,
                          "reason": "not attached: MKL's TBB layer not loaded yet",
                          "on": os.environ.get("DEEPGRAD_PARALLEL", "1") != "0"}


def kernels_loaded(cdll: ctypes.CDLL) -> None:
    """The native kernels are loaded (deepgrad/_native/__init__.py)."""
    with _lock:
        _state["kernels"] = cdll
        _attach()


def tbb_loaded(folder: str) -> None:
    """MKL runs on TBB's threads, with ``libtbb.so.12`` in ``folder`` (mkl.py)."""
    with _lock:
        _state["tbb"] = folder
        _attach()


def _attach() -> None:
    cdll, folder = _state["kernels"], _state["tbb"]
    if cdll is None or folder is None or _state["loop"] is not None:
        return
    if not _state["on"]:
        _state["reason"] = "off (DEEPGRAD_PARALLEL=0)"
        return
    try:
        lib = _library(folder)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _state["reason"] = f"unavailable, kernels run on one thread: {e}"
        return
    from . import threads

    lib.dg_parallel_threads.restype = ctypes.c_int
    n = max(1, min(threads(), lib.dg_parallel_threads()))
    _state["loop"] = ctypes.cast(lib.dg_parallel_for, ctypes.c_void_p).value
    _state["lib"] = lib
    _set(_state["loop"], n)
    _state["reason"] = f"TBB, {n} parts from {min_elements()} elements ({lib._name})"


def min_elements() -> int:
    """The fewest elements a kernel splits into parts (kernels.c: PARALLEL_MIN)."""
    fn = _state["kernels"].parallel_min
    fn.restype = ctypes.c_long
    return int(fn())


def _set(loop: int | None, n: int) -> None:
    _state["parts"] = n
    fn = _state["kernels"].set_parallel
    fn.argtypes = [ctypes.c_void_p, ctypes.c_long]
    fn.restype = None
    fn(loop, n)


def _headers(folder: str) -> str:
    """The include folder holding TBB's headers: the environment's, or beside ``folder``."""
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, os.path.dirname(folder)]):
        include = os.path.join(prefix, "include")
        if os.path.isfile(os.path.join(include, _HEADER)):
            return include
    raise RuntimeError("no TBB headers (oneapi/tbb/parallel_for.h) in the environment's "
                       "include folder (pip install tbb-devel, or deepgrad[mkl])")


def _compiler() -> str:
    cxx = os.environ.get("CXX")
    if cxx:
        found = shutil.which(cxx) or (cxx if os.path.isfile(cxx) else None)
        if found:
            return found
        raise RuntimeError(f"CXX={cxx} not found")
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no C++ compiler found (set CXX, or install g++/clang++)")


def _library(folder: str) -> ctypes.CDLL:
    """parallel.cpp built (once per sources, compiler, headers and libtbb) and loaded."""
    from . import _cache_dir

    include = _headers(folder)
    cxx = _compiler()
    tbb = os.path.realpath(os.path.join(folder, "libtbb.so.12"))
    version = Path(include, "oneapi", "tbb", "version.h")
    key = hashlib.sha256(b"\0".join([
        _SOURCE.read_bytes(), cxx.encode(), " ".join(_FLAGS).encode(), include.encode(),
        version.read_bytes() if version.is_file() else b"", tbb.encode()]))
    path = _cache_dir() / f"parallel-{key.hexdigest()[:16]}.so"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
        cmd = [cxx, *_FLAGS, "-I", include, "-o", tmp, str(_SOURCE), "-L", folder,
               "-l:libtbb.so.12", f"-Wl,-rpath,{folder}"]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if run.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}: exit {run.returncode}: "
                                   f"{run.stderr.strip()[:500]}")
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return ctypes.CDLL(str(path))


def _after_fork() -> None:
    # TBB's workers do not exist in a forked child: its kernels run whole again
    if _state["loop"] is not None:
        _state["loop"] = None
        _set(None, 1)
        _state["reason"] = "off in this forked child (TBB's workers stay with the parent)"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def status() -> str:
    """One line: whether the kernels split their work, and why (or why not)."""
    return f"parallel kernels: {_state['reason']}"


def parts() -> int:
    """How many parts a large kernel makes (1: it runs whole on the calling thread)."""
    return _state["parts"]


@contextlib.contextmanager
def split(n: int, loop: bool = True) -> Iterator[None]:
    """Inside the block, large kernels make ``n`` parts, run by the parallel loop (``loop``, if
    attached) or one after another on the calling thread: for tests of the part boundaries,
    which must not change a bit."""
    from . import lib

    if lib() is None:
        raise RuntimeError("the native kernels are not loaded")
    with _lock:
        before = (_state["loop"], _state["parts"])
        _set(_state["loop"] if loop else None, n)
    try:
        yield
    finally:
        with _lock:
            _set(*before)
