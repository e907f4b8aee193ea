"""Optional native kernels: fused loops and convolutions in C, built on first use.

deepgrad runs on NumPy alone. Where a hot loop is a chain of small elementwise NumPy calls (the
LSTM's gate math per time step, an optimizer's update over every parameter), each call is a
separate pass over memory plus dispatch overhead; ``kernels.c`` fuses such a chain into one
pass. These kernels perform the same float operations in the same order as the NumPy code they
replace, so results are identical bit for bit (``tests/test_native.py`` checks that with
``array_equal``), and the NumPy code stays the reference and the fallback. The convolutions
(direct for LeNet-sized reductions, Winograd F(2x2, 3x3) for 3x3 layers with many channels)
sum in their own order and equal the NumPy path to rounding; the Winograd one splits a batch
over :func:`threads` threads.

A kernel that loops over many small steps (the LSTM's time steps) calls the same functions the
Python loop would: MKL's GEMM (``mkl.native_gemm``) and NumPy's own inner loop of ``np.tanh``
(:func:`ufunc_loop`), so it too gives the NumPy path's bits.

Where MKL runs on its TBB layer, large kernels split their elements into parts that run on MKL's
own worker threads (``parallel.py``), with the same bits as run whole.

The C file is compiled once per machine with the system's C compiler (``$CC``, else ``cc`` or
``gcc``) into ``$DEEPGRAD_CACHE/native`` (default ``~/.cache/deepgrad/native``), under a name
that hashes the sources, the compiler, the flags and the CPU, and is loaded with ctypes. Nothing
happens at ``import deepgrad``: the first module built (:func:`prepare`) or op that can use a
kernel triggers the build (about a second), and any failure (no compiler, a read-only home, an
unusual platform) leaves deepgrad on the NumPy path; :func:`status` says which path is in use
and why. The same library holds a NumPy memory handler that starts arrays on cache lines
(``memory.py``), installed when it loads.

``DEEPGRAD_NATIVE=0`` turns the kernels off for a process; :func:`enabled` does so for a block.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import memory

__all__ = ["lib", "prepare", "for_dtype", "status", "enabled", "address", "threads", "ufunc_loop"]

# kernels.c: the kernels; memory.c: the aligned NumPy memory handler (memory.py installs it)
_SOURCES = [Path(__file__).with_name(name) for name in ("kernels.c", "memory.c")]
# -ffp-contract=off: no fused multiply-adds, which would round differently from NumPy's
# separate multiply and add; -fno-math-errno lets sqrt vectorise (it is exact either way)
_FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared", "-pthread"]
_NATIVE_ARCH = ["-march=native"]

_lock = threading.Lock()
_state: dict[str, Any] = {"lib": None, "cdll": None, "tried": False, "reason": "not built yet",
                          "memory_done": False,
                          "on": os.environ.get("DEEPGRAD_NATIVE", "1") != "0"}

_P = ctypes.c_void_p
_L = ctypes.c_long
_I = ctypes.c_int
_SIGNATURES: dict[str, tuple] = {
    "lstm_gates": (_P, _P, _P, _L),
    "lstm_output": (_P, _P, _P, _L, _P, _L, _L, _L),
    "lstm_backward_step": (_P, _P, _P, _P, _L, _L, _P, _L, _L, _P, _P, _L, _L, _I),
    "transpose": (_P, _L, _P, _L, _L, _L),
    "transpose_blocks": (_P, _L, _L, _P, _L, _L, _L, _L, _L),
    "tanh_backward": (_P, _P, _P, _L),
    "sigmoid_backward": (_P, _P, _P, _L),
    "relu_backward": (_P, _P, _P, _L),
    "relu_forward": (_P, _P, _L),
    "bias_relu": (_P, _P, _L, _L),
    "batch_norm_forward": (_P, _L, _L, _L, _P, _P, ctypes.c_double, _P, _P, _P, _P, _P),
    "batch_norm_backward": (_P, _P, _L, _L, _L, _P, _P, _P, _P, _P),
    "sgd_update": (_P, _P, _P, _L, "T", "T", "T", "T", _I),
    "adam_update": (_P, _P, _P, _P, _P, _L, "T", "T", "T", "T", "T", "T", "T", "T", _I),
    "conv2d_direct": (_P, _L, _L, _L, _L, _P, _L, _L, _L, _P, _P, _L, _L, _L, _L, _L, _L, _L,
                      _L),
    "conv2d_weight_grad": (_P, _L, _L, _L, _L, _P, _L, _L, _L, _L, _L, _L, _L, _L, _L, _P),
    "conv2d_weight_grad_rows": (_P, _L, _L, _L, _P, _L, _L, _L, _L, _L, _P),
    "pad2d": (_P, _L, _L, _L, _L, _L, _L, _L, _L, _P),
    "im2col": (_P, _L, _L, _L, _L, _L, _L, _P, _L, _L, _L, _L, _L, _L),
    "winograd_weight": (_P, _L, _L, _I, _P),
    "winograd_workspace": (_L, _L, _L, _L, _L, _I),
    "winograd_conv": (_P, _L, _L, _L, _L, _L, _L, _P, _L, _P, _P, _L, _L, _L, _I, _P, _L, _P,
                      _P),
    "winograd_weight_grad": (_P, _L, _L, _L, _L, _L, _L, _P, _L, _L, _L, _L, _I, _P, _L, _P,
                             _P, _P),
    "lstm_forward_seq": (_P, _L, _P, _L, _P, _L, _P, _L, _P, _L, _P, _P, _P, _L, _L, _L, _L, _L,
                         _I, _P, _P, _P),
    "lstm_backward_seq": (_P, _P, _P, _P, _P, _L, _L, _P, _L, _L, _L, _P, _P, _P, _P, _P, _L,
                          _L, _L, _L, _L, _I, _P),
    "rnn_forward_seq": (_P, _L, _P, _L, _P, _P, _P, _L, _L, _L, _L, _L, _I, _P, _P, _P),
    "rnn_backward_seq": (_P, _P, _L, _P, _P, _L, _L, _P, _L, _L, _L, _P, _P, _P, _P, _L, _L, _L,
                         _L, _L, _I, _P),
    "gru_forward_seq": (_P, _L, _P, _P, _P, _P, _L, _L, _P, _L, _L, _L, _L, _L, _I, _P, _P, _P),
    "gru_backward_seq": (_P, _P, _L, _P, _L, _L, _P, _L, _L, _L, _P, _P, _P, _P, _P, _L, _L, _L,
                         _L, _L, _I, _P),
    "add_rows": (_P, _P, _L, _L),
    "sum_rows": (_P, _L, _L, _P),
    "softmax_rows": (_P, _L, _L, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P),
    "softmax_grad": (_P, _P, _L, _L, _P, _P, _L, _P),
    "embedding_backward": (_P, _P, _L, _L, _P),
    "linear_rows": (_P, _P, _P, _P, _L, _I, _P, _I, _P, _L, _L, _L),
    "gemm_rows": (_P, _P, _I, _I, _L, _L, _L, _P, _L, _P, _L, "T", _P, _L),
    "all_finite": (_P, _L),
}


# kernels that return a value: a status (0, or -1 when the arguments do not fit), or a size
_RETURNS = {"winograd_conv": ctypes.c_int, "winograd_weight_grad": ctypes.c_int,
            "winograd_workspace": ctypes.c_long, "linear_rows": ctypes.c_int,
            "gemm_rows": ctypes.c_int, "all_finite": ctypes.c_int,
            "lstm_forward_fused": ctypes.c_int, "lstm_backward_fused": ctypes.c_int,
            "linear_narrow": ctypes.c_int}

# kernels written for float32 only (their vector code is float32's)
_F32_ONLY: dict[str, tuple] = {
    "max_pool_2x2": (_P, _L, _L, _L, _P, _P),
    "max_pool_2x2_backward": (_P, _P, _L, _L, _L, _P),
    "avg_pool_2x2": (_P, _L, _L, _L, _P),
    "avg_pool_2x2_backward": (_P, _L, _L, _L, _P),
    "lstm_pack_tiles": (_P, _L, _L, _P),
    "lstm_pack_recurrent": (_P, _L, _P),
}

# float32 kernels of builds for AVX2 without AVX-512 only (kernels.c: LSTM_FUSED)
_FUSED: dict[str, tuple] = {
    "lstm_forward_fused": (_P, _L, _P, _L, _I, _P, _P, _L, _P, _L, _P, _L, _P, _P, _P, _L, _L, _L,
                           _L, _L, _I),
    "lstm_backward_fused": (_P, _P, _P, _P, _P, _P, _L, _L, _P, _L, _L, _L, _P, _P, _P, _L, _L,
                            _L, _L, _L, _I),
    "tanh_fast": (_P, _P, _L),
}

# float32 kernels of builds with AVX2 and FMA (kernels.c: HAVE_FMA8)
_FMA8: dict[str, tuple] = {
    "linear_narrow": (_P, _L, _P, _L, _L, _P, _I, _P, _L, _L, _L),
}


class Kernels:
    """The loaded library: ``kernels.<name>[dtype]`` is the ctypes function for that dtype
    (float32 or float64; float32 only for the names in ``_F32_ONLY``, and for those in
    ``_FUSED`` and ``_FMA8`` where the build has them: ``lstm_fused``, ``linear_narrow``)."""

    lstm_gates: dict[np.dtype, Any]
    transpose_blocks: dict[np.dtype, Any]
    lstm_output: dict[np.dtype, Any]
    lstm_backward_step: dict[np.dtype, Any]
    transpose: dict[np.dtype, Any]
    tanh_backward: dict[np.dtype, Any]
    sigmoid_backward: dict[np.dtype, Any]
    relu_backward: dict[np.dtype, Any]
    relu_forward: dict[np.dtype, Any]
    bias_relu: dict[np.dtype, Any]
    batch_norm_forward: dict[np.dtype, Any]
    batch_norm_backward: dict[np.dtype, Any]
    sgd_update: dict[np.dtype, Any]
    adam_update: dict[np.dtype, Any]
    conv2d_direct: dict[np.dtype, Any]
    conv2d_weight_grad: dict[np.dtype, Any]
    conv2d_weight_grad_rows: dict[np.dtype, Any]
    pad2d: dict[np.dtype, Any]
    im2col: dict[np.dtype, Any]
    winograd_weight: dict[np.dtype, Any]
    winograd_workspace: dict[np.dtype, Any]
    winograd_conv: dict[np.dtype, Any]
    winograd_weight_grad: dict[np.dtype, Any]
    lstm_forward_seq: dict[np.dtype, Any]
    lstm_backward_seq: dict[np.dtype, Any]
    rnn_forward_seq: dict[np.dtype, Any]
    rnn_backward_seq: dict[np.dtype, Any]
    gru_forward_seq: dict[np.dtype, Any]
    gru_backward_seq: dict[np.dtype, Any]
    add_rows: dict[np.dtype, Any]
    sum_rows: dict[np.dtype, Any]
    softmax_rows: dict[np.dtype, Any]
    softmax_grad: dict[np.dtype, Any]
    embedding_backward: dict[np.dtype, Any]
    linear_rows: dict[np.dtype, Any]
    gemm_rows: dict[np.dtype, Any]
    all_finite: dict[np.dtype, Any]
    max_pool_2x2: dict[np.dtype, Any]
    max_pool_2x2_backward: dict[np.dtype, Any]
    avg_pool_2x2: dict[np.dtype, Any]
    avg_pool_2x2_backward: dict[np.dtype, Any]
    lstm_pack_tiles: dict[np.dtype, Any]
    lstm_pack_recurrent: dict[np.dtype, Any]
    lstm_forward_fused: dict[np.dtype, Any]
    lstm_backward_fused: dict[np.dtype, Any]
    tanh_fast: dict[np.dtype, Any]
    linear_narrow: dict[np.dtype, Any]

    def __init__(self, cdll: ctypes.CDLL, path: Path) -> None:
        self.path = path
        # the convolutions' vector width and block of output channels, which the build chose
        # for this CPU's registers (kernels.c: CONV_BYTES, CONV_OB)
        self.conv_bytes = int(cdll.conv_vector_bytes())
        self.conv_channel_block = int(cdll.conv_channel_block())
        self.conv_tap_registers = int(cdll.conv_tap_registers())  # TAP_REGS
        for name, sig in _SIGNATURES.items():
            table = {}
            for dt, suffix, scalar in ((np.dtype(np.float32), "f32", ctypes.c_float),
                                       (np.dtype(np.float64), "f64", ctypes.c_double)):
                fn = getattr(cdll, f"{name}_{suffix}")
                fn.argtypes = [scalar if a == "T" else a for a in sig]
                fn.restype = _RETURNS.get(name)
                table[dt] = fn
            setattr(self, name, table)
        # the LSTM's fused float32 forward (its own GEMM tiles and tanh), where the build has it;
        # units per block of its packed weights
        self.lstm_fused = bool(cdll.lstm_fused_available())
        self.lstm_tile_units = int(cdll.lstm_tile_units())
        # a narrow Linear's own GEMM tiles (float32), where the build has them
        self.narrow = bool(cdll.linear_narrow_available())
        for name, sig in {**_F32_ONLY, **(_FUSED if self.lstm_fused else {}),
                          **(_FMA8 if self.narrow else {})}.items():
            fn = getattr(cdll, f"{name}_f32")
            fn.argtypes = list(sig)
            fn.restype = _RETURNS.get(name)
            setattr(self, name, {np.dtype(np.float32): fn})


def _cache_dir() -> Path:
    base = os.environ.get("DEEPGRAD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                            "deepgrad")
    return Path(base) / "native"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc) or (cc if os.path.isfile(cc) else None)
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_key() -> str:
    """What -march=native depends on: the CPU's feature flags (a cache shared between machines
    must not hand one machine's build to another)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _build(cc: str, out: Path) -> str | None:
    """Compile into ``out`` atomically; None on success, else what went wrong."""
    out.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for arch in (_NATIVE_ARCH, []):  # a compiler without -march=native still gets a build
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        cmd = [cc, *_FLAGS, *arch, "-o", tmp, *map(str, _SOURCES)]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            run = None
            errors.append(f"{' '.join(cmd)}: {e}")
        if run is not None and run.returncode == 0:
            os.replace(tmp, out)  # a concurrent build of the same key writes the same file
            return None
        if run is not None:
            errors.append(f"{' '.join(cmd)}: exit {run.returncode}: {run.stderr.strip()[:500]}")
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return "; ".join(errors)


def _load() -> None:
    _state["tried"] = True
    if sys.byteorder != "little" or ctypes.sizeof(ctypes.c_long) != 8:
        _state["reason"] = "native kernels need a 64-bit little-endian platform with 64-bit long"
        return
    cc = _compiler()
    if cc is None:
        _state["reason"] = "no C compiler found (set CC, or install cc/gcc/clang)"
        return
    src = b"\0".join(path.read_bytes() for path in _SOURCES)
    key = hashlib.sha256(b"\0".join([src, cc.encode(), " ".join(_FLAGS).encode(),
                                     _cpu_key().encode(), platform.machine().encode()]))
    path = _cache_dir() / f"kernels-{key.hexdigest()[:16]}.so"
    if not path.is_file():
        try:
            err = _build(cc, path)
        except OSError as e:
            err = f"cannot write {path.parent}: {e} (set DEEPGRAD_CACHE to a writable folder)"
        if err:
            _state["reason"] = f"build failed: {err}"
            return
    try:
        cdll = ctypes.CDLL(str(path))
        _state["lib"] = Kernels(cdll, path)
    except (OSError, AttributeError) as e:
        _state["reason"] = f"cannot load {path}: {e}"
        return
    _state["reason"] = f"loaded {path}"
    _state["cdll"] = cdll
    _aligned_memory()
    from . import parallel

    parallel.kernels_loaded(cdll)


def _aligned_memory() -> None:
    """Install the aligned memory handler (memory.py) in the main thread's context; loading
    the kernels in another thread leaves that to the main thread's next :func:`prepare`."""
    if threading.current_thread() is threading.main_thread():
        memory.install(_state["cdll"])
        _state["memory_done"] = True
    else:
        memory.not_yet(threading.current_thread().name)


def prepare() -> None:
    """Load the kernels, and with them the aligned memory handler, before a model allocates its
    parameters (``nn.Module.__init__`` calls this; it costs a dictionary lookup after the
    first time)."""
    if _state["memory_done"] or lib() is None:
        return
    with _lock:
        if not _state["memory_done"]:
            _aligned_memory()


def load_once(state: dict, lock: threading.Lock, load) -> None:
    """Call ``load()`` (which sets ``state["tried"]``) the first time any thread gets here."""
    if not state["tried"]:
        with lock:
            if not state["tried"]:
                load()


def lib() -> Kernels | None:
    """The kernels, built and loaded on the first call; None when turned off or unavailable."""
    if not _state["on"]:
        return None
    load_once(_state, _lock, _load)
    return _state["lib"]


def status() -> str:
    """One line: whether the native kernels are in use, and why (or why not)."""
    if not _state["on"]:
        return "native kernels: off (DEEPGRAD_NATIVE=0 or enabled(False))"
    lib()
    used = "on" if _state["lib"] is not None else "unavailable, using NumPy"
    from . import parallel

    return (f"native kernels: {used}: {_state['reason']}; {memory.status()}; "
            f"{parallel.status()}")


@contextlib.contextmanager
def switched(state: dict, on: bool) -> Iterator[None]:
    """``state["on"]`` set to ``on`` inside the block, restored after it."""
    before = state["on"]
    state["on"] = bool(on)
    try:
        yield
    finally:
        state["on"] = before


def enabled(on: bool) -> contextlib.AbstractContextManager[None]:
    """Use the native kernels (``True``, where available) or NumPy only (``False``) inside the
    block."""
    return switched(_state, on)


# Below this many elements an elementwise kernel does not pay for its call: looking up the
# operands' addresses costs more than NumPy's few short passes (the XOR net's step was 11%
# slower with every update and gradient native).
MIN_ELEMENTS = 4096


_THREAD_VARS = ("DEEPGRAD_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads() -> int:
    """Threads for the kernels that split their work (the Winograd convolution): the first of
    DEEPGRAD_NUM_THREADS, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS that is set (the last two
    are what NumPy's BLAS and PyTorch follow, so a benchmark's thread count holds for all
    three), else the CPUs this process may run on."""
    for var in _THREAD_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def for_dtype(dt) -> Kernels | None:
    """The kernels if they are in use and written for ``dt`` (float32 or float64), else None."""
    if dt != np.float32 and dt != np.float64:
        return None
    return lib()


def unary_operands(y: np.ndarray, g: np.ndarray):
    """The kernels for an activation's backward on its saved output ``y`` and the gradient
    ``g``, or None: both float32 or float64 of one dtype and shape, C-contiguous, and at least
    ``MIN_ELEMENTS`` of them."""
    if g.dtype != y.dtype or g.shape != y.shape or y.size < MIN_ELEMENTS:
        return None
    if not (y.flags.c_contiguous and g.flags.c_contiguous):
        return None
    return for_dtype(y.dtype)


_char = ctypes.c_char


def address(a: np.ndarray) -> int:
    """The address of an array's first element, for a ctypes pointer argument.

    Through the buffer protocol where the array allows it (contiguous and writable: twice as
    fast as ``a.ctypes.data``, and a LeNet step asks about 50 times), else from NumPy."""
    try:
        return ctypes.addressof(_char.from_buffer(a))  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):
        return a.ctypes.data


# PyUFuncObject's fields up to `types`, as numpy/ufuncobject.h declares them (public C API)
class _UFuncHead(ctypes.Structure):
    _fields_ = [("refcnt", ctypes.c_ssize_t), ("type", _P), ("nin", _I), ("nout", _I),
                ("nargs", _I), ("identity", _I), ("functions", ctypes.POINTER(_P)),
                ("data", ctypes.POINTER(_P)), ("ntypes", _I), ("reserved1", _I),
                ("name", ctypes.c_char_p), ("types", ctypes.POINTER(ctypes.c_char))]


_LOOP = ctypes.CFUNCTYPE(None, ctypes.POINTER(_P), ctypes.POINTER(ctypes.c_ssize_t),
                         ctypes.POINTER(ctypes.c_ssize_t), _P)
_loops: dict[tuple, tuple[int, int] | None] = {}


def ufunc_loop(ufunc: np.ufunc, dt) -> tuple[int, int] | None:
    """``(loop, data)``: the addresses of NumPy's own inner loop of a one- or two-input ufunc
    for the float dtype ``dt`` (every operand that dtype) and of its data, for a kernel that
    calls it as NumPy does (``loop(args, dimensions, steps, data)``), or None where it cannot
    be found.

    A kernel's loop over time steps calls ``np.tanh``'s loop this way and so gets the bits
    ``np.tanh`` gives (NumPy's SIMD tanh, which a portable C tanh does not match in speed or
    in bits). A two-input loop called with the output as its first input and strides
    ``(0, itemsize, 0)`` is a reduction, as in ``ufunc.reduce`` (the cross-entropy kernel sums
    rows with ``np.add``'s). The loop is read from the ufunc's C struct and checked on special
    and ordinary values against the ufunc itself (a two-input one also as a reduction) before
    it is handed out."""
    dt = np.dtype(dt)
    key = (ufunc, dt)
    if key not in _loops:
        _loops[key] = _find_loop(ufunc, dt)
    return _loops[key]


def _find_loop(ufunc: np.ufunc, dt: np.dtype) -> tuple[int, int] | None:
    nin = ufunc.nin
    if (platform.python_implementation() != "CPython" or nin not in (1, 2) or ufunc.nout != 1
            or dt.kind != "f"):
        return None
    head = _UFuncHead.from_address(id(ufunc))
    if head.type != id(type(ufunc)):  # not the object header this layout assumes
        return None
    name = (head.name or b"").decode(errors="replace")
    if (head.nin, head.nout, head.nargs, name) != (nin, 1, nin + 1, ufunc.__name__):
        return None
    if not 0 < head.ntypes == ufunc.ntypes:
        return None
    width = nin + 1
    codes = head.types[:width * head.ntypes]
    for i in range(head.ntypes):
        if all(c == dt.num for c in codes[width * i:width * (i + 1)]):
            loop, data = head.functions[i], head.data[i] if head.data else None
            break
    else:
        return None
    if not loop:
        return None
    call = _LOOP(loop)
    size = ctypes.c_ssize_t
    x = np.concatenate([np.linspace(-20, 20, 1001, dtype=dt),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30], dt)])
    with np.errstate(all="ignore"):
        if nin == 1:
            y = np.empty_like(x)
            call((_P * 2)(x.ctypes.data, y.ctypes.data), (size * 1)(x.size),
                 (size * 2)(dt.itemsize, dt.itemsize), data)
            checks = [(y, ufunc(x))]
        else:
            x2 = x[::-1].copy()
            y = np.empty_like(x)
            call((_P * 3)(x.ctypes.data, x2.ctypes.data, y.ctypes.data), (size * 1)(x.size),
                 (size * 3)(dt.itemsize, dt.itemsize, dt.itemsize), data)
            checks = [(y, ufunc(x, x2))]
            # reductions of rows of several lengths, finite and not, started as NumPy starts
            # them: from the identity (np.add's 0) or else from the first element
            rows = np.random.default_rng(0).standard_normal((6, 67)).astype(dt) * 8
            rows[1, 5], rows[2, 9], rows[3, 0] = np.nan, np.inf, -np.inf
            first = 1 if ufunc.identity is None else 0
            for row in rows:
                for n in (2, 9, 17, 67):
                    acc = row[:1].copy() if first else np.full(1, ufunc.identity, dt)
                    call((_P * 3)(acc.ctypes.data, row[first:].ctypes.data, acc.ctypes.data),
                         (size * 1)(n - first), (size * 3)(0, dt.itemsize, 0), data)
                    checks.append((acc, ufunc.reduce(row[:n], keepdims=True)))
    if not all(np.array_equal(got, want, equal_nan=True)
               and np.array_equal(np.signbit(got), np.signbit(want)) for got, want in checks):
        return None
    return loop, data or 0
