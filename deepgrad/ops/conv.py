"""Convolution and pooling: ``conv1d``, ``conv2d``, ``conv_transpose1d``, ``conv_transpose2d``,
max/avg pooling and adaptive average pooling (part of ``deepgrad.nn.functional``).

Names, arguments, defaults and semantics follow ``torch.nn.functional``. Each call is one
``Function`` node with a hand-written backward. 1-d ops run as 2-d ops on a dummy height axis;
unbatched inputs get a dummy batch axis. Both reshapes happen inside the node.

Convolution layout. The input is copied once, zero-padded and channels first, into a flat
buffer ``buf`` of shape ``(C, N*Hp*Wp [+ tail])``: ``(C, N, Hp, Wp)`` read as one matrix. Two
kernels use it:

* im2col (any stride): one copy of the patches ``(Cg*kh*kw, N*OH*OW)`` through a strided view
  of ``buf``, then one GEMM (a batched GEMM over groups). Without groups and with enough
  output positions per image, it is one GEMM per image (batched inside NumPy) written straight
  into the (N, O, OH, OW) output, which saves transposing a channels-first result. The patch
  matrix is kept for the weight gradient (up to ``_KEEP_COLS_BYTES``; beyond that ``buf`` is
  kept and the patches rebuilt). The input gradient is one GEMM and a col2im that adds kh*kw
  strided slices.
* grid (stride 1, many channels): output position ``q`` of the padded grid reads
  ``buf[:, q + off_t]`` for the kernel tap at ``off_t = i*dh*Wp + j*dw``, so the patch matrix
  is a strided view of ``buf`` whose rows are long contiguous runs. It is copied and multiplied
  one cache-sized block of columns at a time, so the full patch matrix never exists, and
  backward rebuilds blocks from ``buf`` (the only saved array). The input gradient is the same
  product on ``gy`` laid on the grid, with the taps shifted the other way. Grid positions that
  are not outputs (right and bottom margins) are computed and dropped; their gradient is zero.
  On a (32, 64, 32, 32) input with 64 3x3 filters this is faster than per-tap GEMMs and than
  a full im2col (which would be 9x the input).

For stride 1 without the grid kernel, the input gradient is one GEMM to patch gradients on the
grid and kh*kw adds of shifted long rows (cheaper than col2im's short strided rows), one
cache-sized block of grid columns at a time; but col2im when outputs cover little of the grid
(a 5x5 input to a 1x1 output would make the grid GEMM 25x the work).

Native direct convolution (optional, ``deepgrad._native``). Where a C compiler is at hand and
the reduction ``C*kh*kw`` is small (LeNet's layers), BLAS runs the GEMMs above with a handful
of rows, far below its speed, and building the patch matrix costs more than the arithmetic.
A native kernel then convolves the zero-padded input directly, blocks of 6 or 8 output
channels by a vector of output columns by two output rows in registers; the input gradient
(stride 1) is the same kernel on the padded ``gy`` with the flipped, transposed weight; the
weight gradient runs its lanes over output channels, or, for few of them, copies patch
matrices of a few images at a time for GEMMs. These sum in their own order: results equal the
NumPy path's to rounding (``tests/test_native.py``). Without the kernels, everything runs as
described above.

Large temporaries come from ``_scratch``, a small pool of reused arrays, and outputs and
gradients from ``backend.empty`` (reused once nothing refers to them): on the machines this
was measured on, first touching a fresh multi-megabyte array (a page fault per 4 KiB) cost more
than a LeNet-sized convolution's arithmetic.

Pooling runs over the kh*kw taps of the window as strided views of the (padded) input: a
running max, then the tap of the first maximum (PyTorch's tie rule), or a running sum (for
windows that tile the input, whole rows are added first, over contiguous memory).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import _native, backend
from .._native import mkl
from ..autograd.function import Function
from ..tensor import Tensor
from . import elementwise, fused
from .shape import pad_widths

__all__ = [
    "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d",
    "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d",
]


Size = int | tuple[int, ...]  # an int for every spatial dim, or one per dim
OptSize = Size | None

# =========================================================================================
# argument parsing (cheap int/tuple work, shared by the functions and the layers)
# =========================================================================================


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _ntuple(op: str, name: str, v, n: int, low: int) -> tuple:
    """An int or a sequence of ``n`` ints, each ``>= low``, as a tuple of ``n`` ints."""
    if _is_int(v):
        t = (int(v),) * n
    elif isinstance(v, (tuple, list)) and len(v) == n and all(_is_int(e) for e in v):
        t = tuple(int(e) for e in v)
    else:
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    for e in t:
        if e < low:
            what = "positive" if low == 1 else "non-negative"
            raise ValueError(f"{op}: {name} must be {what}, got {v!r}")
    return t


def _check_tensor(op: str, name: str, t) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")


def _check_input_dims(op: str, input, nd: int) -> None:
    _check_tensor(op, "input", input)
    s = input.data.shape
    if len(s) != nd + 1 and len(s) != nd + 2:
        names = "(C, L)" if nd == 1 else "(C, H, W)"
        bnames = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
        raise ValueError(
            f"{op}: expected {nd + 1}-d {names} or {nd + 2}-d {bnames} input, got shape {s}")
    if input.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got dtype {input.data.dtype}")


def _conv_padding(op: str, padding, nd: int, kernel: tuple, stride: tuple,
                  dilation: tuple) -> tuple:
    """Padding as ``(lo, hi)`` per spatial dim; 'same' may be asymmetric (extra on the right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"{op}: padding='same' is not supported for strided convolutions; got "
                    f"stride={stride}")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a tuple of {nd} "
                         f"ints, got {padding!r}")
    return tuple((p, p) for p in _ntuple(op, "padding", padding, nd, 0))


# =========================================================================================
# scratch arrays
# =========================================================================================


class _Scratch:
    """Arrays reused across calls for temporaries that never leave the function using them.

    A fresh multi-megabyte array costs a page fault per 4 KiB page on first touch, which for
    a LeNet-sized convolution is more than its arithmetic (patch matrices, gradients laid on
    the grid). Arrays are kept per (shape, dtype) up to ``limit`` bytes in total.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self.free: dict = {}

    def get(self, shape: tuple, dtype) -> np.ndarray:
        stack = self.free.get((shape, np.dtype(dtype)))
        if stack:
            try:
                a = stack.pop()
            except IndexError:  # another thread took it
                return np.empty(shape, dtype)
            self.bytes -= a.nbytes
            return a
        return np.empty(shape, dtype)

    def zeros(self, shape: tuple, dtype) -> np.ndarray:
        a = self.get(shape, dtype)
        a.fill(0)
        return a

    def put(self, *arrays) -> None:
        for a in arrays:
            if type(a) is not np.ndarray or a.nbytes > self.limit:
                continue  # (None, or what a forward saved that is not a scratch array)
            if self.bytes + a.nbytes > self.limit:
                self.free.clear()
                self.bytes = 0
            stack = self.free.setdefault((a.shape, a.dtype), [])
            if len(stack) < 2:
                stack.append(a)
                self.bytes += a.nbytes


_scratch = _Scratch(96 << 20)


# =========================================================================================
# convolution kernels on (N, C, H, W) arrays
# =========================================================================================


class _Geom:
    """Sizes of one 2-d convolution: input (N, C, H, W) padded by (pt, pb, pl, pr) to
    (Hp, Wp), weight (O, C/G, kh, kw), output (N, O, OH, OW)."""

    __slots__ = ("N", "C", "H", "W", "O", "G", "Cg", "Og", "kh", "kw", "sh", "sw", "dh", "dw",
                 "pt", "pb", "pl", "pr", "Hp", "Wp", "OH", "OW", "M", "tail", "grid")

    def __init__(self, x_shape, w_shape, stride, pads, dilation, groups, out_hw=None):
        self.N, self.C, self.H, self.W = x_shape
        self.O, self.Cg, self.kh, self.kw = w_shape
        self.G = groups
        self.Og = self.O // groups
        self.sh, self.sw = stride
        self.dh, self.dw = dilation
        (self.pt, self.pb), (self.pl, self.pr) = pads
        self.Hp = self.H + self.pt + self.pb
        self.Wp = self.W + self.pl + self.pr
        if out_hw is None:
            self.OH = (self.Hp - self.dh * (self.kh - 1) - 1) // self.sh + 1
            self.OW = (self.Wp - self.dw * (self.kw - 1) - 1) // self.sw + 1
        else:
            self.OH, self.OW = out_hw
        self.M = self.N * self.Hp * self.Wp  # grid positions
        # how far the last kernel tap reaches past a grid position
        self.tail = (self.kh - 1) * self.dh * self.Wp + (self.kw - 1) * self.dw
        # The grid kernel needs stride 1, and pays off over im2col when there are enough
        # channels and the grid margins (computed, then dropped) are small next to the output.
        self.grid = (self.sh == 1 and self.sw == 1 and self.Cg >= 16
                     and self.Hp * self.Wp * 2 <= 3 * self.OH * self.OW)

    def offsets(self) -> list:
        return [i * self.dh * self.Wp + j * self.dw
                for i in range(self.kh) for j in range(self.kw)]


def _grid(flat: np.ndarray, rows: int, g: _Geom) -> np.ndarray:
    """The (rows, N, Hp, Wp) view of the first N*Hp*Wp columns of a (rows, >=N*Hp*Wp) array."""
    it = flat.itemsize
    return as_strided(flat, (rows, g.N, g.Hp, g.Wp),
                      (flat.strides[0], g.Hp * g.Wp * it, g.Wp * it, it))


def _zero_margins(v: np.ndarray, top: int, bottom: int, left: int, right: int) -> None:
    """Zero the borders of the (..., Hp, Wp) view v outside rows [top, bottom) and columns
    [left, right)."""
    v[..., :top, :] = 0
    v[..., bottom:, :] = 0
    v[..., top:bottom, :left] = 0
    v[..., top:bottom, right:] = 0


def _padded_cmajor(x: np.ndarray, g: _Geom, tail: int) -> np.ndarray:
    """x (N, C, H, W) -> buf (C, N*Hp*Wp + tail): channels first, zero-padded, flat; a scratch
    array."""
    buf = _scratch.get((g.C, g.M + tail), x.dtype)
    v = _grid(buf, g.C, g)
    _zero_margins(v, g.pt, g.pt + g.H, g.pl, g.pl + g.W)
    buf[:, g.M:] = 0
    v[:, :, g.pt:g.pt + g.H, g.pl:g.pl + g.W] = x.transpose(1, 0, 2, 3)
    return buf


def _im2col(buf: np.ndarray, g: _Geom) -> np.ndarray:
    """Patches (G, Cg*kh*kw, N*OH*OW) of the padded input, rows ordered (c, i, j); a scratch
    array."""
    grid = _grid(buf, g.C, g)
    sc, sn, sy, sx = grid.strides
    v = as_strided(grid, (g.C, g.kh, g.kw, g.N, g.OH, g.OW),
                   (sc, g.dh * sy, g.dw * sx, sn, g.sh * sy, g.sw * sx))
    cols = _scratch.get((g.G, g.Cg * g.kh * g.kw, g.N * g.OH * g.OW), buf.dtype)
    np.copyto(cols.reshape(v.shape), v)
    return cols


# OpenBLAS runs products with very few rows (a handful of output channels) over tens of
# thousands of columns several times slower than the same work cut into column blocks
_BLOCK = 4096


def _matmul_wide(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``a @ b`` into ``out`` for a (G, m, k) and a wide b (G, k, n)."""
    n = b.shape[-1]
    if a.shape[-2] >= 16 or n < 2 * _BLOCK:
        return mkl.matmul(a, b, out=out)
    for s in range(0, n, _BLOCK):
        mkl.matmul(a, b[..., s:s + _BLOCK], out=out[..., s:s + _BLOCK])
    return out


def _matmul_long_nt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b^T`` for a (G, m, n), b (G, k, n) with a long reduction over n."""
    n = a.shape[-1]
    if min(a.shape[-2], b.shape[-2]) >= 16 or n < 2 * _BLOCK:
        return mkl.matmul(a, b.transpose(0, 2, 1))
    out = mkl.matmul(a[..., :_BLOCK], b[..., :_BLOCK].transpose(0, 2, 1))
    for s in range(_BLOCK, n, _BLOCK):
        out += mkl.matmul(a[..., s:s + _BLOCK], b[..., s:s + _BLOCK].transpose(0, 2, 1))
    return out


# target size of one block of grid patches: large enough for long GEMMs (and for two BLAS
# threads to share), small enough to stay in cache between the copy that builds it and the
# GEMM that reads it (8 MB: ~5% faster than 4 MB at 2 threads on Conv2d(64, 64, 3) over
# (32, 64, 32, 32), the same at 1 thread)
_GRID_BLOCK_BYTES = 8 << 20


def _grid_taps(a: np.ndarray, start: int, sign: int, g: _Geom) -> np.ndarray:
    """(G, R, kh, kw, M) view of a flat grid array a (G*R, L):
    ``v[k, r, i, j, q] = a[k*R + r, start + q + sign*(i*dh*Wp + j*dw)]``."""
    it = a.itemsize
    rows = a.shape[0] // g.G
    return as_strided(a[:, start:], (g.G, rows, g.kh, g.kw, g.M),
                      (rows * a.strides[0], a.strides[0], sign * g.dh * g.Wp * it,
                       sign * g.dw * it, it))


def _grid_block(k: int, itemsize: int, m: int) -> int:
    return min(m, max(512, _GRID_BLOCK_BYTES // (k * itemsize)))


def _grid_matmul(wmat: np.ndarray, taps: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (G, P, M) = wmat (G, P, K) @ patches (G, K, M), the patches copied from the
    (G, R, kh, kw, M) view ``taps`` one block of columns at a time."""
    G, P, K = wmat.shape
    m = out.shape[-1]
    B = _grid_block(K, wmat.itemsize, m)
    cols = _scratch.get((G, K, B), wmat.dtype)
    for s in range(0, m, B):
        n = min(B, m - s)
        cb = cols[:, :, :n]
        np.copyto(cb.reshape(taps.shape[:4] + (n,)), taps[..., s:s + n])
        mkl.matmul(wmat, cb, out=out[:, :, s:s + n])
    _scratch.put(cols)
    return out


def _grid_matmul_nt(taps: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """patches (G, K, M) @ gy (G, Og, M)^T -> (G, K, Og), block by block."""
    G, Og, m = gy.shape
    K = taps.shape[1] * taps.shape[2] * taps.shape[3]
    B = _grid_block(K, gy.itemsize, m)
    cols = _scratch.get((G, K, B), gy.dtype)
    acc = np.zeros((G, K, Og), gy.dtype)
    tmp = np.empty_like(acc)
    for s in range(0, m, B):
        n = min(B, m - s)
        cb = cols[:, :, :n]
        np.copyto(cb.reshape(taps.shape[:4] + (n,)), taps[..., s:s + n])
        mkl.matmul(cb, gy[:, :, s:s + n].transpose(0, 2, 1), out=tmp)
        acc += tmp
    _scratch.put(cols)
    return acc


def _to_batch_first(yc: np.ndarray, b) -> np.ndarray:
    """(O, N, OH, OW) view -> new contiguous (N, O, OH, OW), adding the bias on the way."""
    o, n, oh, ow = yc.shape
    out = backend.empty((n, o, oh, ow), yc.dtype)
    if b is None:
        np.copyto(out, yc.transpose(1, 0, 2, 3))
    else:
        np.add(yc.transpose(1, 0, 2, 3), b.reshape(o, 1, 1), out=out)
    return out


# per-image GEMMs (see _conv_forward, _conv_backward) from this many output positions per
# image on; below, one GEMM over all images is faster than N small ones (each small GEMM runs
# on one thread; LeNet's 10x10 second conv measured even at 1 thread, slower at 2)
_PER_IMAGE_MIN_P = 144
_PER_IMAGE_MIN_P_W = 256
_PER_IMAGE_MAX_BYTES = 4 << 20

# im2col keeps its patch matrix for the weight gradient up to this size (larger ones are
# rebuilt from the padded input in backward: memory over one copy)
_KEEP_COLS_BYTES = 32 << 20


# ---- the native direct convolution (deepgrad._native) ---------------------------------------
# For layers with few input channels times taps (LeNet's first two), a GEMM over the patch
# matrix has a handful of rows and runs far below BLAS speed, and building the matrix costs more
# than the arithmetic. The native kernel convolves the padded input directly, a block of output
# channels by a block of output columns in registers; results equal the GEMM's to rounding.
# Taken for one group, output rows of at least _NATIVE_MIN_OW (its lanes run along a row) and
# reductions of at most _NATIVE_MAX_K = C*kh*kw. Measured at 2 threads (forward, native vs
# BLAS): LeNet's 1-6 5x5 0.40 vs 0.85 ms and 6-16 5x5 0.49 vs 1.18 ms at batch 64, 16-16 5x5
# (K 400) 1.27 vs 3.04 ms, 32-32 3x3 on 16x16 (K 288) 3.9 vs 5.4 ms; but 64-64 3x3 on 32x32
# (K 576) 38 vs 24 ms, where BLAS runs near its peak.
_NATIVE_MIN_OW = 8
_NATIVE_MAX_K = 400
# the input gradient runs the same kernel with the input channels as its outputs: with fewer
# than half a block of them it lost to BLAS (1 channel: 2.3 vs 1.5 ms, 3: 3.4 vs 3.0 ms)
_NATIVE_MIN_C_INPUT_GRAD = 4


def _native_kernels(g: _Geom, dt: np.dtype, reduction: int, width: int):
    if g.G != 1 or width < _NATIVE_MIN_OW or reduction > _NATIVE_MAX_K:
        return None
    return _native.for_dtype(dt)


def _padded_flat(x: np.ndarray, top: int, bottom: int, left: int, right: int, slack: int):
    """x (N, C, H, W) zero-padded, as a flat scratch array with ``slack`` zeros after it."""
    n, c, h, w = x.shape
    hp, wp = h + top + bottom, w + left + right
    size = n * c * hp * wp
    flat = _scratch.get((size + slack,), x.dtype)
    kern = _native.for_dtype(x.dtype) if x.flags.c_contiguous else None
    if kern is not None:
        kern.pad2d[x.dtype](_native.address(x), n * c, h, w, top, bottom, left, right, slack,
                            _native.address(flat))
        return flat
    v = flat[:size].reshape(n, c, hp, wp)
    if top or bottom or left or right:
        flat.fill(0)  # one memset: zeroing only the margins is many short strided writes
    else:
        flat[size:] = 0
    v[:, :, top:top + h, left:left + w] = x
    return flat


def _blocked_weight(w: np.ndarray, block: int) -> np.ndarray:
    """w (O, C, kh, kw) with zero output channels appended up to a multiple of the kernel's
    block of output channels (``Kernels.conv_channel_block``: 8 with AVX-512, 6 with AVX2)."""
    o = w.shape[0]
    op = -(-o // block) * block
    if op == o and w.flags.c_contiguous:
        return w
    wp = np.zeros((op,) + w.shape[1:], w.dtype)
    wp[:o] = w
    return wp


def _direct(kern, xflat: np.ndarray, shape: tuple, w: np.ndarray, b, out_hw: tuple,
            stride: tuple, dilation: tuple, zero_rows: tuple) -> np.ndarray:
    """The direct kernel on the flat padded input; ``zero_rows`` (top, bottom) are the padding
    rows of each image, which the kernel skips where a tap meets nothing else."""
    n, c, hp, wp = shape
    o, _, kh, kw = w.shape
    oh, ow = out_hw
    wb = _blocked_weight(w, kern.conv_channel_block)
    y = backend.empty((n, o, oh, ow), w.dtype)
    addr = _native.address
    kern.conv2d_direct[w.dtype](addr(xflat), n, c, hp, wp, addr(wb), o, kh, kw,
                                None if b is None else addr(np.ascontiguousarray(b)), addr(y),
                                oh, ow, stride[0], stride[1], dilation[0], dilation[1],
                                zero_rows[0], zero_rows[1])
    return y


def _slack(dt: np.dtype, sh: int, sw: int, wp: int) -> int:
    """What the kernel may read past the padded input: a row pair's second row, a vector (at
    most 64 bytes)."""
    return sh * wp + (64 // dt.itemsize) * sw


def _native_forward(kern, x: np.ndarray, w: np.ndarray, b, g: _Geom, keep: bool):
    """``_conv_forward`` by the direct kernel; saves the padded input (flat, 1-d) when keep."""
    flat = _padded_flat(x, g.pt, g.pb, g.pl, g.pr, _slack(x.dtype, g.sh, g.sw, g.Wp))
    y = _direct(kern, flat, (g.N, g.C, g.Hp, g.Wp), w, b, (g.OH, g.OW), (g.sh, g.sw),
                (g.dh, g.dw), (g.pt, g.pb))
    if keep:
        return y, flat
    _scratch.put(flat)
    return y, None


# images per patch matrix for the weight gradient by patches: the matrix stays in cache
# between the copy that builds it and the GEMM that reads it (LeNet's first layer at batch 64:
# 0.63 vs 0.84 ms for one matrix of all images)
_PATCH_BLOCK_BYTES = 1280 << 10


def _native_weight_grad_patches(kern, flat: np.ndarray, gy: np.ndarray, g: _Geom) -> np.ndarray:
    """gw (O, C, kh, kw) from the flat padded input a native forward saved, by patch matrices
    of a block of images at a time (natively copied) and GEMMs."""
    dt = flat.dtype
    K = g.C * g.kh * g.kw
    P = g.OH * g.OW
    block = max(1, min(g.N, _PATCH_BLOCK_BYTES // (K * P * dt.itemsize)))
    cols = _scratch.get((K, block * P), dt)
    image = g.C * g.Hp * g.Wp * dt.itemsize
    base, out = _native.address(flat), _native.address(cols)
    gw = np.zeros((K, g.O), dt)
    for n0 in range(0, g.N, block):
        n = min(block, g.N - n0)
        kern.im2col[dt](base + n0 * image, n, g.C, g.Hp, g.Wp, g.kh, g.kw, out, g.OH, g.OW,
                        g.sh, g.sw, g.dh, g.dw)
        gw += _weight_grad_from_cols(cols[:, :n * P], gy[n0:n0 + n])
    _scratch.put(cols)
    return gw.T.reshape(g.O, g.C, g.kh, g.kw)


def _native_weight_grad(kern, flat: np.ndarray, gy: np.ndarray, g: _Geom) -> np.ndarray:
    """gw (O, C, kh, kw) from the flat padded input a native forward saved: the kernel runs
    its lanes over output channels, so gy goes pixel-major, (N, OH, OW, O) padded to a whole
    number of lanes."""
    dt = gy.dtype
    lanes = kern.conv_bytes // dt.itemsize
    opad = -(-g.O // lanes) * lanes
    gyt = _scratch.get((g.N, g.OH, g.OW, opad), dt)
    if opad > g.O:
        gyt[..., g.O:] = 0
    np.copyto(gyt[..., :g.O], gy.transpose(0, 2, 3, 1))
    acc = np.empty((g.C * g.kh * g.kw, opad), dt)
    addr = _native.address
    kern.conv2d_weight_grad[dt](addr(flat), g.N, g.C, g.Hp, g.Wp, addr(gyt), opad, g.OH, g.OW,
                                g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, addr(acc))
    _scratch.put(gyt)
    return np.ascontiguousarray(acc[:, :g.O].T).reshape(g.O, g.C, g.kh, g.kw)


# the one-channel weight gradient with lanes along the output rows keeps its taps'
# accumulators in registers, in passes of whole kernel rows (TAP_REGS in kernels.c: a kernel
# row must fit in one pass, so it takes rows of at most Kernels.conv_tap_registers taps).
# Kernels of at most _ROWS_MAX_TAPS taps take it, as measured. On LeNet's first layer (1-6 5x5 on
# 28x28 with padding 2), against patches and a GEMM, 2 threads, in-process A/B: lenet5 steps
# 0.94x, lenet_modern_256 0.98x; the kernel alone 2.1 vs 3.2 ms at batch 256 (Intel, AVX-512).
# With AVX2's 8 lanes, 6 output channels fill as many lanes as 28 columns do, and lanes along
# the rows still won at batch 64: 0.88 against 1.21 ms (AMD EPYC).
_ROWS_MAX_TAPS = 25


def _rows_weight_grad_applies(g: _Geom, kern) -> bool:
    return (g.C == 1 and g.G == 1 and g.kh * g.kw <= _ROWS_MAX_TAPS
            and g.kw <= kern.conv_tap_registers and g.sh == 1 and g.sw == 1 and g.dh == 1
            and g.dw == 1)


def _native_weight_grad_rows(kern, flat: np.ndarray, gy: np.ndarray, g: _Geom) -> np.ndarray:
    """gw (O, 1, kh, kw) of a one-channel convolution from the flat padded input a native
    forward saved (its slack covers the vector a row's last block reads past the row), by the
    kernel with lanes along the output rows."""
    dt = gy.dtype
    gyc = gy if gy.flags.c_contiguous else np.ascontiguousarray(gy)
    gw = np.empty((g.O, 1, g.kh, g.kw), dt)
    addr = _native.address
    kern.conv2d_weight_grad_rows[dt](addr(flat), g.N, g.Hp, g.Wp, addr(gyc), g.O, g.OH, g.OW,
                                     g.kh, g.kw, addr(gw))
    return gw


def _native_input_grad(gy: np.ndarray, w: np.ndarray, g: _Geom, b_out):
    """The input gradient of a stride-1 convolution as the direct convolution of gy, padded by
    the kernel's reach less the forward padding, with the flipped, transposed weight; None when
    the native kernel does not apply."""
    if g.sh != 1 or g.sw != 1:
        return None
    # gy padded to (H + reach, W + reach); a transposed convolution's output padding leaves
    # input rows no output sees, which shows as less padding at the bottom or right
    top, left = g.dh * (g.kh - 1) - g.pt, g.dw * (g.kw - 1) - g.pl
    bottom = g.H + g.dh * (g.kh - 1) - g.OH - top
    right = g.W + g.dw * (g.kw - 1) - g.OW - left
    if min(top, bottom, left, right) < 0 or g.C < _NATIVE_MIN_C_INPUT_GRAD:
        return None
    kern = _native_kernels(g, gy.dtype, g.O * g.kh * g.kw, g.W)
    if kern is None:
        return None
    flat = _padded_flat(gy, top, bottom, left, right, _slack(gy.dtype, 1, 1, g.OW + left + right))
    wt = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    gx = _direct(kern, flat, (g.N, g.O, g.OH + top + bottom, g.OW + left + right), wt, b_out,
                 (g.H, g.W), (1, 1), (g.dh, g.dw), (top, bottom))
    _scratch.put(flat)
    return gx


# ---- Winograd F(2x2, 3x3) (deepgrad._native) ---------------------------------------------
# A 3x3 stride-1 convolution with many channels runs near BLAS's peak as one GEMM over the patch
# matrix, but that GEMM does 36 multiplies per 2x2 block of outputs and input channel; the
# Winograd algorithm (kernels.c) does 16, plus transforms that are additions only: 16 GEMMs of
# (O, C) by (C, tiles). Forward, input gradient (the same algorithm on the output gradient with
# the flipped, transposed weight) and weight gradient all take it, each as one native call that
# splits the images between threads (_native.threads()). Measured at 2 threads, forward / input
# gradient / weight gradient against the GEMM path: Conv2d(64, 64, 3, padding=1) over
# (32, 64, 32, 32) 14.5 / 15.2 / 23.2 ms vs 32.0 / 31.1 / 28.7; 128 channels on 16x16 53.6 vs
# 64.0 ms in all; 16 channels on 28x28 about even with the direct kernel. With OpenBLAS doing
# the 16 GEMMs instead, the forward took 27 ms: it runs these shapes slowly, and its threads
# keep spinning after each call, on the core the next transform wants. Where MKL is loaded, the
# kernel calls it for the 16 GEMMs from each of its threads, MKL on that thread alone
# (mkl.native_gemm): forward / input gradient / weight gradient of the layer above 11.5-12.1 /
# 12.5-13.6 / 11.5-13.0 ms against 10.8-13.5 / 13.2-14.2 / 18.7-19.1 with the kernel's own.
_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
# channels on each side of the GEMMs (their rows and reduction) from which Winograd is taken
_WINOGRAD_MIN_CHANNELS = 16
# a block of images' transformed tiles: about this size, so that the block's transforms and
# GEMMs stay in cache, and at least this many tiles, so that the GEMMs are not too narrow
_WINOGRAD_BLOCK_BYTES = 1 << 20
_WINOGRAD_MIN_TILES = 256
# the weight gradient's blocks: about this many tiles, and no larger than this (measured on
# Conv2d(64, 64, 3) over 32x32: 18-23 ms with one image's 272 tiles per block, 29-33 ms with
# 1,024 tiles, 40-55 ms with 2,048: a block's three arrays then leave the cache)
_WINOGRAD_WGRAD_TILES = 256
_WINOGRAD_WGRAD_BYTES = 8 << 20
_WINOGRAD_MAX_THREADS = 16  # WINOGRAD_MAX_THREADS in kernels.c


def _winograd_kernels(g: _Geom, dt: np.dtype, c_in: int, c_out: int):
    """The native kernels if the Winograd path applies to a convolution of geometry g whose
    GEMMs reduce over c_in channels into c_out: one group, 3x3, stride 1, no dilation."""
    if (g.G != 1 or g.kh != 3 or g.kw != 3 or g.sh != 1 or g.sw != 1 or g.dh != 1 or g.dw != 1
            or min(c_in, c_out) < _WINOGRAD_MIN_CHANNELS):
        return None
    return _native.for_dtype(dt)


def _winograd_weight(kern, w: np.ndarray, flip: bool) -> np.ndarray:
    """U (16, O, C) = G w G^T of each 3x3 filter of w (O, C, 3, 3); with flip, (16, C, O) of
    the flipped, transposed weight (the input gradient's)."""
    o, c = w.shape[:2]
    w = np.ascontiguousarray(w)
    u = np.empty((16, c, o) if flip else (16, o, c), w.dtype)
    kern.winograd_weight[w.dtype](_native.address(w), o, c, int(flip), _native.address(u))
    return u


def _winograd_tiles(oh: int, ow: int) -> int:
    """Tiles per image of an (oh, ow) output: each row of 2x2 tiles has a dummy one more
    (kernels.c)."""
    return -(-oh // 2) * (-(-ow // 2) + 1)


def _winograd_workspace(kern, dt: np.dtype, c: int, o: int, out_hw: tuple, nb: int, n: int,
                        forward: bool) -> tuple:
    """(threads, elements per thread, workspace): what a Winograd call of n images in blocks
    of nb needs, the workspace a scratch array to hand back once the call is done."""
    threads = min(_native.threads(), n, _WINOGRAD_MAX_THREADS)
    stride = kern.winograd_workspace[dt](c, o, out_hw[0], out_hw[1], nb, int(forward))
    return threads, stride, _scratch.get((threads * stride,), dt)


def _winograd_blocks(n: int, rows: int, per_image: int, itemsize: int) -> int:
    """Images per block: a block's (16, rows, tiles) arrays about _WINOGRAD_BLOCK_BYTES, and
    at least _WINOGRAD_MIN_TILES tiles (the GEMMs' width)."""
    by_bytes = _WINOGRAD_BLOCK_BYTES // (16 * rows * per_image * itemsize)
    return max(1, min(n, max(by_bytes, -(-_WINOGRAD_MIN_TILES // per_image))))


def _winograd_conv(kern, src: np.ndarray, top: int, left: int, u: np.ndarray, bias,
                   out_hw: tuple):
    """y (N, O, OH, OW) (plus bias) = the 3x3 stride-1 correlation of src (N, C, Hs, Ws),
    C-contiguous, zero-padded by ``top`` rows and ``left`` columns (and below and right as far
    as the output reaches), with the transformed weight u (16, O, C); None if the kernel
    declined or the result is not all finite (`_finite`)."""
    n, c, hs, ws = src.shape
    o = u.shape[1]
    oh, ow = out_hw
    dt = src.dtype
    y = backend.empty((n, o, oh, ow), dt)
    nb = _winograd_blocks(n, max(c, o), _winograd_tiles(oh, ow), dt.itemsize)
    threads, stride, work = _winograd_workspace(kern, dt, c, o, out_hw, nb, n, True)
    addr = _native.address
    bias_p = None if bias is None else addr(np.ascontiguousarray(bias, dt))
    status = kern.winograd_conv[dt](addr(src), n, c, hs, ws, top, left, addr(u), o, bias_p,
                                    addr(y), oh, ow, nb, threads, addr(work), stride,
                                    *mkl.native_gemm(dt))
    _scratch.put(work)
    return y if status == 0 and _finite(kern, y) else None


def _finite(kern, y: np.ndarray) -> bool:
    """Whether every value of a Winograd result is finite. Its transforms add and subtract, so
    an infinite input or weight makes NaN of whole tiles where the direct sums (and PyTorch)
    give inf; such a result is recomputed by the direct path. The check (kernels.c:
    all_finite) took under 0.2 ms on one core for Conv2d(64, 64, 3)'s (32, 64, 32, 32) output,
    whose Winograd forward takes 12-14 ms."""
    if not y.flags.c_contiguous:
        return bool(np.isfinite(y).all())
    return bool(kern.all_finite[y.dtype](_native.address(y), y.size))


class _WinogradInput:
    """What a Winograd forward keeps for the weight gradient: its (C-contiguous) input, which
    the weight gradient's transform reads as the forward's did. Not a scratch array: the op's
    in-place check guards it, as the input of any op."""

    __slots__ = ("x",)

    def __init__(self, x: np.ndarray) -> None:
        self.x = x


def _winograd_forward(kern, x: np.ndarray, w: np.ndarray, b, g: _Geom, keep: bool):
    """``_conv_forward`` by Winograd, or None if the kernel declined; keeps the input when
    keep."""
    x = np.ascontiguousarray(x)
    y = _winograd_conv(kern, x, g.pt, g.pl, _winograd_weight(kern, w, False), b, (g.OH, g.OW))
    if y is None:
        return None
    return y, (_WinogradInput(x) if keep else None)


def _winograd_input_grad(gy: np.ndarray, w: np.ndarray, g: _Geom, b_out):
    """The input gradient by Winograd: gy padded by 2 less the forward's padding, correlated
    with the flipped, transposed weight; None where that does not apply."""
    kern = _winograd_kernels(g, gy.dtype, g.O, g.C)
    if kern is None or not (0 <= g.pt <= 2 and 0 <= g.pl <= 2):
        return None
    u = _winograd_weight(kern, w, True)
    return _winograd_conv(kern, np.ascontiguousarray(gy), 2 - g.pt, 2 - g.pl, u, b_out,
                          (g.H, g.W))


def _winograd_weight_grad(kern, x: np.ndarray, gy: np.ndarray, g: _Geom):
    """gw (O, C, 3, 3) from the forward's input x: per block of images, the input tiles' and
    the output gradient's transforms, then 16 GEMMs summed over tiles; None if the kernel
    declined or the sums are not all finite (`_finite`)."""
    dt = gy.dtype
    gy = np.ascontiguousarray(gy)
    per_image = _winograd_tiles(g.OH, g.OW)
    by_bytes = _WINOGRAD_WGRAD_BYTES // (16 * (g.C + g.O) * per_image * dt.itemsize)
    nb = max(1, min(g.N, by_bytes, -(-_WINOGRAD_WGRAD_TILES // per_image)))
    acc = np.empty((16, g.O, g.C), dt)
    threads, stride, work = _winograd_workspace(kern, dt, g.C, g.O, (g.OH, g.OW), nb, g.N,
                                                False)
    addr = _native.address
    status = kern.winograd_weight_grad[dt](addr(x), g.N, g.C, g.H, g.W, g.pt, g.pl, addr(gy),
                                           g.O, g.OH, g.OW, nb, threads, addr(work), stride,
                                           addr(acc), *mkl.native_gemm(dt))
    _scratch.put(work)
    if status != 0 or not _finite(kern, acc):
        return None
    G = np.array(_WINOGRAD_G, dt)
    return np.matmul(np.matmul(G.T, acc.reshape(4, 4, g.O, g.C).transpose(2, 3, 0, 1)), G)


def _conv_forward(x: np.ndarray, w: np.ndarray, b, g: _Geom, keep: bool):
    """Convolution of x (N, C, H, W) plus bias b; returns (y (N, O, OH, OW), saved) with
    ``saved`` what ``_conv_backward`` needs for the weight gradient (None unless ``keep``): a
    scratch array holding the patch matrix or the padded input, to hand back to ``_scratch``
    once backward is done with it, or a Winograd forward's input (``_WinogradInput``)."""
    kern = _winograd_kernels(g, x.dtype, g.C, g.O)
    if kern is not None:
        done = _winograd_forward(kern, x, w, b, g, keep)
        if done is not None:
            return done
    kern = _native_kernels(g, x.dtype, g.C * g.kh * g.kw, g.OW)
    if kern is not None:
        return _native_forward(kern, x, w, b, g, keep)
    w2 = w.reshape(g.G, g.Og, -1)
    if g.grid:
        buf = _padded_cmajor(x, g, g.tail)
        yg = _grid_matmul(w2, _grid_taps(buf, 0, 1, g), _scratch.get((g.G, g.Og, g.M), x.dtype))
        y = _to_batch_first(_grid(yg.reshape(g.O, g.M), g.O, g)[:, :, :g.OH, :g.OW], b)
        _scratch.put(yg)
        if keep:
            return y, buf
        _scratch.put(buf)
        return y, None
    buf = _padded_cmajor(x, g, 0)
    cols = _im2col(buf, g)
    P = g.OH * g.OW
    if g.G == 1 and P >= _PER_IMAGE_MIN_P:
        # one GEMM per image, batched inside NumPy, written straight into the (N, O, OH, OW)
        # output: no channels-first result to transpose afterwards
        y = backend.empty((g.N, g.O, g.OH, g.OW), x.dtype)
        mkl.matmul(w2[0], cols[0].reshape(-1, g.N, P).transpose(1, 0, 2),
                   out=y.reshape(g.N, g.O, P))
        if b is not None:
            np.add(y, b.reshape(g.O, 1, 1), out=y)
    else:
        yc = _scratch.get((g.G, g.Og, cols.shape[-1]), x.dtype)
        _matmul_wide(w2, cols, yc)
        y = _to_batch_first(yc.reshape(g.O, g.N, g.OH, g.OW), b)
        _scratch.put(yc)
    if keep and cols.nbytes <= _KEEP_COLS_BYTES:
        _scratch.put(buf)
        return y, cols
    _scratch.put(cols)
    if keep:
        return y, buf
    _scratch.put(buf)
    return y, None


def _weight_grad_operand(x: np.ndarray, g: _Geom) -> np.ndarray:
    """What ``_conv_backward`` reads for the weight gradient, without running the forward
    (a scratch array)."""
    return _padded_cmajor(x, g, g.tail if g.grid else 0)


def _gy_on_grid(gy: np.ndarray, g: _Geom, lead: int) -> np.ndarray:
    """gy (N, O, OH, OW) scattered on the padded grid, channels first, after ``lead`` zeros:
    a scratch (O, lead + N*Hp*Wp), zero where the grid has no output."""
    gyb = _scratch.get((g.O, lead + g.M), gy.dtype)
    gyb[:, :lead] = 0
    v = _grid(gyb[:, lead:], g.O, g)
    _zero_margins(v, 0, g.OH, 0, g.OW)
    v[:, :, :g.OH, :g.OW] = gy.transpose(1, 0, 2, 3)
    return gyb


def _crop_to_batch_first(gbuf: np.ndarray, g: _Geom, b_out) -> np.ndarray:
    """The input-sized part of a flat grid gradient (C, >=N*Hp*Wp) as (N, C, H, W)."""
    gx = _grid(gbuf, g.C, g)[:, :, g.pt:g.pt + g.H, g.pl:g.pl + g.W]
    return _to_batch_first(gx, b_out)


# the patch gradients of the shifted-adds input gradient are materialised up to this size;
# larger ones go through col2im
_GCOLS_MAX_BYTES = 32 << 20
# ... and only when outputs fill enough of the grid: the GEMM runs over every grid position,
# so a 5x5 input to a 1x1 output (LeNet's last conv) would do 25x the work of col2im
_ADDS_MIN_DENSITY = 0.4
_ADDS_BLOCK_BYTES = 8 << 20


def _conv_backward(gy: np.ndarray, w: np.ndarray, saved, g: _Geom, need_x: bool,
                   need_w: bool, b_out=None):
    """Gradients of a convolution given gy (N, O, OH, OW) and what ``_conv_forward`` saved
    (needed for the weight gradient only).

    Returns (gx, gw): gx (N, C, H, W) (plus ``b_out`` per channel when given, used by
    conv_transpose for its bias), gw (O, Cg, kh, kw); None for what is not needed.
    """
    gx = None
    if need_x:
        gx = _winograd_input_grad(gy, w, g, b_out)
        if gx is None:
            gx = _native_input_grad(gy, w, g, b_out)
    if type(saved) is _WinogradInput:
        gw = None
        if need_w:
            kern = _native.lib()
            if kern is not None:
                gw = _winograd_weight_grad(kern, saved.x, gy, g)
            if gw is None:  # the kernels declined or were turned off since the forward
                buf = _weight_grad_operand(saved.x, g)
                gw = _conv_backward_numpy(gy, w, buf, g, False, True)[1]
                _scratch.put(buf)
        if need_x and gx is None:
            gx = _conv_backward_numpy(gy, w, None, g, True, False, b_out)[0]
        return gx, gw
    if saved is not None and saved.ndim == 1:  # the flat padded input of a native forward
        gw = None
        kern = _native.lib() if need_w else None
        if need_w and kern is None:  # the kernels were turned off since the forward
            x = saved[:g.N * g.C * g.Hp * g.Wp].reshape(g.N, g.C, g.Hp, g.Wp)
            buf = _weight_grad_operand(x[:, :, g.pt:g.pt + g.H, g.pl:g.pl + g.W], g)
            gw = _conv_backward_numpy(gy, w, buf, g, False, True)[1]
            _scratch.put(buf)
        elif kern is not None:
            lanes = kern.conv_bytes // gy.itemsize
            # the share of the lanes that hold values, with lanes over output channels and
            # with lanes along the output rows (one input channel only)
            over_channels = g.O / (-(-g.O // lanes) * lanes)
            along_rows = g.OW / (-(-g.OW // lanes) * lanes)
            if _rows_weight_grad_applies(g, kern) and along_rows >= over_channels:
                gw = _native_weight_grad_rows(kern, saved, gy, g)
            elif over_channels >= 0.5:
                gw = _native_weight_grad(kern, saved, gy, g)
            else:  # most lanes would idle: patches and a GEMM (LeNet's 6-channel conv: 1.9x)
                gw = _native_weight_grad_patches(kern, saved, gy, g)
        if need_x and gx is None:
            gx = _conv_backward_numpy(gy, w, None, g, True, False, b_out)[0]
        return gx, gw
    if gx is not None:
        return gx, _conv_backward_numpy(gy, w, saved, g, False, need_w)[1]
    return _conv_backward_numpy(gy, w, saved, g, need_x, need_w, b_out)


def _weight_grad_from_cols(cols: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """(K, O) weight-gradient sums from the patch matrix cols (K, n*P) of n images and their
    output gradient gy (n, O, OH, OW)."""
    n, o = gy.shape[:2]
    K = cols.shape[0]
    P = gy.shape[2] * gy.shape[3]
    if P >= _PER_IMAGE_MIN_P_W and n * K * o * gy.itemsize <= _PER_IMAGE_MAX_BYTES:
        part = mkl.matmul(cols.reshape(K, n, P).transpose(1, 0, 2),
                          gy.reshape(n, o, P).transpose(0, 2, 1))  # (n, K, O)
        return part.sum(axis=0)
    gyc = _scratch.get((o, n * P), gy.dtype)
    np.copyto(gyc.reshape(o, n, P), gy.reshape(n, o, P).transpose(1, 0, 2))
    gw = _matmul_long_nt(cols[None], gyc[None])[0]
    _scratch.put(gyc)
    return gw


def _conv_backward_numpy(gy: np.ndarray, w: np.ndarray, saved, g: _Geom, need_x: bool,
                         need_w: bool, b_out=None):
    """``_conv_backward`` by BLAS and NumPy alone."""
    gx = gw = None
    m = g.M
    kk = g.kh * g.kw
    stride1 = g.sh == 1 and g.sw == 1
    # Input gradient on the grid (stride 1): gx[q] = sum_t w_t^T gy[q - off_t], either as
    # patches of gy (rows Og*kk) times w, or as w times gy (rows Cg*kk) and kk shifted adds
    # of long rows; the first copies less when there are not many more output than input
    # channels. Otherwise col2im, which adds kh*kw strided slices.
    x_patches = need_x and g.grid and g.Og <= 2 * g.Cg
    x_adds = (need_x and not x_patches and stride1
              and g.C * kk * m * gy.itemsize <= _GCOLS_MAX_BYTES
              and _ADDS_MIN_DENSITY * g.Hp * g.Wp <= g.OH * g.OW)
    gyb: Any = None
    gyc: Any = None
    if g.grid or x_adds:
        lead = g.tail if x_patches else 0
        gyb = _gy_on_grid(gy, g, lead)
        gyg = gyb.reshape(g.G, g.Og, lead + m)
    P = g.OH * g.OW
    K = g.Cg * kk
    # the weight gradient as one GEMM per image on gy as it is (no channels-first copy), the
    # (N, K, O) partial products then summed: pays off for large images, while small
    w_per_image = (need_w and not g.grid and g.G == 1 and P >= _PER_IMAGE_MIN_P_W
                   and g.N * K * g.O * gy.itemsize <= _PER_IMAGE_MAX_BYTES)
    if (need_w and not g.grid and not w_per_image) or (need_x and not (x_patches or x_adds)):
        gyc = _scratch.get((g.O, g.N, g.OH, g.OW), gy.dtype)
        np.copyto(gyc, gy.transpose(1, 0, 2, 3))
        gyc = gyc.reshape(g.G, g.Og, -1)
    if need_w:
        if g.grid:
            gw = _grid_matmul_nt(_grid_taps(saved, 0, 1, g), gyg[:, :, lead:])  # (G, K, Og)
        elif w_per_image:
            cols = saved if saved.ndim == 3 else _im2col(saved, g)
            part = mkl.matmul(cols[0].reshape(K, g.N, P).transpose(1, 0, 2),
                              gy.reshape(g.N, g.O, P).transpose(0, 2, 1))  # (N, K, O)
            gw = part.sum(axis=0)[None]
            if cols is not saved:
                _scratch.put(cols)
        elif saved.ndim == 3:
            gw = _matmul_long_nt(saved, gyc)  # (G, K, Og)
        else:
            cols = _im2col(saved, g)
            gw = _matmul_long_nt(cols, gyc)
            _scratch.put(cols)
        gw = gw.transpose(0, 2, 1).reshape(g.O, g.Cg, g.kh, g.kw)
    if need_x:
        w2 = w.reshape(g.G, g.Og, -1)
        if x_patches:
            wx = w.reshape(g.G, g.Og, g.Cg, kk).transpose(0, 2, 1, 3).reshape(g.G, g.Cg, -1)
            gbuf = _grid_matmul(wx, _grid_taps(gyb, lead, -1, g),
                                _scratch.get((g.G, g.Cg, m), gy.dtype))
            gx = _crop_to_batch_first(gbuf.reshape(g.C, m), g, b_out)
        elif x_adds:
            # one block of grid columns at a time, so the patch gradients are still in cache
            # when the shifted adds read them
            B = min(m, max(512, _ADDS_BLOCK_BYTES // (g.C * kk * gy.itemsize)))
            gcols = _scratch.get((g.G, g.Cg * kk, B), gy.dtype)
            gbuf = _scratch.zeros((g.C, m + g.tail), gy.dtype)
            wt = w2.transpose(0, 2, 1)
            offs = g.offsets()
            for s in range(0, m, B):
                n = min(B, m - s)
                gb = gcols[:, :, :n]
                mkl.matmul(wt, gyg[:, :, s:s + n], out=gb)
                gc = gb.reshape(g.C, kk, n)
                for t, off in enumerate(offs):
                    gbuf[:, s + off:s + off + n] += gc[:, t]
            gx = _crop_to_batch_first(gbuf, g, b_out)
            _scratch.put(gcols)
        else:
            gcols = _scratch.get((g.G, g.Cg * kk, gyc.shape[-1]), gy.dtype)
            _matmul_wide(w2.transpose(0, 2, 1), gyc, gcols)
            gc = gcols.reshape(g.C, g.kh, g.kw, g.N, g.OH, g.OW)
            gbuf = _scratch.zeros((g.C, g.N, g.Hp, g.Wp), gy.dtype)
            eh = g.sh * (g.OH - 1) + 1
            ew = g.sw * (g.OW - 1) + 1
            for i in range(g.kh):
                for j in range(g.kw):
                    y0 = i * g.dh
                    x0 = j * g.dw
                    gbuf[:, :, y0:y0 + eh:g.sh, x0:x0 + ew:g.sw] += gc[:, i, j]
            gx = _to_batch_first(gbuf[:, :, g.pt:g.pt + g.H, g.pl:g.pl + g.W], b_out)
            _scratch.put(gcols)
        _scratch.put(gbuf)
    _scratch.put(gyb, gyc if gyc is None else gyc.base)
    return gx, gw


def _bias_grad(gy: np.ndarray) -> np.ndarray:
    """gy (N, O, OH, OW) summed to (O,): over the batch first, as whole contiguous planes
    (vectorised adds), then along each plane; twice as fast as one reduction over (0, 2, 3)."""
    if not gy.flags.c_contiguous:  # e.g. a broadcast gradient: reduce the view, never copy it
        return gy.sum(axis=(0, 2, 3))
    n, o = gy.shape[:2]
    return gy.reshape(n, o, -1).sum(axis=0).sum(axis=1)


def _as_4d(a: np.ndarray, nd: int, batched: bool) -> np.ndarray:
    if nd == 1:
        a = a[:, :, None, :] if batched else a[:, None, :]
    return a if batched else a[None]


def _from_4d(a: np.ndarray, nd: int, batched: bool) -> np.ndarray:
    if not batched:
        a = a[0]
    if nd == 1:
        a = a[..., 0, :]
    return a


class ConvNd(Function):
    """Convolution (1-d or 2-d) with bias, one node; keeps the padded input (for the weight
    gradient) and the weight (for the input gradient), each only if needed."""

    def forward(self, x, w, b, stride, pads, dilation, groups, nd):
        self.nd = nd
        self.batched = batched = x.ndim == nd + 2
        x4 = _as_4d(x, nd, batched)
        w4 = w[:, :, None, :] if nd == 1 else w
        g = _Geom(x4.shape, w4.shape, stride, pads, dilation, groups)
        nx, nw, _ = self.needs_input_grad
        y, saved = _conv_forward(x4, w4, b, g, keep=nw)
        self.g = g
        self.saved = saved
        self.w = w4 if nx else None
        self.x_shape = x.shape
        self.w_shape = w.shape
        return _from_4d(y, nd, batched)

    def backward(self, grad):
        nx, nw, nb = self.needs_input_grad
        gy = _as_4d(grad, self.nd, self.batched)
        gx, gw = _conv_backward(gy, self.w, self.saved, self.g, nx, nw)
        # (a reshape, even to the same shape, makes a view, which the engine copies before
        # it becomes a leaf's .grad)
        if gx is not None and gx.shape != self.x_shape:
            gx = gx.reshape(self.x_shape)
        if gw is not None and gw.shape != self.w_shape:
            gw = gw.reshape(self.w_shape)
        gb = _bias_grad(gy) if nb else None
        return gx, gw, gb

    def _release(self) -> None:
        # the engine calls this once backward no longer needs the saved arrays (not with
        # retain_graph=True); the saved scratch array can then serve the next call
        _scratch.put(self.__dict__.get("saved"))
        super()._release()


class ConvTransposeNd(Function):
    """Transposed convolution (the input gradient of a convolution) with bias, one node."""

    def forward(self, x, w, b, stride, pads, dilation, groups, out_hw, nd):
        self.nd = nd
        self.batched = batched = x.ndim == nd + 2
        x4 = _as_4d(x, nd, batched)
        w4 = w[:, :, None, :] if nd == 1 else w
        n, _, h, wd = x4.shape
        # the convolution whose input gradient this is: input = our output, output = our input
        conv_in = (n, w4.shape[1] * groups, out_hw[0], out_hw[1])
        g = _Geom(conv_in, w4.shape, stride, pads, dilation, groups, out_hw=(h, wd))
        y, _ = _conv_backward(x4, w4, None, g, True, False, b_out=b)
        self.g = g
        nx, nw, _ = self.needs_input_grad
        self.x = x4 if nw else None
        self.w = w4 if nx else None
        self.x_shape = x.shape
        self.w_shape = w.shape
        return _from_4d(y, nd, batched)

    def backward(self, grad):
        nx, nw, nb = self.needs_input_grad
        g = self.g
        gy = _as_4d(grad, self.nd, self.batched)
        gx = gw = None
        if nx:
            # the input gradient is the convolution of gy ...
            gx, saved = _conv_forward(gy, self.w, None, g, keep=nw)
            if gx.shape != self.x_shape:
                gx = gx.reshape(self.x_shape)
        elif nw:
            saved = _weight_grad_operand(gy, g)
        if nw:
            # ... and the weight gradient is that convolution's, with our input as its
            # output gradient
            _, gw = _conv_backward(self.x, None, saved, g, False, True)
            if gw.shape != self.w_shape:
                gw = gw.reshape(self.w_shape)
            _scratch.put(saved)
        gb = _bias_grad(gy) if nb else None
        return gx, gw, gb


# a convolution followed by an activation, one node each (ops/fused.py)
_CONV_ACTIVATED = fused.activated(ConvNd)


def _conv(op: str, nd: int, input, weight, bias, stride, padding, dilation, groups,
          activation: str | None = None):
    """The checks and the op of ``conv1d``/``conv2d``; with ``activation`` (one of
    ``elementwise.ACTIVATIONS``), that activation of the result as the same node."""
    _check_input_dims(op, input, nd)
    _check_tensor(op, "weight", weight)
    sx, sw = input.data.shape, weight.data.shape
    if len(sw) != nd + 2:
        raise ValueError(
            f"{op}: expected a {nd + 2}-d weight (out_channels, in_channels/groups, "
            f"{'kL' if nd == 1 else 'kH, kW'}), got weight of shape {sw}")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups!r}")
    c = sx[-nd - 1]
    if c != sw[1] * groups:
        raise ValueError(
            f"{op}: expected input with {sw[1] * groups} channels (weight.shape[1] * groups = "
            f"{sw[1]} * {groups}), got input of shape {sx} and weight of shape {sw}")
    if sw[0] % groups:
        raise ValueError(
            f"{op}: out_channels (weight.shape[0] = {sw[0]}) must be divisible by "
            f"groups={groups}; weight shape {sw}")
    if bias is not None:
        _check_tensor(op, "bias", bias)
        if bias.data.shape != (sw[0],):
            raise ValueError(
                f"{op}: expected bias of shape ({sw[0]},), got {bias.data.shape}; weight shape "
                f"{sw}")
    if input.data.dtype != weight.data.dtype or (bias is not None
                                                 and bias.data.dtype != weight.data.dtype):
        bdt = "" if bias is None else f", bias {bias.data.dtype}"
        raise TypeError(
            f"{op}: input dtype {input.data.dtype} differs from weight dtype "
            f"{weight.data.dtype}{bdt}; convert the input (x.float()) or the model "
            "(model.double())")
    stride = _ntuple(op, "stride", stride, nd, 1)
    dilation = _ntuple(op, "dilation", dilation, nd, 1)
    kernel = tuple(sw[2:])
    pads = _conv_padding(op, padding, nd, kernel, stride, dilation)
    spatial = sx[-nd:]
    for n, (lo, hi), k, d in zip(spatial, pads, kernel, dilation):
        if n + lo + hi < d * (k - 1) + 1:
            raise ValueError(
                f"{op}: padded input size {tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads))}"
                f" is smaller than the dilated kernel size "
                f"{tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))}; input shape {sx}, "
                f"weight shape {sw}, padding {padding!r}, dilation {dilation}")
    if nd == 1:
        stride = (1,) + stride
        dilation = (1,) + dilation
        pads = ((0, 0),) + pads
    if activation is not None and input.data.dtype.kind == "f":
        return _CONV_ACTIVATED[activation].apply(
            input, weight, bias, stride=stride, pads=pads, dilation=dilation,
            groups=int(groups), nd=nd)
    y = ConvNd.apply(input, weight, bias, stride=stride, pads=pads, dilation=dilation,
                     groups=int(groups), nd=nd)
    return y if activation is None else getattr(elementwise, activation)(y)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Size = 1,
           padding: Size | str = 0, dilation: Size = 1, groups: int = 1) -> Tensor:
    """2-d convolution (cross-correlation, as in PyTorch) over an (N, C, H, W) input.

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride, dilation: an int or a pair.
        padding: an int, a pair, or 'valid' (no padding) / 'same' (output size = input size,
            stride 1 only; an odd total is padded one more on the right).
        groups: split the channels into this many independent convolutions.

    Example:
        >>> F.conv2d(deepgrad.randn(8, 3, 32, 32), deepgrad.randn(16, 3, 3, 3), padding=1).shape
        (8, 16, 32, 32)
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Size = 1,
           padding: Size | str = 0, dilation: Size = 1, groups: int = 1) -> Tensor:
    """1-d convolution over an (N, C, L) input; weight ``(C_out, C_in / groups, kL)``.

    Arguments as in ``conv2d`` with single ints (or 1-tuples).

    Example:
        >>> F.conv1d(deepgrad.randn(4, 2, 50), deepgrad.randn(8, 2, 5)).shape
        (4, 8, 46)
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(op: str, nd: int, input, weight, bias, stride, padding, output_padding,
                    groups, dilation):
    _check_input_dims(op, input, nd)
    _check_tensor(op, "weight", weight)
    sx, sw = input.data.shape, weight.data.shape
    if len(sw) != nd + 2:
        raise ValueError(
            f"{op}: expected a {nd + 2}-d weight (in_channels, out_channels/groups, "
            f"{'kL' if nd == 1 else 'kH, kW'}), got weight of shape {sw}")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups!r}")
    if sx[-nd - 1] != sw[0]:
        raise ValueError(
            f"{op}: expected input with {sw[0]} channels (weight.shape[0]), got input of shape "
            f"{sx} and weight of shape {sw}")
    if sw[0] % groups:
        raise ValueError(
            f"{op}: in_channels (weight.shape[0] = {sw[0]}) must be divisible by "
            f"groups={groups}; weight shape {sw}")
    cout = sw[1] * groups
    if bias is not None:
        _check_tensor(op, "bias", bias)
        if bias.data.shape != (cout,):
            raise ValueError(
                f"{op}: expected bias of shape ({cout},), got {bias.data.shape}; weight shape "
                f"{sw}, groups={groups}")
    if input.data.dtype != weight.data.dtype or (bias is not None
                                                 and bias.data.dtype != weight.data.dtype):
        raise TypeError(
            f"{op}: input dtype {input.data.dtype} differs from weight dtype "
            f"{weight.data.dtype}; convert the input (x.float()) or the model (model.double())")
    stride = _ntuple(op, "stride", stride, nd, 1)
    dilation = _ntuple(op, "dilation", dilation, nd, 1)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of {nd} ints, got "
                         f"{padding!r}")
    padding = _ntuple(op, "padding", padding, nd, 0)
    output_padding = _ntuple(op, "output_padding", output_padding, nd, 0)
    kernel = tuple(sw[2:])
    out = []
    for n, k, s, p, op_, d in zip(sx[-nd:], kernel, stride, padding, output_padding, dilation):
        if op_ >= s and op_ >= d:
            raise ValueError(
                f"{op}: output_padding must be smaller than either stride or dilation; got "
                f"output_padding={output_padding}, stride={stride}, dilation={dilation}")
        size = (n - 1) * s - 2 * p + d * (k - 1) + op_ + 1
        out.append(size)
    if any(o < 1 for o in out):
        raise ValueError(
            f"{op}: output size {tuple(out)} is not positive; input shape {sx}, weight shape "
            f"{sw}, stride {stride}, padding {padding}, dilation {dilation}")
    pads = tuple((p, p) for p in padding)
    if nd == 1:
        stride = (1,) + stride
        dilation = (1,) + dilation
        pads = ((0, 0),) + pads
        out = [1] + out
    return ConvTransposeNd.apply(input, weight, bias, stride=stride, pads=pads,
                                 dilation=dilation, groups=int(groups), out_hw=tuple(out), nd=nd)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                     stride: Size = 1, padding: Size = 0, output_padding: Size = 0,
                     groups: int = 1, dilation: Size = 1) -> Tensor:
    """2-d transposed convolution (the gradient of ``conv2d`` with respect to its input).

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_in, C_out / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride, padding, dilation: as the ``conv2d`` this transposes (padding removes
            ``dilation * (k - 1) - padding`` of zero padding from both sides).
        output_padding: extra size added to one side of the output, smaller than stride or
            dilation; picks among the input sizes that ``conv2d`` maps to the same output size.

    Output size per dim: ``(in - 1) * stride - 2 * padding + dilation * (k - 1) +
    output_padding + 1``.

    Example:
        >>> F.conv_transpose2d(deepgrad.randn(2, 8, 7, 7), deepgrad.randn(8, 4, 4, 4),
        ...                    stride=2, padding=1).shape
        (2, 4, 14, 14)
    """
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                     stride: Size = 1, padding: Size = 0, output_padding: Size = 0,
                     groups: int = 1, dilation: Size = 1) -> Tensor:
    """1-d transposed convolution; weight ``(C_in, C_out / groups, kL)``. See
    ``conv_transpose2d``."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


# =========================================================================================
# padding modes of the conv layers (reflect, replicate, circular)
# =========================================================================================

def _mode_pad(input: Tensor, pads: tuple, mode: str) -> Tensor:
    """Pad the last ``len(pads)`` dims by ``pads`` = ((lo, hi), ...) with a non-zero mode."""
    s = input.data.shape
    widths = [(0, 0)] * (len(s) - len(pads)) + list(pads)
    return pad_widths(input, widths, mode, op=f"padding_mode={mode!r}")


# =========================================================================================
# pooling
# =========================================================================================


def _pool_out(op: str, n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    eff = d * (k - 1) + 1
    num = n + 2 * p - eff
    if ceil_mode:
        out = -(-num // s) + 1
        # the last window must start inside the input or its left padding
        if (out - 1) * s >= n + p:
            out -= 1
    else:
        out = num // s + 1
    return out


def _pool_args(op: str, nd: int, input, kernel_size, stride, padding, dilation, ceil_mode,
               max_pool: bool):
    """Validated (kernel, stride, padding, dilation, out) tuples for a 2-d view of the op."""
    _check_input_dims(op, input, nd)
    kernel = _ntuple(op, "kernel_size", kernel_size, nd, 1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel
    else:
        stride = _ntuple(op, "stride", stride, nd, 1)
    padding = _ntuple(op, "padding", padding, nd, 0)
    dilation = _ntuple(op, "dilation", dilation, nd, 1)
    for k, p, d in zip(kernel, padding, dilation):
        limit = (d * (k - 1) + 1) // 2 if max_pool else k // 2
        if p > limit:
            raise ValueError(
                f"{op}: padding should be at most half of the (dilated) kernel size; got "
                f"padding={padding}, kernel_size={kernel}"
                + (f", dilation={dilation}" if max_pool else ""))
    spatial = input.data.shape[-nd:]
    out = tuple(_pool_out(op, n, k, s, p, d, ceil_mode)
                for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation))
    if any(o < 1 for o in out):
        raise ValueError(
            f"{op}: output size {out} is too small; input shape {input.data.shape}, "
            f"kernel_size={kernel}, stride={stride}, padding={padding}")
    if nd == 1:
        kernel, stride, padding, dilation, out = ((1,) + kernel, (1,) + stride, (0,) + padding,
                                                  (1,) + dilation, (1,) + out)
    return kernel, stride, padding, dilation, out


class _PoolGeom:
    """Window geometry of a 2-d pooling: input (H, W) padded to (Hp, Wp) by (pt, pl) on the
    top/left and as much as the last windows reach on the bottom/right."""

    __slots__ = ("H", "W", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "OH", "OW", "Hp",
                 "Wp", "tiles", "halves")

    def __init__(self, hw, kernel, stride, padding, dilation, out):
        self.H, self.W = hw
        self.kh, self.kw = kernel
        self.sh, self.sw = stride
        self.ph, self.pw = padding
        self.dh, self.dw = dilation
        self.OH, self.OW = out
        self.Hp = max(self.ph + self.H, (self.OH - 1) * self.sh + self.dh * (self.kh - 1) + 1)
        self.Wp = max(self.pw + self.W, (self.OW - 1) * self.sw + self.dw * (self.kw - 1) + 1)
        # windows that tile the input exactly: each element is in exactly one window
        self.tiles = (self.sh == self.kh and self.sw == self.kw and self.dh == 1
                      and self.dw == 1 and self.ph == 0 and self.pw == 0
                      and self.OH * self.kh == self.H and self.OW * self.kw == self.W)
        # 2x2 windows with stride 2 over the whole input (the native pooling kernels' case)
        self.halves = self.tiles and self.kh == 2 and self.kw == 2

    def padded(self, x: np.ndarray, fill) -> np.ndarray:
        if self.Hp == self.H and self.Wp == self.W:
            return x
        xp = np.full(x.shape[:-2] + (self.Hp, self.Wp), fill, x.dtype)
        xp[..., self.ph:self.ph + self.H, self.pw:self.pw + self.W] = x
        return xp

    def taps(self, a: np.ndarray):
        """The window elements as kh*kw strided (..., OH, OW) views of padded ``a``."""
        eh = self.sh * (self.OH - 1) + 1
        ew = self.sw * (self.OW - 1) + 1
        for i in range(self.kh):
            y0 = i * self.dh
            for j in range(self.kw):
                x0 = j * self.dw
                yield a[..., y0:y0 + eh:self.sh, x0:x0 + ew:self.sw]

    def unpad(self, a: np.ndarray) -> np.ndarray:
        if self.Hp == self.H and self.Wp == self.W:
            return a
        return np.ascontiguousarray(a[..., self.ph:self.ph + self.H, self.pw:self.pw + self.W])


def _tap_reduce(ufunc, taps, shape: tuple, dtype) -> np.ndarray:
    """``ufunc`` folded over the window taps into a (reusable) array of the output shape."""
    out = backend.empty(shape, dtype)
    first = next(taps)
    second = next(taps, None)
    if second is None:
        np.copyto(out, first)
    else:
        ufunc(first, second, out=out)
        for v in taps:
            ufunc(out, v, out=out)
    return out


def _pool_2x2_kernels(g: _PoolGeom, a: np.ndarray):
    """The native kernels for 2x2 pooling of the float32 array ``a`` (the input, or the
    output's gradient), or None where they do not apply."""
    if a.dtype != np.float32:
        return None
    return _native.unary_operands(a, a)


class MaxPoolNd(Function):
    """Max pooling: a running maximum over the window taps, then the tap of each window's
    first maximum (PyTorch's tie rule), kept as a small int array for backward."""

    saves_inputs = False

    def forward(self, x, kernel, stride, padding, dilation, out, return_indices, nd):
        self.x_shape = x.shape
        x4 = x.reshape(x.shape[:-1] + (1, x.shape[-1])) if nd == 1 else x
        g = _PoolGeom(x4.shape[-2:], kernel, stride, padding, dilation, out)
        self.g = g
        if g.halves and not return_indices:
            y = self._native_2x2(x4)
            if y is not None:
                return y.reshape(self.x_shape[:-1] + (g.OW,)) if nd == 1 else y
        xp = g.padded(x4, -np.inf)
        # (np.maximum propagates NaN, as PyTorch's max pooling does)
        m = _tap_reduce(np.maximum, g.taps(xp), x4.shape[:-2] + (g.OH, g.OW), x.dtype)
        y = m.reshape(m.shape[:-2] + (m.shape[-1],)) if nd == 1 else m
        if not (self.needs_input_grad[0] or return_indices):
            return y
        choice = self._first_max(xp, m)
        self.choice = choice
        if not return_indices:
            return y
        # flat index into each (H, W) input plane of the chosen element
        i, j = np.divmod(choice.astype(np.int64), g.kw)
        rows = np.arange(g.OH, dtype=np.int64)[:, None] * g.sh - g.ph + i * g.dh
        cols = np.arange(g.OW, dtype=np.int64) * g.sw - g.pw + j * g.dw
        flat = rows * g.W + cols
        return y, (flat.reshape(y.shape) if nd == 1 else flat)

    def _native_2x2(self, x: np.ndarray):
        """The forward of 2x2 windows with stride 2 (maximum and choice) in one native pass
        over float32, bit for bit the NumPy path's; None where the kernel does not apply."""
        g = self.g
        k = _pool_2x2_kernels(g, x)
        if k is None:
            return None
        y = backend.empty(x.shape[:-2] + (g.OH, g.OW), x.dtype)
        choice = np.empty(y.shape, np.uint8)
        addr = _native.address
        k.max_pool_2x2[x.dtype](addr(x), x.size // (g.H * g.W), g.H, g.W, addr(y),
                                addr(choice))
        self.choice = choice
        return y

    def _first_max(self, xp: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Per window, the index of the first tap equal to the maximum: the number of taps
        before it that differ from it, counted with one compare, one ``&`` and one add per
        tap (masked writes, ``where=`` and boolean indexing, are slow). The last tap needs no
        compare: a window that gets there without a match has its maximum there, or is NaN."""
        g = self.g
        kk = g.kh * g.kw
        dt = np.dtype(np.uint8 if kk <= 256 else np.int32)
        choice = np.zeros(m.shape, dt)
        if kk == 1:
            return choice
        missed = np.empty(m.shape, bool)  # no tap so far equals the maximum
        ne = np.empty(m.shape, bool)
        taps = g.taps(xp)
        np.not_equal(next(taps), m, out=missed)
        np.add(choice, missed, out=choice)
        for t, v in enumerate(taps, 1):
            if t == kk - 1:
                break
            np.not_equal(v, m, out=ne)
            missed &= ne
            np.add(choice, missed, out=choice)
        nan = np.isnan(m)
        if nan.any():
            # windows whose maximum is NaN: PyTorch picks the last NaN
            for t, v in enumerate(g.taps(xp)):
                np.copyto(choice, dt.type(t), where=np.isnan(v) & nan)
        return choice

    def backward(self, grad, grad_indices=None):
        g = self.g
        choice = self.choice
        gy = grad.reshape(choice.shape)
        lead = choice.shape[:-2]
        if g.halves and choice.dtype == np.uint8 and choice.flags.c_contiguous:
            k = _pool_2x2_kernels(g, gy)
            if k is not None:
                gx = backend.empty(lead + (g.H, g.W), grad.dtype)
                addr = _native.address
                k.max_pool_2x2_backward[gy.dtype](addr(gy), addr(choice),
                                                  gy.size // (g.OH * g.OW), g.H, g.W, addr(gx))
                return gx.reshape(self.x_shape), None, None, None, None, None, None, None
        sel = np.empty(choice.shape, bool)
        if g.tiles:
            # every input element is in exactly one window: write, no zero fill, no adds
            gx = backend.empty(lead + (g.Hp, g.Wp), grad.dtype)
            for t, v in enumerate(g.taps(gx)):
                np.equal(choice, t, out=sel)
                np.multiply(gy, sel, out=v)
        else:
            gx = backend.empty(lead + (g.Hp, g.Wp), grad.dtype)
            gx.fill(0)
            tmp = np.empty(choice.shape, grad.dtype)
            for t, v in enumerate(g.taps(gx)):
                np.equal(choice, t, out=sel)
                np.multiply(gy, sel, out=tmp)
                v += tmp
        return g.unpad(gx).reshape(self.x_shape), None, None, None, None, None, None, None


def _max_pool(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode,
              return_indices):
    kernel, stride, padding, dilation, out = _pool_args(
        op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, True)
    res = MaxPoolNd.apply(input, kernel, stride, padding, dilation, out, bool(return_indices),
                          nd)
    return res


def max_pool2d(input: Tensor, kernel_size: Size, stride: OptSize = None, padding: Size = 0,
               dilation: Size = 1, ceil_mode: bool = False, return_indices: bool = False):
    """2-d max pooling over an (N, C, H, W) or (C, H, W) input.

    Args:
        kernel_size: window size, an int or a pair.
        stride: window step (default: ``kernel_size``).
        padding: implicit -inf padding on both sides, at most half the dilated kernel.
        dilation: spacing between window elements.
        ceil_mode: round the output size up, keeping windows that start inside the input.
        return_indices: also return the flat index (into each H*W plane) of each maximum.

    At ties the gradient goes to the first maximum of the window (row-major), as in PyTorch.

    Example:
        >>> F.max_pool2d(deepgrad.randn(1, 6, 28, 28), 2).shape
        (1, 6, 14, 14)
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool1d(input: Tensor, kernel_size: Size, stride: OptSize = None, padding: Size = 0,
               dilation: Size = 1, ceil_mode: bool = False, return_indices: bool = False):
    """1-d max pooling over an (N, C, L) or (C, L) input; see ``max_pool2d``."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


class AvgPoolNd(Function):
    """Average pooling as a running sum over the window taps, then a division."""

    saves_inputs = False

    def forward(self, x, kernel, stride, padding, out, count_include_pad, divisor_override, nd):
        self.x_shape = x.shape
        x4 = x.reshape(x.shape[:-1] + (1, x.shape[-1])) if nd == 1 else x
        g = _PoolGeom(x4.shape[-2:], kernel, stride, padding, (1, 1), out)
        self.g = g
        div = self.divisor(g, count_include_pad, divisor_override, x.dtype)
        self.div = div
        # the native kernels divide by 4 (a float32 4.0, like NumPy's weak int)
        self.quarters = g.halves and isinstance(div, int) and div == 4
        if self.quarters:
            y = self._native_2x2(x4)
            if y is not None:
                return y.reshape(y.shape[:-2] + (y.shape[-1],)) if nd == 1 else y
        xp = g.padded(x4, 0)
        kk = g.kh * g.kw
        if g.tiles and kk > 16:
            # large windows: one reduction beats kh*kw adds
            lead = x4.shape[:-2]
            if g.OH == 1 and g.OW == 1:  # global pooling: a reduction over contiguous rows
                s = x4.reshape(lead + (1, 1, kk)).sum(axis=-1)
            else:
                s = x4.reshape(lead + (g.OH, g.kh, g.OW, g.kw)).sum(axis=(-3, -1))
        elif g.tiles:
            # rows first: adding whole input rows runs over contiguous memory; only the
            # kh-times smaller result is then read with the stride of the window width
            lead = x4.shape[:-2]
            r = x4
            if g.kh > 1:
                r = _tap_reduce(np.add, (x4[..., i::g.kh, :] for i in range(g.kh)),
                                lead + (g.OH, g.W), x.dtype)
            s = _tap_reduce(np.add, (r[..., j::g.kw] for j in range(g.kw)),
                            lead + (g.OH, g.OW), x.dtype)
        else:
            s = _tap_reduce(np.add, g.taps(xp), x4.shape[:-2] + (g.OH, g.OW), x.dtype)
        self.y4 = s.shape
        s /= div
        return s.reshape(s.shape[:-2] + (s.shape[-1],)) if nd == 1 else s

    def _native_2x2(self, x: np.ndarray):
        """2x2 windows with stride 2 over float32 in one native pass, bit for bit the NumPy
        path's; None where the kernel does not apply."""
        g = self.g
        k = _pool_2x2_kernels(g, x)
        if k is None:
            return None
        y = backend.empty(x.shape[:-2] + (g.OH, g.OW), x.dtype)
        addr = _native.address
        k.avg_pool_2x2[x.dtype](addr(x), x.size // (g.H * g.W), g.H, g.W, addr(y))
        self.y4 = y.shape
        return y

    @staticmethod
    def divisor(g: _PoolGeom, count_include_pad, divisor_override, dtype):
        if divisor_override is not None:
            return divisor_override
        overhang = g.Hp > g.H + 2 * g.ph or g.Wp > g.W + 2 * g.pw
        if not overhang and (count_include_pad or (g.ph == 0 and g.pw == 0)):
            return g.kh * g.kw

        def counts(n_out, k, s, p, n):
            start = np.arange(n_out) * s - p
            end = np.minimum(start + k, n + p)
            size = end - start
            if not count_include_pad:
                size = np.minimum(end, n) - np.maximum(start, 0)
            return size

        ch = counts(g.OH, g.kh, g.sh, g.ph, g.H)
        cw = counts(g.OW, g.kw, g.sw, g.pw, g.W)
        return (ch[:, None] * cw[None, :]).astype(dtype)

    def backward(self, grad):
        g = self.g
        gy = grad.reshape(self.y4)
        lead = gy.shape[:-2]
        dt = np.result_type(gy, self.div)
        if self.quarters:
            k = _pool_2x2_kernels(g, gy)
            if k is not None:
                gx = backend.empty(lead + (g.H, g.W), dt)
                k.avg_pool_2x2_backward[gy.dtype](_native.address(gy), gy.size // (g.OH * g.OW),
                                                  g.H, g.W, _native.address(gx))
                return gx.reshape(self.x_shape), None, None, None, None, None, None, None
        if g.tiles:
            # each input element is in one window: no zero fill, no adds. One input row's
            # worth of gradients per window row, then whole rows copied kh times (contiguous)
            gx = backend.empty(lead + (g.H, g.W), dt)
            gh = gx if g.kh == 1 else backend.empty(lead + (g.OH, g.W), dt)
            for j in range(g.kw):
                np.divide(gy, self.div, out=gh[..., j::g.kw])
            if g.kh > 1:
                np.copyto(gx.reshape(lead + (g.OH, g.kh, g.W)), gh[..., None, :])
        else:
            gd = gy / self.div
            gx = backend.empty(lead + (g.Hp, g.Wp), dt)
            gx.fill(0)
            for v in g.taps(gx):
                v += gd
            gx = g.unpad(gx)
        return gx.reshape(self.x_shape), None, None, None, None, None, None, None


def _avg_pool(op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    kernel, stride, padding, _, out = _pool_args(
        op, nd, input, kernel_size, stride, padding, 1, ceil_mode, False)
    if divisor_override is not None:
        if not _is_int(divisor_override) or divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must be a non-zero int, got "
                             f"{divisor_override!r}")
        divisor_override = int(divisor_override)
    return AvgPoolNd.apply(input, kernel, stride, padding, out, bool(count_include_pad),
                           divisor_override, nd)


def avg_pool2d(input: Tensor, kernel_size: Size, stride: OptSize = None, padding: Size = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """2-d average pooling over an (N, C, H, W) or (C, H, W) input.

    Args:
        kernel_size: window size, an int or a pair.
        stride: window step (default: ``kernel_size``).
        padding: implicit zero padding on both sides, at most half the kernel.
        ceil_mode: round the output size up, keeping windows that start inside the input.
        count_include_pad: count the zero padding in the divisor.
        divisor_override: divide every window sum by this instead.

    Example:
        >>> F.avg_pool2d(deepgrad.randn(1, 6, 28, 28), 2).shape
        (1, 6, 14, 14)
    """
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def avg_pool1d(input: Tensor, kernel_size: Size, stride: OptSize = None, padding: Size = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """1-d average pooling over an (N, C, L) or (C, L) input; see ``avg_pool2d``."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


def _adaptive_matrix(n_in: int, n_out: int, dtype) -> np.ndarray:
    """(n_out, n_in) averaging matrix of PyTorch's adaptive windows
    [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))."""
    p = np.zeros((n_out, n_in), dtype)
    for i in range(n_out):
        lo = (i * n_in) // n_out
        hi = -(-((i + 1) * n_in) // n_out)
        p[i, lo:hi] = 1.0 / (hi - lo)
    return p


def _sandwich(a: np.ndarray, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ x @ b.T`` over the last two dims of x (..., H, W) with two flat GEMMs."""
    lead = x.shape[:-2]
    h, w = x.shape[-2:]
    ow = b.shape[0]
    t = (x.reshape(-1, w) @ b.T).reshape(-1, h, ow)  # (B, H, OW)
    nb = t.shape[0]
    t = np.ascontiguousarray(t.transpose(1, 0, 2)).reshape(h, nb * ow)
    y = (a @ t).reshape(a.shape[0], nb, ow)
    return np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(lead + (a.shape[0], ow))


class AdaptiveAvgPool(Function):
    """Adaptive average pooling with overlapping windows: ``P_h @ x @ P_w.T`` per plane."""

    saves_inputs = False

    def forward(self, x, out, nd):
        self.x_shape = x.shape
        x4 = x.reshape(x.shape[:-1] + (1, x.shape[-1])) if nd == 1 else x
        h, w = x4.shape[-2:]
        self.ph = _adaptive_matrix(h, out[0], x.dtype)
        self.pw = _adaptive_matrix(w, out[1], x.dtype)
        y = _sandwich(self.ph, x4, self.pw)
        self.y4 = y.shape
        return y.reshape(y.shape[:-2] + (y.shape[-1],)) if nd == 1 else y

    def backward(self, grad):
        gy = grad.reshape(self.y4)
        gx = _sandwich(self.ph.T, gy, self.pw.T)
        return gx.reshape(self.x_shape), None, None


def _adaptive_avg_pool(op, nd, input, output_size):
    _check_input_dims(op, input, nd)
    spatial = input.data.shape[-nd:]
    requested = output_size
    if _is_int(output_size) or output_size is None:
        output_size = (output_size,) * nd
    if not isinstance(output_size, (tuple, list)) or len(output_size) != nd or not all(
            o is None or _is_int(o) for o in output_size):
        raise ValueError(f"{op}: output_size must be an int or a tuple of {nd} ints (or None), "
                         f"got {output_size!r}")
    out = tuple(n if o is None else int(o) for o, n in zip(output_size, spatial))
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: output_size must be positive, got {requested!r}")
    if any(n < 1 for n in spatial):
        raise ValueError(f"{op}: input has an empty spatial dim; input shape {input.data.shape}")
    if all(n % o == 0 for n, o in zip(spatial, out)):
        # windows tile the input: plain average pooling, kernel = stride = n / out
        k = tuple(n // o for n, o in zip(spatial, out))
        if nd == 1:
            k, out = (1,) + k, (1,) + out
        return AvgPoolNd.apply(input, k, k, (0, 0), out, True, None, nd)
    if nd == 1:
        out = (1,) + out
    return AdaptiveAvgPool.apply(input, out, nd)


def adaptive_avg_pool2d(input: Tensor, output_size: Size | tuple[int | None, ...]) -> Tensor:
    """Average pooling to a fixed output size over an (N, C, H, W) or (C, H, W) input.

    Window i along a dim of size n covers ``[floor(i*n/out), ceil((i+1)*n/out))``.

    Args:
        output_size: an int or a pair; ``None`` keeps that input dim.

    Example:
        >>> F.adaptive_avg_pool2d(deepgrad.randn(2, 512, 7, 7), 1).shape
        (2, 512, 1, 1)
    """
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


def adaptive_avg_pool1d(input: Tensor, output_size: Size) -> Tensor:
    """Average pooling to a fixed length over an (N, C, L) or (C, L) input."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)
