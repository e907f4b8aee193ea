"""Recurrent layers' math: a whole layer (all time steps, every direction) is one node.

Forward runs the recurrence in NumPy with one GEMM per time step,
``[W_hh | W_ih | b] @ [h; x_t; 1]``, which gives every gate pre-activation (input projection and
biases included); the gate math is in place on preallocated buffers. Inside the loop the state
is feature-major, ``h`` is ``(H, N)``: ``W (G*H, K) @ (K, N)`` is the fastest GEMM shape for a
small batch, and each per-step array is one contiguous block of a ``(T, rows, N)`` store, so
the loop streams through memory.

Backward is backpropagation through time in one loop: per step the gate gradients (written over
the saved activations) and one GEMM for the gradient of the previous state. The gate gradients
of all steps then feed one GEMM for ``[grad W_hh | grad W_ih | grad b]`` (``dZ @ [h; x; 1]^T``;
the LSTM's as ``[h; x; 1] @ dZ^T``, transposed back, which MKL runs faster) and one for the input
gradient.

With the native kernels and MKL, the LSTM's loops over time run inside one C call per direction
(``lstm_forward_seq``/``lstm_backward_seq`` in ``deepgrad/_native/kernels.c``), making the
calls the Python loops make (MKL's GEMM, NumPy's own tanh loop, the step kernels), so they give
the same bits without the interpreter between steps. In float32 on AVX2 builds the native
loops are fused instead (``lstm_forward_fused``/``lstm_backward_fused``): each step's product
runs in register tiles of weights packed once per call, and the gate math (with a tanh of the
kernel's own) or the gate gradients follow in the same pass, in parts of whole blocks of
hidden units. Those give the loops' results to rounding, not bit for bit.

Used by ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and the cells. PyTorch has no functional form of
these layers, so nothing here is exported to ``nn.functional``.
"""
from __future__ import annotations

import numpy as np

from .. import _native, backend
from .._native import mkl, parallel
from ..autograd.function import Function
from ..random import _generator
from ..tensor import Tensor

__all__: list = []


def _matmul(xp):
    """``matmul(a, b, out=...)`` for arrays of ``xp``: MKL's GEMM where it serves NumPy arrays."""
    return mkl.matmul if xp is np else xp.matmul


def _step_product(xp, a, bs, outs):
    """``f(t)``: ``a @ bs[t]`` into ``outs[t]``, for a loop over time steps whose operands
    ``bs[t]`` and ``outs[t]`` are blocks of one stack (or one array repeated). Through a
    prepared MKL product where there is one: the foreign call alone, with every step's
    addresses worked out once."""
    run = mkl.prepared(a, bs[0], outs[0]) if xp is np else None
    if run is None:
        matmul = _matmul(xp)
        return lambda t: matmul(a, bs[t], out=outs[t])
    T = len(bs)
    pa, pb, po = _native.address(a), _addresses(bs, T), _addresses(outs, T)
    return lambda t: run(pa, pb[t], po[t])


def _empty(xp, shape: tuple, dt):
    """An uninitialised array from the shared workspace (``backend.empty``): reused memory, so
    no page faults per step, starting on a 64-byte boundary, since NumPy aligns to 16 bytes only
    and the per-step elementwise ops on (H, N) slices run about 1.8x slower when their operands
    straddle cache lines."""
    return backend.empty(shape, dt, xp, align=64)


def _columns(xp, rows: int, T: int, N: int, dt):
    """A ``(rows, T*N)`` array (time-major columns) for the big GEMMs after the loop.

    Rows get a cache line of padding: a power-of-two row stride maps the rows to few cache sets.
    """
    line = 64 // np.dtype(dt).itemsize
    cols = -(-T * N // line) * line + line
    return _empty(xp, (rows, cols), dt)[:, :T * N]


def _swap_go(dst, src, H: int) -> None:
    """Copy gate rows swapping the last two blocks: PyTorch's (i, f, g, o) <-> (i, f, o, g)."""
    dst[:2 * H] = src[:2 * H]
    dst[2 * H:3 * H] = src[3 * H:]
    dst[3 * H:] = src[2 * H:3 * H]


def _swap_go_transposed(kern, dst, src, H: int) -> None:
    """``_swap_go(dst, src.T, H)``: by the native transpose (``kern``, where not None) for
    ``src`` (R, 4H) with contiguous rows and ``dst`` (4H, R) contiguous; NumPy's copy of the
    transposed view took 4x its time for the LSTM's weight gradient."""
    if kern is None or src.strides[1] != src.itemsize or not dst.flags.c_contiguous:
        _swap_go(dst, src.T, H)
        return
    R = src.shape[0]
    isz = src.itemsize
    fn = kern.transpose[src.dtype]
    ps, pd = _native.address(src), _native.address(dst)
    for block, to in enumerate((0, 1, 3, 2)):
        fn(ps + block * H * isz, src.strides[0] // isz, pd + to * H * R * isz, R, R, H)


def _transposed(xp, rows: int, cols: int, dt):
    """``(t, t.T)``: an uninitialised ``(cols, rows)`` array and its ``(rows, cols)`` view, to
    write a recurrent weight into (gate rows reordered) as the transposed, contiguous operand of
    backward's step product ``W^T @ grads``. MKL runs that product about 1.1-1.45x as fast from
    a contiguous ``W^T`` as from the transposed view of ``W`` (AMD EPYC, AVX2, H = 256, N = 32:
    132-143 against 162-193 us for the LSTM's; the same bits)."""
    t = _empty(xp, (cols, rows), dt)
    return t, t.T


def _kernels(xp, dt):
    """The native kernels (``deepgrad._native``) for NumPy arrays of dtype ``dt``, or None."""
    return _native.for_dtype(dt) if xp is np else None


def _sequence(a, b, out):
    """``(gemm, tanh loop, its data)`` for a native loop over time steps whose product is
    ``a @ b`` into ``out``: where MKL takes that product (as ``_step_product`` would) and
    NumPy's tanh loop for the dtype is found (``_native.ufunc_loop``); else None."""
    if mkl.prepared(a, b, out) is None:
        return None
    gemm = mkl.native_gemm(a.dtype)[0]
    loop = _native.ufunc_loop(np.tanh, a.dtype)
    if gemm is None or loop is None:
        return None
    return gemm, loop[0], loop[1]


def _inputs_to_columns(xp, dst, xcols) -> None:
    """``dst[i, t*N + n] = xcols[t, i, n]``: every step's input as columns. Per step that is a
    transpose of an ``(N, I)`` block, which the native kernel does by register tiles where the
    input's rows are contiguous; NumPy's strided copy took 0.5 ms for char_lstm's inputs."""
    T, I, N = xcols.shape
    dt = xcols.dtype
    kern = _kernels(xp, dt)
    it = dt.itemsize
    if kern is None or xcols.strides[1] != it or dst.strides[1] != it or any(
            s % it for s in xcols.strides + dst.strides):
        xp.copyto(dst.reshape(I, T, N), xcols.transpose(1, 0, 2))
        return
    kern.transpose_blocks[dt](_native.address(xcols), xcols.strides[0] // it,
                              xcols.strides[2] // it, _native.address(dst), N,
                              dst.strides[0] // it, N, I, T)


def _fused_tiles(xp, kern, H: int, N: int, per_unit: int, dt):
    """Room for the LSTM's fused kernels' weight tiles: ``per_unit`` weights per hidden unit,
    units in whole blocks of ``kern.lstm_tile_units``. Loads MKL first where a step is large
    enough to split: the kernels' parts run on its TBB workers."""
    if 4 * H * N >= parallel.min_elements():
        mkl.available()
    units = kern.lstm_tile_units
    return _empty(xp, (-(-H // units) * units * per_unit,), dt)


def _fused_done(status: int, which: str, H: int, N: int) -> None:
    if status != 0:
        raise MemoryError(f"LSTM {which} (hidden size {H}, batch {N}): no memory for the fused "
                          "kernel's scratch; free memory or use smaller batches")


def _addresses(blocks, n: int) -> list:
    """Addresses of ``blocks[0..n)``: the blocks of a contiguous array, or a list of arrays."""
    if isinstance(blocks, np.ndarray):
        base = _native.address(blocks)
        return [base + t * blocks.strides[0] for t in range(n)]
    seen: dict = {}
    return [seen.setdefault(id(b), _native.address(b)) for b in blocks[:n]]


def _view_addresses(views: list) -> list:
    """Addresses of equally spaced views of one array (each time step's slice of the layer's
    output or its gradient): three lookups instead of one per view, checked at both ends."""
    addr = _native.address
    n = len(views)
    if n < 3:
        return [addr(v) for v in views]
    first, step = addr(views[0]), addr(views[1]) - addr(views[0])
    if addr(views[-1]) != first + (n - 1) * step:
        return [addr(v) for v in views]
    return [first + t * step for t in range(n)]


def _step_rows(views: list) -> tuple:
    """``(address, step, row stride)``, strides in elements, of a native time loop's per-step
    ``(N, H)`` outputs, equally spaced views of one array: step t's rows at address + t*step."""
    it = views[0].itemsize
    p = _view_addresses(views)
    return p[0], (p[1] - p[0]) // it if len(p) > 1 else 0, views[0].strides[0] // it


def _gradient_operands(ghn, gouts: list) -> tuple:
    """The incoming gradients of a native backward time loop, as its arguments: the grad of
    h_n ``(N, H)`` (address, strides), then the per-step output grads (address, step,
    strides), in elements."""
    it = ghn.itemsize
    first, step, _ = _step_rows(gouts)
    return (_native.address(ghn), ghn.strides[0] // it, ghn.strides[1] // it, first, step,
            gouts[0].strides[0] // gouts[0].itemsize, gouts[0].strides[1] // gouts[0].itemsize)


def _flush_spec(dt: np.dtype):
    """``(int dtype, exponent mask, offset, sign shift)`` for :class:`_Flush`, or None."""
    if dt not in (np.float32, np.float64):
        return None
    fi = np.finfo(dt)
    bits = 8 * fi.dtype.itemsize
    nmant = fi.nmant  # 23 or 52
    it = np.dtype(f"int{bits}").type
    exp_mask = ((1 << (bits - 1)) - 1) ^ ((1 << nmant) - 1)
    # (e + offset) overflows to negative exactly when the biased exponent e >= nmant + 1,
    # i.e. |x| >= 2**(nmant + 1 - bias) = tiny / eps
    offset = (1 << (bits - 1)) - ((nmant + 1) << nmant)
    return it, exp_mask, offset, bits - 1


class _Flush:
    """Sets the entries of a carried gradient below ``tiny / eps`` in magnitude to zero, in
    place, with four integer ops.

    Backpropagation through many steps shrinks the carried gradients geometrically. Once they
    near the subnormal range (below ``finfo.tiny``), the products formed from them in a step
    (gate derivatives, the GEMM with W_hh, the weight-grad GEMM) land in it, and every op that
    makes a subnormal takes the CPU's slow microcode path: backward ran 2-5x slower. Flushing
    only values already below ``tiny`` does not prevent that (measured: little gain), so the
    cut is at ``tiny / eps`` (2**-103, about 1e-31, for float32; 2**-970 for float64): such a
    value is below ``eps`` times the smallest normal number, its products reach the subnormal
    range within a step or two, and it can change no weight of normal size. Gradients of
    normal scale are untouched; the flushed entries are at most ``tiny / eps`` in magnitude.

    The test is on the bit pattern (integer ops never take the slow path): with ``e`` the
    exponent field, ``(e + offset) >> sign`` is 0 for a small exponent and all ones otherwise
    (the add wraps to negative), a mask for the bits. Infinities and NaNs pass unchanged.
    """

    def __init__(self, xp, x) -> None:
        spec = _flush_spec(x.dtype)
        self.bits = None
        if spec is None or not x.flags.c_contiguous:
            return
        self.xp = xp
        it = spec[0]
        self.bits = x.view(it)
        self.tmp = _empty(xp, x.shape, it)
        # 0-d arrays: a third cheaper per call than NumPy scalars
        self.consts = tuple(xp.asarray(c, dtype=it) for c in spec[1:])

    def __call__(self) -> None:
        bits = self.bits
        if bits is None:
            return
        tmp = self.tmp
        exp_mask, offset, sign = self.consts
        xp = self.xp
        xp.bitwise_and(bits, exp_mask, out=tmp)
        xp.add(tmp, offset, out=tmp)
        xp.right_shift(tmp, sign, out=tmp)
        xp.bitwise_and(bits, tmp, out=bits)


class _ToColumns:
    """Copies the blocks of a ``(T, rows, N)`` store into ``(rows, T*N)`` columns a few time
    steps at a time, while the blocks just computed are still in cache."""

    size = 16

    def __init__(self, xp, src, descending: bool) -> None:
        T, rows, N = src.shape
        self.copyto = xp.copyto
        self.src = src
        self.columns = _columns(xp, rows, T, N, src.dtype)
        self.dst = self.columns.reshape(rows, T, N)
        self.descending = descending
        self.pending = 0

    def done(self, t: int) -> None:
        """Time step ``t`` is complete (steps arrive in loop order)."""
        self.pending += 1
        if self.pending == self.size or (t == 0 if self.descending else
                                         t == self.src.shape[0] - 1):
            k = self.pending
            lo = t if self.descending else t - k + 1
            self.copyto(self.dst[:, lo:lo + k], self.src[lo:lo + k].transpose(1, 0, 2))
            self.pending = 0


class _RecurrentLayer(Function):
    """One layer over a whole sequence, every direction: the shared input and output handling.

    ``forward(x, h0, c0, *weights, batch_first, dropout)``: ``x`` is ``(T, N, I)`` (or
    ``(N, T, I)``), ``h0``/``c0`` are ``(D, N, H)`` or None (zeros; ``c0`` only for the LSTM),
    ``weights`` are ``(w_ih, w_hh, b_ih, b_hh)`` per direction (biases may be None). ``dropout``
    is applied to the input (the previous layer's output) with a fresh mask. Returns
    ``(output, h_n)`` or, for the LSTM, ``(output, h_n, c_n)``.

    Saved for backward per direction: the gate activations ``A`` (T, gates*H, N), the inputs of
    each step's GEMM as columns ``[h; x; 1]`` (K, T*N) and, for the LSTM, the cells. Without a
    graph to record (no_grad), the LSTM keeps only a few buffers that stay in cache.
    """

    has_cell = False

    def forward(self, x, h0, c0, *weights, batch_first=False, dropout=0.0, relu=False):
        xp = self.xp
        D = len(weights) // 4
        if batch_first:
            N, T, I = x.shape
        else:
            T, N, I = x.shape
        H = weights[1].shape[1]
        dt = x.dtype
        mask = None
        x_bf = batch_first
        if dropout > 0.0:
            if dropout >= 1.0:
                mask = xp.zeros((T, N, I), dt)
            else:
                mask = (_generator(None).random((T, N, I), dtype=dt) >= dropout).astype(dt)
                mask *= 1.0 / (1.0 - dropout)
            xd = _empty(xp, (T, N, I), dt)
            xp.multiply(x.transpose(1, 0, 2) if batch_first else x, mask, out=xd)
            x = xd
            x_bf = False
        # (T, I, N): the input of each time step as columns, a view
        xcols = x.transpose(1, 2, 0) if x_bf else x.transpose(0, 2, 1)
        out = _empty(xp, (N, T, D * H) if batch_first else (T, N, D * H), dt)
        hn = xp.empty((D, N, H), dt)
        cn = xp.empty((D, N, H), dt) if self.has_cell else None
        self.relu = relu
        self.batch_first = batch_first
        self.mask = mask
        self.dims = (T, N, I, H, D)
        self.weights = weights
        self.initial = (xcols, h0, c0)  # to recompute for a second backward (retain_graph)
        self.record = True in self.needs_input_grad
        self.saved = []
        for d in range(D):
            lo, hi = d * H, (d + 1) * H
            if batch_first:
                outs = [out[:, t, lo:hi] for t in range(T)]
            else:
                outs = [out[t, :, lo:hi] for t in range(T)]
            self.saved.append(self._run_direction(d, outs, hn[d], None if cn is None else cn[d]))
        if self.has_cell:
            return out, hn, cn
        return out, hn

    def _forward_direction(self, xcols, w_ih, w_hh, b_ih, b_hh, h0, c0, outs, reverse, hn,
                           cn):
        """Run one direction; write ``outs[t]`` (N, H), ``hn``, ``cn``; return the saved state."""
        raise NotImplementedError

    def _backward_direction(self, saved, w, gouts, ghn, gcn, reverse, needs_w, need_x):
        """Grads of one direction: ``(grad x (T*N, I), grad w_ih, grad w_hh, grad b_ih,
        grad b_hh, grad h0^T, grad c0^T)``."""
        raise NotImplementedError

    def _run_direction(self, d: int, outs, hn, cn):
        xcols, h0, c0 = self.initial
        w_ih, w_hh, b_ih, b_hh = self.weights[4 * d:4 * d + 4]
        # the inputs of each step as columns, for the weight grads, if backward will want them
        self.need_hx = True in self.needs_input_grad[3 + 4 * d:7 + 4 * d]
        return self._forward_direction(
            xcols, w_ih, w_hh, b_ih, b_hh, None if h0 is None else h0[d],
            None if c0 is None else c0[d], outs, d == 1, hn, cn)

    def _recompute(self, d: int):
        """The saved state of direction ``d`` again: backward overwrites it (it writes the gate
        grads over the activations), so a second backward (retain_graph=True) reruns forward."""
        T, N, I, H, D = self.dims
        xp = self.xp
        dt = self.initial[0].dtype
        scratch = xp.empty((T, N, H), dt)
        cn = xp.empty((N, H), dt) if self.has_cell else None
        return self._run_direction(d, list(scratch), xp.empty((N, H), dt), cn)

    def _states(self, T: int, H: int, N: int, xcols, bias: bool, h0, first: int):
        """``HP[t] = [h; x_t; 1]``: the state entering time step t, the input and a row of
        ones (if bias), as ``(H + I (+ 1), N)`` columns."""
        I = xcols.shape[1]
        HP = _empty(self.xp, (T, H + I + 1 if bias else H + I, N), xcols.dtype)
        self.xp.copyto(HP[:, H:H + I], xcols)
        if bias:
            HP[:, H + I] = 1
        self._initial(h0, HP[first][:H])
        return HP

    def _state_columns(self, T: int, H: int, N: int, xcols, bias: bool, h0, first: int):
        """The states of :meth:`_states` stored as the columns the weight gradient GEMM reads:
        ``(cols, steps)`` with ``steps[t] = cols[:, t*N:(t+1)*N] = [h; x_t; 1]``. Each step's
        GEMM reads its block in place and writes the next state into the next block, so no
        per-step copy into columns is needed."""
        xp = self.xp
        I = xcols.shape[1]
        K = H + I + 1 if bias else H + I
        cols = _columns(xp, K, T, N, xcols.dtype)
        _inputs_to_columns(xp, cols[H:H + I], xcols)
        if bias:
            cols[H + I] = 1
        steps = [cols[:, t * N:(t + 1) * N] for t in range(T)]
        self._initial(h0, steps[first][:H])
        return cols, steps

    def _initial(self, state, dst):
        """Write ``state`` (N, H), or zeros for None, into ``dst`` (H, N)."""
        if state is None:
            dst[...] = 0
        else:
            self.xp.copyto(dst, state.T)
        return dst

    def _order(self, T: int, reverse: bool, backward: bool):
        if reverse != backward:
            return range(T - 1, -1, -1)
        return range(T)

    def backward(self, gout, ghn, gcn=None):
        xp = self.xp
        T, N, I, H, D = self.dims
        needs = self.needs_input_grad
        dt = gout.dtype
        grads = [None] * (3 + 4 * D)
        gh0 = xp.empty((D, N, H), dt) if needs[1] else None
        gc0 = xp.empty((D, N, H), dt) if self.has_cell and needs[2] else None
        gx_tn = None
        for d in range(D):
            lo, hi = d * H, (d + 1) * H
            if self.batch_first:
                gouts = [gout[:, t, lo:hi] for t in range(T)]
            else:
                gouts = [gout[t, :, lo:hi] for t in range(T)]
            k = 3 + 4 * d
            saved = self.saved[d]
            self.saved[d] = None
            if saved is None:
                saved = self._recompute(d)
            res = self._backward_direction(
                saved, self.weights[k - 3:k + 1], gouts, ghn[d],
                None if gcn is None else gcn[d], d == 1, needs[k:k + 4], needs[0])
            gx_d, g_ih, g_hh, gb_ih, gb_hh, dh0, dc0 = res
            grads[k:k + 4] = [g_ih, g_hh, gb_ih, gb_hh]
            if gh0 is not None:
                xp.copyto(gh0[d], dh0.T)
            if gc0 is not None:
                xp.copyto(gc0[d], dc0.T)
            if gx_d is not None:
                if gx_tn is None:
                    gx_tn = gx_d
                else:
                    gx_tn += gx_d
        if gx_tn is not None:
            gx_tn = gx_tn.reshape(T, N, I)
            if self.mask is not None:
                gx_tn *= self.mask
            if self.batch_first:
                gx = xp.empty((N, T, I), dt)
                xp.copyto(gx, gx_tn.transpose(1, 0, 2))
            else:
                gx = xp.empty((T, N, I), dt)
                xp.copyto(gx, gx_tn)
            grads[0] = gx
        grads[1] = gh0
        grads[2] = gc0
        return tuple(grads)

    def _native_sequence(self, a, b, out, views):
        """``(kernels, (gemm, tanh loop, data))`` for a native time loop (the tanh RNN's, the
        GRU's) whose step product is ``a @ b`` into ``out`` and whose per-step outputs (or
        output grads) are ``views``; None where it does not apply (the ReLU RNN, no kernels,
        no MKL product, or views whose strides the kernel cannot take)."""
        if self.relu:
            return None
        kern = _kernels(self.xp, out.dtype)
        if kern is None or not all(v.dtype == out.dtype and v.ndim == 2
                                   and v.strides[0] % v.itemsize == 0
                                   and v.strides[1] % v.itemsize == 0 for v in views):
            return None
        seq = _sequence(a, b, out)
        return None if seq is None else (kern, seq)

    def _input_grad(self, w, dz):
        """``dz.T @ w``: the input grad ``(T*N, I)`` of one direction, rows in time-major order,
        so the layer's input grad is a copy of whole rows away (``(I, T*N)`` had been a
        transpose: 0.55 ms for char_lstm's, against 0.07)."""
        out = _empty(self.xp, (dz.shape[1], w.shape[1]), dz.dtype)
        return _matmul(self.xp)(dz.T, w, out=out)


class LSTMLayer(_RecurrentLayer):
    """LSTM: ``c' = f*c + i*g``, ``h' = o*tanh(c')``; gates ``i, f, o`` sigmoid, ``g`` tanh."""

    has_cell = True

    def _forward_direction(self, xcols, w_ih, w_hh, b_ih, b_hh, h0, c0, outs, reverse, hn,
                           cn):
        xp = self.xp
        T, I, N = xcols.shape
        H = w_hh.shape[1]
        H2, H3, H4 = 2 * H, 3 * H, 4 * H
        dt = xcols.dtype
        bias = b_ih is not None
        # One GEMM per step gives all pre-activations: [w_hh | w_ih | b] @ [h; x_t; 1].
        # Gates in the order (i, f, o, g), sigmoid rows halved: sigmoid(z) = 0.5 + 0.5*tanh(z/2),
        # so one tanh call covers all four gates.
        K = H + I + 1 if bias else H + I
        w = _empty(xp, (H4, K), dt)
        _swap_go(w[:, :H], w_hh, H)
        _swap_go(w[:, H:H + I], w_ih, H)
        if bias:
            _swap_go(w[:, H + I], b_ih + b_hh, H)
        w[:H3] *= 0.5
        order = self._order(T, reverse, False)
        kern = _kernels(xp, dt)
        native = kern is not None and all(o.strides[1] == o.itemsize for o in outs)
        fused = native and dt == np.float32 and kern.lstm_fused
        cols, HP = self._state_columns(T, H, N, xcols, bias, h0, order[0])
        if self.record:  # gate activations, cells and tanh(cells), saved for backward
            A = _empty(xp, (T, H4, N), dt)
            C = _empty(xp, (T, H, N), dt)
            TC = _empty(xp, (T, H, N), dt)
            stores = (A, T, C, T, TC, T)
        else:  # nothing to save: a few buffers that stay in cache
            a, cells, tc = (_empty(xp, (H4, N), dt), _empty(xp, (2, H, N), dt),
                            _empty(xp, (H, N), dt))
            A, C, TC = [a] * T, [cells[t % 2] for t in range(T)], [tc] * T
            stores = (a, 1, cells, 2, tc, 1)  # step t's block: number t % (the count)
        h_last = _empty(xp, (H, N), dt)
        c_init = self._initial(c0, _empty(xp, (H, N), dt))
        hx = cols if self.need_hx else None
        if fused:
            self._forward_fused(kern, w, cols, HP[order[0]][:H], c_init, h_last, outs, order, hn,
                                cn, C, stores)
            return A, C, TC, hx, c_init
        if native:
            self._forward_native(kern, w, A, C, TC, cols, HP, c_init, h_last, outs, order, hn,
                                 cn, stores)
            return A, C, TC, hx, c_init
        ig = _empty(xp, (H, N), dt)
        step = -1 if reverse else 1
        h_prev = HP[order[0]]
        c_prev = c_init
        matmul, add, mul, tanh, copyto = _matmul(xp), xp.add, xp.multiply, xp.tanh, xp.copyto
        for t in order:
            a = A[t]
            matmul(w, h_prev, out=a)
            tanh(a, out=a)
            s = a[:H3]
            mul(s, 0.5, out=s)
            add(s, 0.5, out=s)
            c = C[t]
            mul(a[H:H2], c_prev, out=c)
            mul(a[:H], a[H3:], out=ig)
            add(c, ig, out=c)
            tc = TC[t]
            tanh(c, out=tc)
            nt = t + step
            if 0 <= nt < T:
                h_prev = HP[nt]
                h = h_prev[:H]
            else:
                h = h_last
            mul(a[H2:H3], tc, out=h)
            copyto(outs[t], h.T)
            c_prev = c
        copyto(hn, h_last.T)
        copyto(cn, c_prev.T)
        return A, C, TC, hx, c_init

    def _forward_fused(self, kern, w, cols, h0, c_init, h_last, outs, order, hn, cn, C, stores):
        """The loop of ``_forward_direction`` in one native call (``lstm_forward_fused``, float32
        on AVX2): each step's gate pre-activations from register tiles of ``w`` (packed here,
        once per call) and their gate math in the same pass, with a tanh of its own. The state
        passes between steps in a contiguous double buffer (the tiles read it row by row; rows
        of ``cols`` are pages apart); ``cols`` gives the input rows and, for the weight grads,
        gets each state. Equal to the loop's results to rounding, not bit for bit (kernels.c
        says why)."""
        xp = self.xp
        T = len(outs)
        H, N = c_init.shape
        K = w.shape[1]
        dt = w.dtype
        it = dt.itemsize
        tiles = _fused_tiles(xp, kern, H, N, 4 * K, dt)  # the 4 gates' rows of w
        addr = _native.address
        kern.lstm_pack_tiles[dt](addr(w), H, K, addr(tiles))
        hs = _empty(xp, (2, H, N), dt)
        xp.copyto(hs[0], h0)
        a, a_mod, c, c_mod, tc, tc_mod = stores
        po = _view_addresses(outs)
        status = kern.lstm_forward_fused[dt](
            addr(tiles), K, addr(cols), cols.strides[0] // it, self.need_hx, addr(hs), addr(a),
            a_mod, addr(c), c_mod, addr(tc), tc_mod, addr(c_init), addr(h_last), po[0],
            (po[1] - po[0]) // it if T > 1 else 0, outs[0].strides[0] // it, H, N, T,
            T > 1 and order[1] < order[0])
        _fused_done(status, "forward", H, N)
        xp.copyto(hn, h_last.T)
        xp.copyto(cn, C[order[-1]].T)

    def _forward_native(self, kern, w, A, C, TC, cols, HP, c_init, h_last, outs, order, hn, cn,
                        stores):
        """The loop of ``_forward_direction`` with its gate math in two native kernels (the
        same float operations, so the same bits); the tanh calls stay in NumPy. With MKL's
        product, the whole loop runs in one kernel (``lstm_forward_seq``) making the same
        calls."""
        xp = self.xp
        T = len(outs)
        H, N = c_init.shape
        dt = c_init.dtype
        it = dt.itemsize
        hn_, step = H * N, order[1] - order[0] if T > 1 else 1
        addr = _native.address
        base, ld = addr(cols), cols.strides[0] // it
        po = _view_addresses(outs)
        out_sn = outs[0].strides[0] // outs[0].itemsize
        p_last = addr(h_last)
        seq = _sequence(w, HP[0], A[0])
        if seq is not None:
            gemm, tanh_loop, tanh_data = seq
            a, a_mod, c, c_mod, tc, tc_mod = stores
            kern.lstm_forward_seq[dt](addr(w), w.shape[1], base, ld, addr(a), a_mod, addr(c),
                                      c_mod, addr(tc), tc_mod, addr(c_init), p_last, po[0],
                                      (po[1] - po[0]) // it if T > 1 else 0, out_sn, H, N, T,
                                      step < 0, gemm, tanh_loop, tanh_data)
            xp.copyto(hn, h_last.T)
            xp.copyto(cn, C[order[-1]].T)
            return
        gates, output = kern.lstm_gates[dt], kern.lstm_output[dt]
        pa, pc, ptc = _addresses(A, T), _addresses(C, T), _addresses(TC, T)
        ph = [base + t * N * it for t in range(T)]
        osz = hn_ * A[0].itemsize  # bytes of one gate block
        tanh = xp.tanh
        pc_prev = addr(c_init)
        c = c_init
        product = _step_product(xp, w, HP, A)
        for t in order:
            a = A[t]
            product(t)  # w @ h_prev into a
            tanh(a, out=a)
            gates(pa[t], pc_prev, pc[t], hn_)
            c = C[t]
            tanh(c, out=TC[t])
            nt = t + step
            if 0 <= nt < T:
                output(pa[t] + 2 * osz, ptc[t], ph[nt], ld, po[t], H, N, out_sn)
            else:
                output(pa[t] + 2 * osz, ptc[t], p_last, N, po[t], H, N, out_sn)
            pc_prev = pc[t]
        xp.copyto(hn, h_last.T)
        xp.copyto(cn, c.T)

    def _backward_direction(self, saved, w, gouts, ghn, gcn, reverse, needs_w, need_x):
        xp = self.xp
        A, C, TC, hx, c_init = saved
        w_ih, w_hh, b_ih, b_hh = w
        H, N = c_init.shape
        I = w_ih.shape[1]
        H2, H4 = 2 * H, 4 * H
        dt = A.dtype
        kern = _kernels(xp, dt)
        native = kern is not None and all(v.dtype == dt and v.ndim == 2
                                          and v.strides[0] % v.itemsize == 0
                                          and v.strides[1] % v.itemsize == 0
                                          for v in (ghn, *gouts))
        fused = native and dt == np.float32 and kern.lstm_fused
        if not fused:  # (the fused kernel packs its tiles from w_hh itself)
            whT, whp = _transposed(xp, H4, H, dt)  # w_hh in the gate order (i, f, o, g)
            _swap_go(whp, w_hh, H)
        carry = _empty(xp, (H2, N), dt)  # the carried grads of h and c, flushed together
        rec = carry[:H]
        dc = self._initial(gcn, carry[H:])
        flush = _Flush(xp, carry)
        dz = _ToColumns(xp, A, not reverse)
        if fused:
            self._backward_fused(kern, A, C, TC, c_init, ghn, gouts, dc, rec, w_hh, dz, reverse)
        elif native:
            self._backward_native(kern, A, C, TC, c_init, ghn, gouts, dc, rec, whT, dz, reverse)
        else:
            self._backward_numpy(A, C, TC, c_init, ghn.T, gouts, dc, rec, whT, dz, reverse, flush)
        flush()
        dz = dz.columns
        need_w = True in needs_w
        g_ih = g_hh = gb_ih = gb_hh = None
        if need_w:
            # [grad w_hh | grad w_ih | grad b]^T in one GEMM, then transposed with the gate
            # rows back to (i, f, g, o). MKL took 10.5-11.1 ms for char_lstm's product in this
            # orientation ([h; x; 1] (321 x 2048) @ dz^T) against 11.4-12.0 for dz @ [h; x; 1]^T
            # (two threads, medians of 15 alternating blocks); the transposes cost 0.35 ms.
            dwt = _matmul(xp)(hx, dz.T, out=_empty(xp, (hx.shape[0], H4), dt))
            if needs_w[0]:
                g_ih = xp.empty((H4, I), dt)
                _swap_go_transposed(kern, g_ih, dwt[H:H + I], H)
            if needs_w[1]:
                g_hh = xp.empty((H4, H), dt)
                _swap_go_transposed(kern, g_hh, dwt[:H], H)
            if b_ih is not None:
                if needs_w[2]:
                    gb_ih = xp.empty(H4, dt)
                    _swap_go(gb_ih, dwt[H + I], H)
                if needs_w[3]:
                    gb_hh = xp.empty(H4, dt)
                    _swap_go(gb_hh, dwt[H + I], H)
        gx_tn = None
        if need_x:
            wip = _empty(xp, (H4, I), dt)
            _swap_go(wip, w_ih, H)
            gx_tn = self._input_grad(wip, dz)
        return gx_tn, g_ih, g_hh, gb_ih, gb_hh, rec, dc

    def _backward_numpy(self, A, C, TC, c_init, dh_rec, gouts, dc, rec, whT, dz, reverse, flush):
        """The loop of ``_backward_direction``: per step the gate gradients, then the GEMM for
        the gradient of the previous state; the carry is flushed after the GEMM."""
        xp = self.xp
        T = len(gouts)
        H, N = c_init.shape
        H2, H3 = 2 * H, 3 * H
        dt = c_init.dtype
        dh = _empty(xp, (H, N), dt)
        q = _empty(xp, (H, N), dt)
        q2 = _empty(xp, (H2, N), dt)
        sd = _empty(xp, (H3, N), dt)
        step = -1 if reverse else 1
        matmul, add, sub, mul = _matmul(xp), xp.add, xp.subtract, xp.multiply
        # the grads of the gate pre-activations overwrite the activations, block by block
        for t in self._order(T, reverse, True):
            a = A[t]
            add(dh_rec, gouts[t].T, out=dh)
            s = a[:H3]
            mul(s, s, out=sd)
            sub(s, sd, out=sd)  # s*(1-s) for i, f, o
            tc = TC[t]
            # dc += dh * o * (1 - tanh(c)^2)
            mul(dh, a[H2:H3], out=q)
            add(dc, q, out=dc)
            mul(q, tc, out=q)
            mul(q, tc, out=q)
            sub(dc, q, out=dc)
            mul(dh, tc, out=q)
            mul(q, sd[H2:], out=a[H2:H3])  # o
            pt = t - step
            c_prev = C[pt] if 0 <= pt < T else c_init
            g = a[H3:]
            mul(dc, g, out=q2[:H])
            mul(dc, c_prev, out=q2[H:])
            mul(g, g, out=q)
            sub(1.0, q, out=q)
            mul(q, a[:H], out=q)
            mul(q, dc, out=g)  # g
            mul(dc, a[H:H2], out=dc)
            mul(q2, sd[:H2], out=a[:H2])  # i, f
            matmul(whT, a, out=rec)
            flush()
            dh_rec = rec
            dz.done(t)

    def _backward_native(self, kern, A, C, TC, c_init, ghn, gouts, dc, rec, whT, dz, reverse):
        """``_backward_numpy`` with the gate gradients of a step in one native kernel (the same
        float operations, so the same bits). The carry is flushed at the start of the next
        step instead of after the GEMM: the same values reach every later operation. With
        MKL's product, the whole loop, the copies into columns included, runs in one kernel
        (``lstm_backward_seq``) making the same calls."""
        T = len(gouts)
        H, N = c_init.shape
        dt = c_init.dtype
        it = dt.itemsize
        addr = _native.address
        p_init, p_dc, p_rec = addr(c_init), addr(dc), addr(rec)
        dh = _empty(self.xp, (H, N), dt)  # held here: the workspace reuses what nothing holds
        p_dh = addr(dh)
        seq = _sequence(whT, A[0], rec)
        if seq is not None:
            cols = dz.columns
            kern.lstm_backward_seq[dt](
                addr(A), addr(TC), addr(C), p_init, *_gradient_operands(ghn, gouts),
                p_dc, p_dh, p_rec, addr(whT), addr(cols), cols.strides[0] // it, dz.size, H,
                N, T, reverse, seq[0])
            return
        kernel = kern.lstm_backward_step[dt]
        pg = _view_addresses(gouts)
        gn, gj = gouts[0].strides[0] // it, gouts[0].strides[1] // it
        pa, pc, ptc = _addresses(A, T), _addresses(C, T), _addresses(TC, T)
        # the first step reads the grad of h_n, (N, H), as the incoming (H, N) carry
        src, rj, rn, first = addr(ghn), ghn.strides[1] // it, ghn.strides[0] // it, 1
        step = -1 if reverse else 1
        recurrent = _step_product(self.xp, whT, A, [rec] * T)
        for t in self._order(T, reverse, True):
            pt = t - step
            kernel(pa[t], ptc[t], pc[pt] if 0 <= pt < T else p_init, src, rj, rn, pg[t], gn, gj,
                   p_dc, p_dh, H, N, 1 - first)
            recurrent(t)  # whT @ A[t] into rec
            src, rj, rn, first = p_rec, N, 1, 0
            dz.done(t)


    def _backward_fused(self, kern, A, C, TC, c_init, ghn, gouts, dc, rec, w_hh, dz, reverse):
        """The loop of ``_backward_native`` in one native call (``lstm_backward_fused``, float32
        on AVX2): each step's product with ``W_hh^T`` in register tiles (packed here from
        ``w_hh``, once per call), fused with the gate gradients it feeds. Equal to the loop's
        results to rounding."""
        xp = self.xp
        H, N = c_init.shape
        dt = c_init.dtype
        it = dt.itemsize
        addr = _native.address
        tiles = _fused_tiles(xp, kern, H, N, 4 * H, dt)  # a row of W_hh^T
        w_hh = np.ascontiguousarray(w_hh)
        kern.lstm_pack_recurrent[dt](addr(w_hh), H, addr(tiles))
        cols = dz.columns
        status = kern.lstm_backward_fused[dt](
            addr(tiles), addr(A), addr(TC), addr(C), addr(c_init),
            *_gradient_operands(ghn, gouts), addr(dc), addr(rec), addr(cols),
            cols.strides[0] // it, dz.size, H, N, len(gouts), reverse)
        _fused_done(status, "backward", H, N)


class GRULayer(_RecurrentLayer):
    """GRU: ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``, ``h' = (1-z)*n + z*h``."""

    def _forward_direction(self, xcols, w_ih, w_hh, b_ih, b_hh, h0, c0, outs, reverse, hn,
                           cn):
        xp = self.xp
        T, I, N = xcols.shape
        H = w_hh.shape[1]
        H2, H3, H4 = 2 * H, 3 * H, 4 * H
        dt = xcols.dtype
        bias = b_ih is not None
        K = H + I + 1 if bias else H + I
        # Per step rows: W_hn h + b_hn, then r and z (complete pre-activations, from one GEMM
        # on [h; x_t; 1]), then n; n's input side W_in x + b_in is one batched GEMM up front.
        # r and z rows halved: sigmoid(z) = 0.5 + 0.5*tanh(z/2) (see LSTMLayer).
        w = _empty(xp, (H3, K), dt)
        w[:H, :H] = w_hh[H2:]
        w[:H, H:H + I] = 0
        w[H:, :H] = w_hh[:H2]
        w[H:, H:H + I] = w_ih[:H2]
        if bias:
            w[:H, H + I] = b_hh[H2:]
            xp.add(b_ih[:H2], b_hh[:H2], out=w[H:, H + I])
        w[H:] *= 0.5
        wn = _empty(xp, (H, K - H), dt)  # [w_in | b_in]
        wn[:, :I] = w_ih[H2:]
        if bias:
            wn[:, I] = b_ih[H2:]
        order = self._order(T, reverse, False)
        HP = self._states(T, H, N, xcols, bias, h0, order[0])
        A = _empty(xp, (T, H4, N), dt)
        _matmul(xp)(wn, HP[:, H:], out=A[:, H3:])
        q = _empty(xp, (H, N), dt)
        h_last = _empty(xp, (H, N), dt)
        step = -1 if reverse else 1
        h_prev = HP[order[0]]
        hx = _ToColumns(xp, HP, reverse) if self.need_hx else None
        seq = None
        if all(o.strides[1] == o.itemsize for o in outs):  # the kernel writes rows of H
            seq = self._native_sequence(w, HP[0], A[0, :H3], outs)
        if seq is not None:
            it = dt.itemsize
            addr = _native.address
            cols = None if hx is None else hx.columns
            seq[0].gru_forward_seq[dt](
                addr(w), K, addr(HP), addr(A), addr(h_last), *_step_rows(outs),
                None if cols is None else addr(cols), 0 if cols is None else cols.strides[0] // it,
                _ToColumns.size, H, N, T, reverse, *seq[1])
            xp.copyto(hn, h_last.T)
            return A, HP, cols, h_last
        add, sub, mul, tanh, copyto = xp.add, xp.subtract, xp.multiply, xp.tanh, xp.copyto
        gates = _step_product(xp, w, HP, A[:, :H3])
        for t in order:
            a = A[t]
            gates(t)  # w @ h_prev
            rz = a[H:H3]
            tanh(rz, out=rz)
            mul(rz, 0.5, out=rz)
            add(rz, 0.5, out=rz)
            n = a[H3:]
            mul(a[H:H2], a[:H], out=q)
            add(n, q, out=n)
            tanh(n, out=n)
            sub(h_prev[:H], n, out=q)
            mul(q, a[H2:H3], out=q)
            nt = t + step
            if 0 <= nt < T:
                h_prev = HP[nt]
                h = h_prev[:H]
            else:
                h = h_last
            add(n, q, out=h)
            copyto(outs[t], h.T)
            if hx is not None:
                hx.done(t)
        copyto(hn, h_last.T)
        return A, HP, None if hx is None else hx.columns, h_last

    def _backward_direction(self, saved, w, gouts, ghn, gcn, reverse, needs_w, need_x):
        xp = self.xp
        A, HP, hx, h_last = saved
        w_ih, w_hh, b_ih, b_hh = w
        T = len(gouts)
        H, N = h_last.shape
        I = w_ih.shape[1]
        H2, H3 = 2 * H, 3 * H
        dt = A.dtype
        bias = b_ih is not None
        whT, whp = _transposed(xp, H3, H, dt)  # w_hh in the order (n, r, z) of the grad rows
        whp[:H] = w_hh[H2:]
        whp[H:] = w_hh[:H2]
        dh = _empty(xp, (H, N), dt)
        dz = _empty(xp, (H, N), dt)
        rec = _empty(xp, (H, N), dt)
        # rows become the grads of (W_hn h + b_hn, r, z, n): rows :3H are the hidden side's in
        # the order (n, r, z), rows H: the input side's in PyTorch's order (r, z, n)
        dzs = _ToColumns(xp, A, not reverse)
        seq = self._native_sequence(whT, A[0, :H3], rec, [ghn, *gouts])
        if seq is not None:
            it = dt.itemsize
            addr = _native.address
            columns = dzs.columns
            seq[0].gru_backward_seq[dt](
                addr(A), addr(HP), HP.shape[1], *_gradient_operands(ghn, gouts), addr(dh),
                addr(dz), addr(rec), addr(whT), addr(columns), columns.strides[0] // it, dzs.size, H, N, T,
                reverse, seq[1][0])
        else:
            self._backward_loop(A, HP, ghn, gouts, dh, dz, rec, whT, dzs, reverse)
        dzs = dzs.columns
        need_w = True in needs_w
        g_ih = g_hh = gb_ih = gb_hh = None
        if need_w:
            if needs_w[1]:  # rows (n, r, z) -> (r, z, n)
                dwh = _matmul(xp)(dzs[:H3], hx[:H].T, out=_empty(xp, (H3, H), dt))
                g_hh = xp.concatenate([dwh[H:], dwh[:H]])
            if needs_w[0] or (bias and (needs_w[2] or needs_w[3])):
                # [grad w_ih | grad b_ih], rows (r, z, n)
                dwi = _matmul(xp)(dzs[H:], hx[H:].T, out=_empty(xp, (H3, hx.shape[0] - H), dt))
                if needs_w[0]:
                    g_ih = dwi[:, :I].copy()
                if bias and needs_w[2]:
                    gb_ih = dwi[:, I].copy()
                if bias and needs_w[3]:
                    gb_hh = xp.concatenate([dwi[:H2, I], dzs[:H].sum(axis=1)])
        gx_tn = self._input_grad(w_ih, dzs[H:]) if need_x else None
        return gx_tn, g_ih, g_hh, gb_ih, gb_hh, rec, None

    def _backward_loop(self, A, HP, ghn, gouts, dh, dz, rec, whT, dzs, reverse):
        """The loop of ``_backward_direction`` in NumPy calls: per step the rows' grads in
        place, then the GEMM for the carried gradient plus its direct path, flushed."""
        xp = self.xp
        T = len(gouts)
        H, N = rec.shape
        H2, H3 = 2 * H, 3 * H
        dt = rec.dtype
        q = _empty(xp, (H, N), dt)
        q2 = _empty(xp, (H, N), dt)
        sd = _empty(xp, (H2, N), dt)
        flush = _Flush(xp, rec)
        dh_rec = ghn.T
        add, sub, mul = xp.add, xp.subtract, xp.multiply
        recurrent = _step_product(xp, whT, A[:, :H3], [rec] * len(A))
        for t in self._order(T, reverse, True):
            a = A[t]
            ghn_t = a[:H]
            r = a[H:H2]
            z = a[H2:H3]
            n = a[H3:]
            add(dh_rec, gouts[t].T, out=dh)
            mul(dh, z, out=dz)  # dh*z: the direct path to h_prev
            s = a[H:H3]
            mul(s, s, out=sd)
            sub(s, sd, out=sd)  # s*(1-s) for r, z
            # z: dh * (h_prev - n) * z(1-z)
            sub(HP[t][:H], n, out=q)
            mul(q, dh, out=q)
            mul(q, sd[H:], out=z)
            # n: dh * (1 - z) * (1 - n^2)
            mul(n, n, out=q)
            sub(1.0, q, out=q)
            sub(dh, dz, out=q2)
            mul(q2, q, out=n)
            # r: dn * ghn * r(1-r); hidden side of n: dn * r
            mul(n, ghn_t, out=q)
            mul(n, r, out=ghn_t)
            mul(q, sd[:H], out=r)
            recurrent(t)  # whT @ a[:H3] into rec
            add(rec, dz, out=rec)
            flush()
            dh_rec = rec
            dzs.done(t)


class RNNLayer(_RecurrentLayer):
    """Elman RNN: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (or relu with ``relu=True``)."""

    def _forward_direction(self, xcols, w_ih, w_hh, b_ih, b_hh, h0, c0, outs, reverse, hn,
                           cn):
        xp = self.xp
        T, I, N = xcols.shape
        H = w_hh.shape[1]
        dt = xcols.dtype
        bias = b_ih is not None
        w = _empty(xp, (H, H + I + 1 if bias else H + I), dt)  # [w_hh | w_ih | b]
        w[:, :H] = w_hh
        w[:, H:H + I] = w_ih
        if bias:
            xp.add(b_ih, b_hh, out=w[:, H + I])
        order = self._order(T, reverse, False)
        # each step's GEMM reads its [h; x_t; 1] block of the columns and writes the next state
        # into the next block; the columns then serve backward and the weight gradient's GEMM
        cols, HP = self._state_columns(T, H, N, xcols, bias, h0, order[0])
        tmp = _empty(xp, (H, N), dt)
        h_last = _empty(xp, (H, N), dt)
        seq = None
        if all(o.strides[1] == o.itemsize for o in outs):  # the kernel writes rows of H
            seq = self._native_sequence(w, HP[0], tmp, outs)
        if seq is not None:
            it = dt.itemsize
            addr = _native.address
            seq[0].rnn_forward_seq[dt](
                addr(w), w.shape[1], addr(cols), cols.strides[0] // it, addr(tmp), addr(h_last),
                *_step_rows(outs), H, N, T, reverse, *seq[1])
            xp.copyto(hn, h_last.T)
            return cols, h_last
        step = -1 if reverse else 1
        copyto, tanh = xp.copyto, xp.tanh
        relu = self.relu
        product = _step_product(xp, w, HP, [tmp] * T)
        for t in order:
            product(t)  # w @ h_prev into tmp
            nt = t + step
            h = HP[nt][:H] if 0 <= nt < T else h_last
            if relu:
                xp.maximum(tmp, 0.0, out=h)
            else:
                tanh(tmp, out=h)
            copyto(outs[t], h.T)
        copyto(hn, h_last.T)
        return cols, h_last

    def _backward_direction(self, saved, w, gouts, ghn, gcn, reverse, needs_w, need_x):
        xp = self.xp
        cols, h_last = saved
        w_ih, w_hh, b_ih, b_hh = w
        T = len(gouts)
        H, N = h_last.shape
        I = w_ih.shape[1]
        dt = h_last.dtype
        HP = [cols[:, t * N:(t + 1) * N] for t in range(T)]
        A = _empty(xp, (T, H, N), dt)  # gate grads
        dh = _empty(xp, (H, N), dt)
        rec = _empty(xp, (H, N), dt)
        whT, view = _transposed(xp, H, H, dt)
        xp.copyto(view, w_hh)
        dz = _ToColumns(xp, A, not reverse)
        seq = self._native_sequence(whT, A[0], rec, [ghn, *gouts])
        if seq is not None:
            it = dt.itemsize
            addr = _native.address
            columns = dz.columns
            seq[0].rnn_backward_seq[dt](
                addr(A), addr(cols), cols.strides[0] // it, addr(h_last),
                *_gradient_operands(ghn, gouts), addr(dh), addr(rec), addr(whT), addr(columns),
                columns.strides[0] // it, dz.size, H, N, T, reverse, seq[1][0])
        else:
            self._backward_loop(HP, h_last, ghn, gouts, A, dh, rec, whT, dz, reverse)
        dz = dz.columns
        need_w = True in needs_w
        g_ih = g_hh = gb_ih = gb_hh = None
        if need_w:
            # [w_hh | w_ih | b]
            dw = _matmul(xp)(dz, cols.T, out=_empty(xp, (H, cols.shape[0]), dt))
            if needs_w[0]:
                g_ih = dw[:, H:H + I].copy()
            if needs_w[1]:
                g_hh = dw[:, :H].copy()
            if b_ih is not None:
                if needs_w[2]:
                    gb_ih = dw[:, H + I].copy()
                if needs_w[3]:
                    gb_hh = dw[:, H + I].copy()
        gx_tn = self._input_grad(w_ih, dz) if need_x else None
        return gx_tn, g_ih, g_hh, gb_ih, gb_hh, rec, None

    def _backward_loop(self, HP, h_last, ghn, gouts, A, dh, rec, whT, dz, reverse):
        """The loop of ``_backward_direction`` in NumPy calls: per step the pre-activation's
        gradient, then the GEMM for the carried gradient, flushed (``_Flush``)."""
        xp = self.xp
        T = len(gouts)
        H, N = h_last.shape
        q = _empty(xp, (H, N), h_last.dtype)
        pos = xp.empty((H, N), bool) if self.relu else None
        flush = _Flush(xp, rec)
        dh_rec = ghn.T
        step = -1 if reverse else 1
        add, sub, mul = xp.add, xp.subtract, xp.multiply
        recurrent = _step_product(xp, whT, A, [rec] * T)
        for t in self._order(T, reverse, True):
            add(dh_rec, gouts[t].T, out=dh)
            nt = t + step
            h = HP[nt][:H] if 0 <= nt < T else h_last
            z = A[t]
            if pos is not None:
                xp.greater(h, 0.0, out=pos)
                mul(dh, pos, out=z)
            else:
                mul(dh, h, out=q)
                mul(q, h, out=q)
                sub(dh, q, out=z)  # dh * (1 - h^2)
            recurrent(t)  # whT @ z into rec
            flush()
            dh_rec = rec
            dz.done(t)


_LAYERS = {"LSTM": LSTMLayer, "GRU": GRULayer, "RNN_TANH": RNNLayer, "RNN_RELU": RNNLayer}


def recurrent_layer(mode: str, input: Tensor, h0, c0, weights, batch_first: bool = False,
                    dropout: float = 0.0):
    """Run one recurrent layer (every direction in ``weights``) over a whole sequence.

    Args:
        mode: 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU'.
        input: ``(T, N, I)``, or ``(N, T, I)`` with ``batch_first``.
        h0, c0: ``(D, N, H)`` tensors or None for zeros (``c0`` only for the LSTM).
        weights: ``[w_ih, w_hh, b_ih, b_hh]`` per direction, ``D`` directions in order; the
            biases may be None.
        dropout: probability of zeroing each input element (scaled by ``1/(1-p)``).
    Returns:
        ``(output, h_n, c_n)``; ``c_n`` is None except for the LSTM. ``output`` has the
        input's layout with ``D*H`` features, ``h_n``/``c_n`` are ``(D, N, H)``.
    """
    fn = _LAYERS[mode]
    res = fn.apply(input, h0, c0, *weights, batch_first=batch_first, dropout=dropout,
                   relu=mode == "RNN_RELU")
    if mode == "LSTM":
        return res
    return res[0], res[1], None


# -- cells: one time step, batch-major, one node ---------------------------------------------


def _sigmoid_(xp, a):
    """In-place logistic sigmoid through tanh (no overflow, one transcendental call)."""
    xp.multiply(a, 0.5, out=a)
    xp.tanh(a, out=a)
    xp.multiply(a, 0.5, out=a)
    xp.add(a, 0.5, out=a)
    return a


def _gates(xp, x, h, w_ih, w_hh, b_ih, b_hh):
    g = x @ w_ih.T
    if h is not None:
        g += h @ w_hh.T
    if b_ih is not None:
        g += b_ih
        g += b_hh
    return g


def _cell_weight_grads(xp, needs, x, h, gx_pre, gh_pre, w_ih, w_hh):
    """Grads of x, h, w_ih, w_hh, b_ih, b_hh from the gate grads of each side."""
    gx = gx_pre @ w_ih if needs[0] else None
    gh = gh_pre @ w_hh if needs[1] and h is not None else None
    g_ih = gx_pre.T @ x if needs[-4] else None
    g_hh = None
    if needs[-3]:
        g_hh = gh_pre.T @ h if h is not None else xp.zeros(w_hh.shape, w_hh.dtype)
    gb_ih = gx_pre.sum(axis=0) if needs[-2] else None
    gb_hh = gh_pre.sum(axis=0) if needs[-1] else None
    return gx, gh, g_ih, g_hh, gb_ih, gb_hh


class LSTMCellFn(Function):
    def forward(self, x, h, c, w_ih, w_hh, b_ih, b_hh):
        xp = self.xp
        H = w_hh.shape[1]
        a = _gates(xp, x, h, w_ih, w_hh, b_ih, b_hh)  # (N, 4H): i, f, g, o
        _sigmoid_(xp, a[:, :2 * H])
        xp.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
        _sigmoid_(xp, a[:, 3 * H:])
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c2 = i * g
        if c is not None:
            c2 += f * c
        tc = xp.tanh(c2)
        h2 = o * tc
        self.x, self.h, self.c, self.a, self.tc = x, h, c, a, tc
        self.w = (w_ih, w_hh)
        return h2, c2

    def backward(self, gh2, gc2):
        xp = self.xp
        a, tc, c = self.a, self.tc, self.c
        H = tc.shape[1]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        dc = gh2 * o * (1.0 - tc * tc)
        dc += gc2
        dz = xp.empty_like(a)
        dz[:, :H] = dc * g * i * (1.0 - i)
        if c is not None:
            dz[:, H:2 * H] = dc * c * f * (1.0 - f)
        else:
            dz[:, H:2 * H] = 0
        dz[:, 2 * H:3 * H] = dc * i * (1.0 - g * g)
        dz[:, 3 * H:] = gh2 * tc * o * (1.0 - o)
        needs = self.needs_input_grad
        gx, gh, g_ih, g_hh, gb_ih, gb_hh = _cell_weight_grads(
            xp, (needs[0], needs[1]) + needs[3:], self.x, self.h, dz, dz, *self.w)
        gc = dc * f if needs[2] else None
        return gx, gh, gc, g_ih, g_hh, gb_ih, gb_hh


class GRUCellFn(Function):
    def forward(self, x, h, w_ih, w_hh, b_ih, b_hh):
        xp = self.xp
        H = w_hh.shape[1]
        gi = x @ w_ih.T
        if b_ih is not None:
            gi += b_ih
        if h is not None:
            gh = h @ w_hh.T
            if b_hh is not None:
                gh += b_hh
        else:
            gh = xp.zeros(gi.shape, gi.dtype)
            if b_hh is not None:
                gh += b_hh
        rz = gi[:, :2 * H] + gh[:, :2 * H]
        _sigmoid_(xp, rz)
        r, z = rz[:, :H], rz[:, H:]
        n = gh[:, 2 * H:] * r
        n += gi[:, 2 * H:]
        xp.tanh(n, out=n)
        h2 = (h - n) * z if h is not None else -n * z
        h2 += n
        self.x, self.h, self.rz, self.n, self.ghn = x, h, rz, n, gh[:, 2 * H:]
        self.w = (w_ih, w_hh)
        return h2

    def backward(self, gh2):
        xp = self.xp
        rz, n, h = self.rz, self.n, self.h
        H = n.shape[1]
        r, z = rz[:, :H], rz[:, H:]
        dn = gh2 * (1.0 - z) * (1.0 - n * n)
        gxp = xp.empty((n.shape[0], 3 * H), n.dtype)
        ghp = xp.empty_like(gxp)
        diff = h - n if h is not None else -n
        gxp[:, H:2 * H] = gh2 * diff * z * (1.0 - z)
        gxp[:, :H] = dn * self.ghn * r * (1.0 - r)
        gxp[:, 2 * H:] = dn
        ghp[:, :2 * H] = gxp[:, :2 * H]
        ghp[:, 2 * H:] = dn * r
        needs = self.needs_input_grad
        gx, gh, g_ih, g_hh, gb_ih, gb_hh = _cell_weight_grads(
            xp, needs, self.x, h, gxp, ghp, *self.w)
        if gh is not None:
            gh += gh2 * z
        return gx, gh, g_ih, g_hh, gb_ih, gb_hh


class RNNCellFn(Function):
    def forward(self, x, h, w_ih, w_hh, b_ih, b_hh, relu=False):
        xp = self.xp
        a = _gates(xp, x, h, w_ih, w_hh, b_ih, b_hh)
        if relu:
            xp.maximum(a, 0.0, out=a)
        else:
            xp.tanh(a, out=a)
        self.x, self.h, self.y, self.relu = x, h, a, relu
        self.w = (w_ih, w_hh)
        return a

    def backward(self, grad):
        y = self.y
        if self.relu:
            dz = grad * (y > 0)
        else:
            dz = grad * (1.0 - y * y)
        return _cell_weight_grads(self.xp, self.needs_input_grad, self.x, self.h, dz, dz,
                                  *self.w)


def lstm_cell(input: Tensor, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: ``(h', c')`` from input ``(N, I)`` and states ``(N, H)`` (None: zeros)."""
    return LSTMCellFn.apply(input, hx, cx, w_ih, w_hh, b_ih, b_hh)


def gru_cell(input: Tensor, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step: ``h'`` from input ``(N, I)`` and state ``(N, H)`` (None: zeros)."""
    return GRUCellFn.apply(input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_cell(input: Tensor, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """One Elman RNN step: ``act(W_ih x + b_ih + W_hh h + b_hh)``."""
    return RNNCellFn.apply(input, hx, w_ih, w_hh, b_ih, b_hh, relu=nonlinearity == "relu")
