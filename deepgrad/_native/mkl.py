"""Optional GEMM through Intel MKL, the BLAS that PyTorch's CPU build uses.

NumPy's wheels bundle OpenBLAS. On the products deepgrad's models make, OpenBLAS is slower than
MKL. Examples: a batch of 128 against a 512x512 weight, or an LSTM's 1024x256 weights against
32 columns. On the Sapphire Rapids VM this was measured on (2 threads), OpenBLAS took 1.2-1.8x
MKL's time: 555 against 330 us for 128x512x512. Those GEMMs are most of an MLP's or an LSTM's
training step. So without MKL, deepgrad would lose to PyTorch on its BLAS alone, whatever its own
code did.

When the ``mkl`` package is installed (``pip install deepgrad[mkl]``), :func:`matmul` hands 2-d
float32 and float64 products to MKL's ``cblas_?gemm`` through ctypes. Otherwise it hands them to
NumPy. Tiny products always go to NumPy: there the foreign call costs more than the arithmetic.
Nothing is loaded at ``import deepgrad``. The first product large enough loads MKL, which took
0.15 s here with the files in the page cache, about 0.5 s without.

MKL sums in its own order, so its results equal NumPy's to rounding, not bit for bit. Both
libraries give the same bits on every run of one machine at one thread count (tested, with
operands at different alignments too). MKL's conditional numerical reproducibility stays at its
default, branch off: its ``AUTO`` mode made char_lstm's training step about 15% slower here
(32-35 against 37-42 ms, three process pairs).

``DEEPGRAD_BLAS=numpy`` keeps a process on NumPy; :func:`enabled` does so for a block.
``DEEPGRAD_BLAS=mkl`` makes a missing MKL an error instead of a silent fallback. MKL runs
:func:`deepgrad._native.threads` threads: the same count as NumPy's BLAS and the native kernels.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import sys
import threading
from typing import Any

import numpy as np

from . import load_once, switched

__all__ = ["matmul", "prepared", "status", "enabled", "available"]

# Products of fewer multiply-adds (m*n*k) stay with NumPy. OpenBLAS runs them on one thread (its
# threshold is 4 x 65536), so its worker threads never wake to spin beside MKL's, and NumPy's
# call costs about 3 us against about 12 us for this module's (checks, addresses, ctypes).
MIN_MACS = 4 * 65536

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_CBWR_BRANCH_OFF = 1  # MKL_CBWR_BRANCH_OFF (MKL_CBWR_AUTO is 2); see the docstring
_INT_MAX = 2**31 - 1  # the LP64 interface's dimensions are C ints
_LAYER_INTEL, _LAYER_SEQUENTIAL, _LAYER_GNU, _LAYER_TBB = 0, 1, 3, 4
_LAYER_NAMES = {_LAYER_INTEL: "Intel OpenMP", _LAYER_SEQUENTIAL: "sequential",
                _LAYER_GNU: "GNU OpenMP", _LAYER_TBB: "TBB"}

_char = ctypes.c_char
_lock = threading.Lock()
_mode = os.environ.get("DEEPGRAD_BLAS", "auto").strip().lower() or "auto"
_state: dict[str, Any] = {"gemm": None, "native": {}, "tried": False, "reason": "not loaded yet",
                          "on": _mode != "numpy"}


def _candidates() -> list[str]:
    """Where ``pip install mkl`` puts ``libmkl_rt`` (the environment's ``lib``), else the
    loader's search path (``find_library`` runs ldconfig and the C compiler: 15 ms)."""
    found = []
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix]):
        for pattern in ("libmkl_rt.so.*", "libmkl_rt.so", "libmkl_rt.*.dylib", "libmkl_rt.dylib"):
            found += sorted(glob.glob(os.path.join(prefix, "lib", pattern)), reverse=True)
    system = None if found else ctypes.util.find_library("mkl_rt")
    if system:
        found.append(system)
    return found


def _gomp_loaded() -> bool:
    """Whether GNU OpenMP is in the process (PyTorch brings it). Intel's OpenMP layer then
    computes wrong products: MKL's threading library takes ``omp_get_thread_num`` and its kin
    from the first OpenMP runtime loaded, and mixes GNU's answers with Intel's threads."""
    try:
        with open("/proc/self/maps") as f:
            return "libgomp" in f.read()
    except OSError:
        return True


def _threading_layer(folder: str, n: int) -> int | None:
    """The MKL threading layer that runs exactly ``n`` threads, or None if none can.

    - One thread: MKL's sequential layer.
    - TBB's layer ignores ``MKL_Set_Num_Threads`` and uses every CPU the process may run on,
      so it serves when ``n`` is that many. It is safe beside any OpenMP runtime, and it ran
      the LSTM benchmark's step 5-15% faster than the GNU layer beside PyTorch.
    - Intel's OpenMP layer follows ``n``, but is unsafe beside GNU OpenMP (see `_gomp_loaded`).
    - GNU's layer follows ``n`` and shares the GNU OpenMP runtime already in the process, as
      PyTorch's own MKL does.

    MKL ends the process if it cannot load the layer it was told to, so each layer's files are
    checked first."""
    has = lambda stem: bool(glob.glob(os.path.join(folder, stem + "*")))  # noqa: E731
    if n == 1:
        return _LAYER_SEQUENTIAL if has("libmkl_sequential") else None
    if has("libmkl_tbb_thread") and has("libtbb.so.12") and n >= _usable_cpus():
        _preload_tbb(folder)
        return _LAYER_TBB
    gomp = _gomp_loaded()
    if has("libmkl_intel_thread") and has("libiomp5") and not gomp:
        return _LAYER_INTEL
    if has("libmkl_gnu_thread") and gomp:
        return _LAYER_GNU
    return None


def _preload_tbb(folder: str) -> None:
    """Load TBB from beside MKL, where MKL's TBB layer would not look for it."""
    found = glob.glob(os.path.join(folder, "libtbb.so.12"))
    if found:
        ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _load() -> None:
    _state["tried"] = True
    paths = _candidates()
    if not paths:
        _state["reason"] = "MKL not found (pip install mkl, or deepgrad[mkl])"
        return
    from . import threads

    errors = []
    n = threads()
    for path in paths:
        try:
            chosen = os.environ.get("MKL_THREADING_LAYER")
            layer = None if chosen else _threading_layer(os.path.dirname(path), n)
            if chosen and chosen.strip().upper() == "TBB":
                _preload_tbb(os.path.dirname(path))
            if layer is None and not chosen:
                errors.append(f"{path}: no threading layer beside it runs {n} threads safely")
                continue
            cdll = ctypes.CDLL(path)
            cdll.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
            if layer is not None:
                cdll.MKL_Set_Threading_Layer(layer)
            cdll.MKL_CBWR_Set.argtypes = [ctypes.c_int]
            cdll.MKL_CBWR_Set(_CBWR_BRANCH_OFF)
            cdll.MKL_Set_Num_Threads.argtypes = [ctypes.c_int]
            cdll.MKL_Set_Num_Threads(n)
            table = {}
            for dt, name, scalar in ((np.dtype(np.float32), "cblas_sgemm", ctypes.c_float),
                                     (np.dtype(np.float64), "cblas_dgemm", ctypes.c_double)):
                fn = getattr(cdll, name)
                fn.argtypes = ([ctypes.c_int] * 6 + [scalar, ctypes.c_void_p, ctypes.c_int,
                               ctypes.c_void_p, ctypes.c_int, scalar, ctypes.c_void_p,
                               ctypes.c_int])
                fn.restype = None
                table[dt] = fn
        except (OSError, AttributeError) as e:
            errors.append(f"{path}: {e}")
            continue
        _state["gemm"] = table
        local = cdll.MKL_Set_Num_Threads_Local
        _state["native"] = {dt: (ctypes.cast(fn, ctypes.c_void_p).value,
                                 ctypes.cast(local, ctypes.c_void_p).value)
                            for dt, fn in table.items()}
        version = ctypes.create_string_buffer(256)
        with contextlib.suppress(AttributeError):
            cdll.MKL_Get_Version_String(version, len(version))
        name = version.value.decode(errors="replace") or "MKL"
        _state["reason"] = f"{name}, loaded {path}, {n} thread(s), " + (
            f"MKL_THREADING_LAYER={os.environ['MKL_THREADING_LAYER']}" if layer is None
            else f"{_LAYER_NAMES[layer]} layer")
        if not _self_test():
            _state["gemm"] = None
            errors.append(f"{path}: a test product differed from NumPy's")
            continue
        if layer == _LAYER_TBB or (chosen or "").strip().upper() == "TBB":
            from . import parallel

            parallel.tbb_loaded(os.path.dirname(path))
        return
    _state["reason"] = "cannot use MKL: " + "; ".join(errors)


def _self_test() -> bool:
    """Products in each orientation against NumPy, before any model trusts the library, large
    enough for MKL to split them over its threads."""
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        a = rng.standard_normal((192, 160)).astype(dt)
        b = rng.standard_normal((160, 224)).astype(dt)
        for x, y in ((a, b), (np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T)):
            got = _gemm(x, y, None)
            if got is None or not np.allclose(got, _reference(x, y), rtol=1e-4, atol=1e-4):
                return False
    return True


def _reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x @ y`` through NumPy in column blocks of fewer than ``MIN_MACS`` multiply-adds, so
    OpenBLAS runs each on one thread: a threaded call would leave its workers spinning for a
    while (about 0.1-0.3 s measured) beside MKL's, on the cores MKL is about to use."""
    cols = max(1, MIN_MACS // (x.shape[0] * x.shape[1]))
    return np.concatenate([np.matmul(x, y[:, j:j + cols]) for j in range(0, y.shape[1], cols)],
                          axis=1)


def _fail_if_required() -> None:
    if _mode == "mkl":
        raise RuntimeError(f"DEEPGRAD_BLAS=mkl, but {_state['reason']}; install it with "
                           "`pip install mkl`, or unset DEEPGRAD_BLAS to fall back to NumPy")


def _gemm_table():
    if not _state["on"]:
        return None
    load_once(_state, _lock, _load)
    if _state["gemm"] is None:
        _fail_if_required()
    return _state["gemm"]


def _operand(x: np.ndarray, rows: int, cols: int, isz: int):
    """(transpose flag, leading dimension) that describe ``x`` to row-major BLAS, or None."""
    s0, s1 = x.strides
    if s1 == isz or cols == 1:
        ld = s0 // isz if rows > 1 else cols
        if s0 % isz == 0 and ld >= cols:
            return _NO_TRANS, ld
    if s0 == isz or rows == 1:
        ld = s1 // isz if cols > 1 else rows
        if s1 % isz == 0 and ld >= rows:
            return _TRANS, ld
    return None


def _out_ld(out: np.ndarray, m: int, n: int, isz: int) -> int | None:
    """The leading dimension of a row-major output ``out`` (m, n), or None."""
    s0, s1 = out.strides
    ldc = s0 // isz if m > 1 else n
    if (s1 != isz and n > 1) or s0 % isz or ldc < n or ldc > _INT_MAX:
        return None
    return ldc


def _plan(a: np.ndarray, b: np.ndarray, out: np.ndarray | None):
    """``(trans_a, lda, trans_b, ldb, ldc)`` describing ``a @ b`` into ``out`` (a fresh
    row-major array if None) to row-major BLAS, or None when the layouts do not suit it."""
    isz = a.itemsize
    m, k = a.shape
    n = b.shape[1]
    la = _operand(a, m, k, isz)
    lb = _operand(b, k, n, isz)
    ldc = n if out is None else _out_ld(out, m, n, isz)
    if la is None or lb is None or ldc is None or max(m, n, k, la[1], lb[1]) > _INT_MAX:
        return None
    return la[0], la[1], lb[0], lb[1], ldc


def _gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None, beta: float = 0.0):
    """``a @ b`` through MKL (plus ``beta * out``), or None when the operands do not suit it."""
    plan = _plan(a, b, out)
    if plan is None or (out is not None and (np.may_share_memory(out, a)
                                             or np.may_share_memory(out, b))):
        return None
    ta, lda, tb, ldb, ldc = plan
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), a.dtype)
    if (ta == _TRANS and m >= ROWS_MIN_PART_ROWS * 2 and n >= ROWS_MIN_COLS
            and m * n * k >= ROWS_MIN_MACS and _in_row_parts(a, b, out, plan, beta)):
        return out
    _state["gemm"][a.dtype](_ROW_MAJOR, ta, tb, m, n, k, 1.0, _address(a), lda, _address(b),
                            ldb, beta, _address(out), ldc)
    return out


# A product whose left operand is stored transposed (a layer's weight gradient, g^T @ x) runs
# in row parts (kernels.c: gemm_rows) when each part gets at least ROWS_MIN_PART_ROWS rows, the
# output has at least ROWS_MIN_COLS columns and the product ROWS_MIN_MACS multiply-adds. On the
# AMD EPYC, two threads (medians of 9 alternating blocks): every such product of 512 or 2048 rows,
# 256 or 512 columns and 128 or 1024 terms took 0.84-0.96 of MKL's time on the whole; with 256
# rows (128 a part) or 64 columns, 0.95-1.04. Without the transpose the parts gained on short
# sums and lost on long ones (0.89-1.06), so those stay whole.
ROWS_MIN_PART_ROWS = 256
ROWS_MIN_COLS = 256
ROWS_MIN_MACS = 1 << 24


def _in_row_parts(a: np.ndarray, b: np.ndarray, out: np.ndarray, plan: tuple,
                  beta: float) -> bool:
    """``a @ b (+ beta * out)`` into ``out`` by ``gemm_rows``; False (nothing written) where
    the kernels or the parallel loop are not in use, or the parts would be too few rows."""
    from . import lib, parallel

    parts = parallel.parts()
    m, k = a.shape
    if parts < 2 or m < ROWS_MIN_PART_ROWS * parts:
        return False
    kern = lib()
    fn, local = _state["native"].get(a.dtype, (None, None))
    if kern is None or fn is None:
        return False
    ta, lda, tb, ldb, ldc = plan
    return kern.gemm_rows[a.dtype](fn, local, ta == _TRANS, tb == _TRANS, m, b.shape[1], k,
                                   _address(a), lda, _address(b), ldb, beta, _address(out),
                                   ldc) == 0


def _address(x: np.ndarray) -> int:
    """The address of ``x[0, 0]``: through the buffer protocol of ``x`` or of its transpose
    (the same first element) when either is contiguous, which takes half the time of
    ``x.ctypes.data``; three of those were a quarter of a small product's call."""
    try:
        return ctypes.addressof(_char.from_buffer(x))  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):
        pass
    try:
        return ctypes.addressof(_char.from_buffer(x.T))  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):
        return x.ctypes.data


def prepared(a: np.ndarray, b: np.ndarray, out: np.ndarray):
    """For a loop that repeats one product shape, as the recurrent layers' time steps do: a
    function ``run(pa, pb, pc)`` that computes ``a @ b`` into ``out`` for operands at the
    addresses given, laid out as these are (same shapes and strides), or None when MKL is not
    in use or they do not suit it. A call then costs the foreign call alone: checking
    operands and asking NumPy for addresses took about 14 of the 19 us of a small product's
    ``matmul``. The caller answers for the addresses, and for ``out`` not overlapping the
    operands."""
    if not (_suits(a, b) and a.ndim == 2 and b.ndim == 2 and out.dtype == a.dtype
            and out.shape == (a.shape[0], b.shape[1])):
        return None
    plan = _plan(a, b, out)
    if plan is None:
        return None
    fn = _state["gemm"][a.dtype]
    ta, lda, tb, ldb, ldc = plan
    m, k = a.shape
    n = b.shape[1]

    def run(pa: int, pb: int, pc: int) -> None:
        fn(_ROW_MAJOR, ta, tb, m, n, k, 1.0, pa, lda, pb, ldb, 0.0, pc, ldc)

    return run


def _suits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a @ b`` (2-d or 3-d) is one for MKL, loading it on first use."""
    # the size first: most products a small model asks for stop there
    return (type(a) is np.ndarray and type(b) is np.ndarray and 2 <= a.ndim <= 3
            and 2 <= b.ndim <= 3 and a.shape[-2] * a.shape[-1] * b.shape[-1] >= MIN_MACS
            and a.shape[-1] == b.shape[-2] and a.dtype == b.dtype
            and (a.dtype == np.float32 or a.dtype == np.float64)
            and _gemm_table() is not None)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)``, through MKL for float32/float64 matrices (2-d, or 3-d
    stacks of them, one operand possibly a single matrix) with at least ``MIN_MACS``
    multiply-adds per matrix, when MKL is available and the strides suit BLAS."""
    sa, sb = a.shape, b.shape
    if len(sa) == 2 == len(sb) and sa[0] * sa[1] * sb[1] < MIN_MACS:
        # a small model's product: straight to NumPy (the checks below cost more than it)
        return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
    if _suits(a, b):
        if a.ndim == 2 and b.ndim == 2:
            if out is None or (out.dtype == a.dtype and out.shape == (a.shape[0], b.shape[1])):
                got = _gemm(a, b, out)
                if got is not None:
                    return got
        else:
            got = _stacked(a, b, out)
            if got is not None:
                return got
    if out is None:
        return np.matmul(a, b)
    return np.matmul(a, b, out=out)


def _stacked(a: np.ndarray, b: np.ndarray, out: np.ndarray | None):
    """A stack of products, one GEMM per matrix; None (nothing written) when they do not suit.
    Every matrix of a stack has the same strides, so one plan serves them all."""
    g = a.shape[0] if a.ndim == 3 else b.shape[0]
    if (a.ndim == 3 and a.shape[0] != g) or (b.ndim == 3 and b.shape[0] != g) or g == 0:
        return None
    shape = (g, a.shape[-2], b.shape[-1])
    if out is not None and (out.dtype != a.dtype or out.shape != shape
                            or np.may_share_memory(out, a) or np.may_share_memory(out, b)):
        return None
    a0, b0 = (a[0] if a.ndim == 3 else a), (b[0] if b.ndim == 3 else b)
    plan = _plan(a0, b0, None if out is None else out[0])
    if plan is None:
        return None
    if out is None:
        out = np.empty(shape, a.dtype)
    ta, lda, tb, ldb, ldc = plan
    m, k = a0.shape
    n = b0.shape[1]
    fn = _state["gemm"][a.dtype]
    pa, pb, pc = _address(a0), _address(b0), _address(out[0])
    sa = a.strides[0] if a.ndim == 3 else 0  # a single matrix serves every product
    sb = b.strides[0] if b.ndim == 3 else 0
    for i in range(g):
        fn(_ROW_MAJOR, ta, tb, m, n, k, 1.0, pa + i * sa, lda, pb + i * sb, ldb, 0.0,
           pc + i * out.strides[0], ldc)
    return out


def native_gemm(dt: np.dtype) -> tuple:
    """``(cblas_?gemm, MKL_Set_Num_Threads_Local)`` as addresses for a native kernel that runs
    its own GEMMs inside its own threads (the Winograd convolution, kernels.c), or
    ``(None, None)`` where products do not go to MKL."""
    if _gemm_table() is None:
        return None, None
    return _state["native"].get(np.dtype(dt), (None, None))


def available() -> bool:
    """Whether products go to MKL (loading it if it has not been tried yet)."""
    return _gemm_table() is not None


def status() -> str:
    """One line: whether MKL does the GEMMs, and why (or why not)."""
    if not _state["on"]:
        return "MKL GEMM: off (DEEPGRAD_BLAS=numpy or enabled(False)), using NumPy's BLAS"
    used = "on" if _gemm_table() is not None else "unavailable, using NumPy's BLAS"
    return f"MKL GEMM: {used}: {_state['reason']}"


def enabled(on: bool) -> contextlib.AbstractContextManager[None]:
    """Send products to MKL (``True``, where available) or to NumPy only (``False``) inside
    the block."""
    return switched(_state, on)
