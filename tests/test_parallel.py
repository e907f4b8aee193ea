"""The native kernels' parts (deepgrad/_native/parallel.py, kernels.c: run_parts): a large
kernel split into parts, on TBB's threads where MKL runs on them, gives the same bits as the
kernel run whole, wherever the part boundaries fall."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _native
from deepgrad._native import mkl, parallel
from deepgrad.ops import linalg

needs_kernels = pytest.mark.skipif(_native.lib() is None, reason=_native.status())

# kernels.c: PARALLEL_MIN, the fewest elements a kernel splits
MIN = parallel.min_elements() if _native.lib() is not None else 32768
# parts: run whole; two parts on the parallel loop (if attached); five and seven parts in turn
# on this thread (boundaries that fall mid-row, and parts left empty)
SPLITS = [(1, False), (2, True), (5, False), (7, False)]


def _runs(fn) -> list[list[np.ndarray]]:
    out = []
    for n, loop in SPLITS:
        with parallel.split(n, loop):
            out.append([np.array(a) for a in fn()])
    return out


def _assert_same_bits(runs: list[list[np.ndarray]]) -> None:
    first = runs[0]
    for other in runs[1:]:
        assert len(other) == len(first)
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


@needs_kernels
def test_parallel_status_names_what_runs():
    line = parallel.status()
    assert line.startswith("parallel kernels: ")
    assert parallel.parts() >= 1
    assert "parallel kernels" in _native.status()


@needs_kernels
def test_attached_where_mkl_runs_on_tbb():
    """With MKL on its TBB layer and TBB's headers in the environment (deepgrad[mkl]), the
    kernels split their work: a missing install step shows here."""
    if not mkl.available() or "TBB layer" not in mkl.status():
        pytest.skip("MKL is not running on TBB here: " + mkl.status())
    if not os.path.isfile(os.path.join(sys.prefix, "include", "oneapi", "tbb",
                                       "parallel_for.h")):
        pytest.skip("no TBB headers in this environment (pip install tbb-devel)")
    if os.environ.get("DEEPGRAD_PARALLEL") == "0":
        pytest.skip("DEEPGRAD_PARALLEL=0")
    assert "TBB" in parallel.status(), parallel.status()
    assert parallel.parts() == min(_native.threads(), os.cpu_count() or 1)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["relu_forward", "relu_backward", "tanh_backward",
                                  "sigmoid_backward"])
def test_elementwise_kernels_in_parts_give_the_same_bits(dt, name):
    rng = np.random.default_rng(0)
    n = 3 * MIN + 77
    x = rng.standard_normal(n).astype(dt)
    x[:4] = [np.nan, -0.0, np.inf, -np.inf]
    g = rng.standard_normal(n).astype(dt)
    k = _native.lib()
    addr = _native.address

    def run():
        out = np.full(n, 7, dt)
        if name == "relu_forward":
            getattr(k, name)[np.dtype(dt)](addr(x), addr(out), n)
        else:
            getattr(k, name)[np.dtype(dt)](addr(x), addr(g), addr(out), n)
        return [out]

    runs = _runs(run)
    _assert_same_bits(runs)
    assert not np.any(runs[0][0][4:] == 7)  # every element written


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_bias_relu_in_parts_gives_the_same_bits(dt):
    rng = np.random.default_rng(0)
    y0 = rng.standard_normal((1001, 67)).astype(dt)
    b = rng.standard_normal(67).astype(dt)
    k = _native.lib()

    def run():
        y = y0.copy()
        k.bias_relu[np.dtype(dt)](_native.address(y), _native.address(b), *y.shape)
        return [y]

    runs = _runs(run)
    _assert_same_bits(runs)
    np.testing.assert_array_equal(runs[0][0], np.maximum(y0 + b, 0))


def _optimizer_steps(name: str, kw: dict, dt) -> list:
    rng = np.random.default_rng(0)
    sizes = [(301, 211), (MIN + 5,)]  # past PARALLEL_MIN, not whole blocks
    with np.errstate(all="ignore"):
        ps = [dg.nn.Parameter(dg.from_numpy(rng.standard_normal(s).astype(dt))) for s in sizes]
        opt = getattr(dg.optim, name)(ps, **kw)
        for _ in range(3):
            for p in ps:
                g = rng.standard_normal(p.shape).astype(dt)
                g.flat[:3] = [np.nan, np.inf, 0.0]
                p.grad = dg.from_numpy(g)
            opt.step()
    return [p.data for p in ps] + [v.data for st in opt.state.values() for v in st.values()
                                   if isinstance(v, dg.Tensor)]


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", [
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, maximize=True)),
    ("Adam", dict(lr=1e-3, weight_decay=0.01, amsgrad=True)),
    ("AdamW", dict(lr=1e-3, maximize=True)),
])
def test_optimizer_updates_in_parts_give_the_same_bits(dt, name, kw):
    runs = _runs(lambda: _optimizer_steps(name, kw, dt))
    _assert_same_bits(runs)
    with _native.enabled(False):  # and the NumPy path's
        _assert_same_bits([runs[0], [np.array(a) for a in _optimizer_steps(name, kw, dt)]])


def _lstm_steps(dt, H: int, N: int, bidirectional: bool) -> list:
    rng = np.random.default_rng(1)
    dg.manual_seed(0)
    m = dg.nn.LSTM(24, H, batch_first=True, bidirectional=bidirectional)
    if dt == np.float64:
        m = m.double()
    x = dg.from_numpy(rng.standard_normal((N, 5, 24)).astype(dt)).requires_grad_(True)
    out, (hn, cn) = m(x)
    w = dg.from_numpy(rng.standard_normal(out.shape).astype(dt))
    ((out * w).sum() + (hn * hn).sum() + (cn * 3).sum()).backward()
    with dg.no_grad():
        again, _ = m(x)  # the forward that keeps no gate blocks
    return [out.data, hn.data, cn.data, again.data, x.grad.data] + [
        p.grad.data for p in m.parameters()]


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("H,N,bidirectional", [(256, 32, False), (40, 205, True)])
def test_lstm_time_loops_in_parts_give_the_same_bits(monkeypatch, dt, H, N, bidirectional):
    """The gate math of each step splits by hidden units (on whole cache lines of the
    output rows: H = 40 splits 16 + 24, and into empty parts)."""
    if not (mkl.available() and _native.ufunc_loop(np.tanh, dt)):
        pytest.skip("needs MKL and NumPy's tanh loop")
    monkeypatch.setattr(_native.lib(), "lstm_fused", False)  # the step kernels: NumPy's bits
    assert 4 * H * N >= MIN
    runs = _runs(lambda: _lstm_steps(dt, H, N, bidirectional))
    _assert_same_bits(runs)
    with _native.enabled(False):
        _assert_same_bits([runs[0], [np.array(a) for a in _lstm_steps(dt, H, N,
                                                                       bidirectional)]])


@needs_kernels
@pytest.mark.skipif(_native.lib() is None or not _native.lib().lstm_fused,
                    reason="the fused LSTM forward is built for AVX2 without AVX-512 only")
@pytest.mark.parametrize("H,N,bidirectional", [(256, 32, False), (40, 205, True)])
def test_lstm_fused_loops_in_parts_give_the_same_bits(H, N, bidirectional):
    """The fused float32 loops split each step by blocks of hidden units (H = 40: 7 blocks,
    the last partial, over 2, 5 and 7 parts; N = 205: a partial tile of columns): every
    element's sum runs in the same order in any part, so the bits agree, forward and
    backward."""
    assert 4 * H * N >= MIN
    _assert_same_bits(_runs(lambda: _lstm_steps(np.float32, H, N, bidirectional)))


@needs_kernels
@pytest.mark.skipif(_native.lib() is None or not _native.lib().narrow,
                    reason="the narrow Linear kernel needs a build with AVX2 and FMA")
@pytest.mark.parametrize("m,k,n", [(1000, 512, 10), (97, 2000, 16), (2003, 150, 5)])
def test_narrow_linear_in_parts_gives_the_same_bits(m, k, n):
    """The narrow Linear splits its rows into parts anywhere (mid-tile too): every output is
    the same chain of multiply-adds in any part."""
    assert m * k >= MIN
    rng = np.random.default_rng(0)
    x = dg.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
    dg.manual_seed(0)
    head = dg.nn.Sequential(dg.nn.Linear(k, n), dg.nn.ReLU())
    _assert_same_bits(_runs(lambda: [head(x).data, head[0](x).data]))


def _conv_steps(dt, n, c, o, size, k, padding):
    """Forward and backward of one convolution."""
    dg.manual_seed(0)
    rng = np.random.default_rng(1)
    x = dg.from_numpy(rng.standard_normal((n, c, size, size)).astype(dt)).requires_grad_(True)
    conv = dg.nn.Conv2d(c, o, k, padding=padding).to(dtype=dt)
    y = conv(x)
    y.backward(dg.from_numpy(rng.standard_normal(y.shape).astype(dt)))
    return [y.data, x.grad.data, conv.weight.grad.data, conv.bias.grad.data]


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("n,c,o,size,k,padding,kernels", [
    # LeNet's first layer: the forward by output columns, the weight grad along the rows
    (13, 1, 6, 28, 5, 2, {"conv2d_direct": 1, "conv2d_weight_grad_rows": 1}),
    # LeNet's second: the forward by output channels, the weight grad over (channels, input
    # channel) pairs, the input grad by output columns
    (21, 6, 16, 14, 5, 0, {"conv2d_direct": 2, "conv2d_weight_grad": 1}),
    # 3x3, 12 outputs: a last block of channels partly empty
    (9, 4, 12, 19, 3, 1, {"conv2d_direct": 2, "conv2d_weight_grad": 1}),
])
def test_convolutions_in_parts_give_the_same_bits(monkeypatch, dt, n, c, o, size, k, padding,
                                                  kernels):
    """The direct convolution splits whole images, its weight gradients whole output channels
    or (channel vector, input channel) pairs: every sum is made in one part, in one order."""
    k_ = _native.lib()
    calls = {name: 0 for name in kernels}
    for name in kernels:
        table = dict(getattr(k_, name))

        def spy(*args, _fn=table[np.dtype(dt)], _name=name):
            calls[_name] += 1
            return _fn(*args)

        monkeypatch.setattr(k_, name, {**table, np.dtype(dt): spy})
    runs = _runs(lambda: _conv_steps(dt, n, c, o, size, k, padding))
    assert calls == {name: len(SPLITS) * count for name, count in kernels.items()}
    assert n * o * (size + 2 * padding - k + 1) ** 2 >= MIN  # large enough to split
    _assert_same_bits(runs)


def _batch_norm_steps(dt, shape):
    rng = np.random.default_rng(2)
    x = dg.from_numpy(rng.standard_normal(shape).astype(dt)).requires_grad_(True)
    bn = dg.nn.BatchNorm2d(shape[1]).to(dtype=dt)
    with dg.no_grad():
        bn.weight.copy_(dg.from_numpy(rng.standard_normal(shape[1]).astype(dt)))
    y = bn(x)
    y.backward(dg.from_numpy(rng.standard_normal(shape).astype(dt)))
    return [y.data, x.grad.data, bn.weight.grad.data, bn.bias.grad.data, bn.running_mean.data,
            bn.running_var.data]


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8, 13, 17, 19), (4, 3, 64, 50)])
def test_batch_norm_in_parts_gives_the_same_bits(dt, shape):
    """Batch normalization's passes split by whole channels (13: parts of 6 and 7; 3 channels
    in 5 or 7 parts leave some parts empty)."""
    assert np.prod(shape) >= MIN
    runs = _runs(lambda: _batch_norm_steps(dt, shape))
    _assert_same_bits(runs)


def _child(code: str, **env) -> str:
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, **env})
    assert run.returncode == 0, run.stderr
    return run.stdout


@needs_kernels
def test_deepgrad_parallel_0_keeps_kernels_whole():
    code = ("import numpy as np, deepgrad as dg\n"
            "from deepgrad import _native\n"
            "from deepgrad._native import mkl, parallel\n"
            "mkl.available(); _native.lib()\n"
            "print(parallel.parts()); print(parallel.status())\n")
    out = _child(code, DEEPGRAD_PARALLEL="0").splitlines()
    assert out[0] == "1"
    if mkl.available() and "TBB layer" in mkl.status():
        assert "off" in out[1]


@needs_kernels
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_runs_kernels_whole():
    """TBB's workers stay with the parent: a child's kernels run whole, and finish."""
    code = ("import os, numpy as np, deepgrad as dg\n"
            "from deepgrad import _native\n"
            "from deepgrad._native import mkl, parallel\n"
            "mkl.available(); k = _native.lib()\n"
            "x = np.arange(-50000, 50000, dtype=np.float32); out = np.empty_like(x)\n"
            "k.relu_forward[x.dtype](x.ctypes.data, out.ctypes.data, x.size)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    y = np.empty_like(x)\n"
            "    k.relu_forward[x.dtype](x.ctypes.data, y.ctypes.data, x.size)\n"
            "    os._exit(0 if parallel.parts() == 1 and np.array_equal(y, out) else 3)\n"
            "_, status = os.waitpid(pid, 0)\n"
            "print(os.waitstatus_to_exitcode(status))\n")
    assert _child(code).strip() == "0"


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("C", [65, 10])
def test_row_kernels_in_parts_give_the_same_bits(monkeypatch, dt, C):
    """Cross-entropy (forward and backward) and a Linear's bias and its gradient, over rows
    split into parts (the bias gradient over columns). The Linear's product is the GEMM's, as
    without the kernels: not the narrow layer's tiles, which sum in their own order."""
    monkeypatch.setattr(linalg, "_NARROW_MAX", 0)
    rng = np.random.default_rng(0)
    N = MIN // C + 37
    x = rng.standard_normal((N, C)).astype(dt) * 4
    y = rng.integers(0, C, N)

    def run():
        logits = dg.from_numpy(x).requires_grad_(True)
        loss = dg.nn.functional.cross_entropy(logits, dg.from_numpy(y))
        loss.backward()
        h = dg.from_numpy(rng.standard_normal((N, 48)).astype(dt)).requires_grad_(True)
        lin = dg.nn.Linear(48, C)
        if dt == np.float64:
            lin = lin.double()
        out = lin(h)
        out.backward(dg.from_numpy(x))
        return [loss.data, logits.grad.data, out.data, lin.bias.grad.data, lin.weight.grad.data]

    def seeded():
        nonlocal rng
        rng = np.random.default_rng(1)
        dg.manual_seed(0)
        return run()

    runs = _runs(seeded)
    _assert_same_bits(runs)
    with _native.enabled(False):
        _assert_same_bits([runs[0], [np.array(a) for a in seeded()]])


class _Counter:
    """Counts calls of a row-parts kernel (``linear_rows``, ``gemm_rows``) that went through
    (returned 0)."""

    def __init__(self, monkeypatch, name: str = "linear_rows") -> None:
        k = _native.lib()
        self.done = 0
        counter = self

        def wrap(fn):
            def call(*args):
                rc = fn(*args)
                counter.done += rc == 0
                return rc
            return call

        monkeypatch.setattr(k, name, {dt: wrap(f) for dt, f in getattr(k, name).items()})


def _needs_row_parts():
    if not mkl.available() or parallel.parts() < 2:
        pytest.skip("row parts need MKL and the parallel loop: " + parallel.status())


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1000, 784), (403, 512), (4, 75, 300)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_in_row_parts(monkeypatch, dt, shape, bias):
    """A large Linear runs in row parts (each part's product on one MKL thread, then its bias
    and ReLU): close to NumPy's product, the same bits with the ReLU fused or applied after,
    and its gradients those of the whole product."""
    _needs_row_parts()
    counter = _Counter(monkeypatch)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(shape).astype(dt)
    dg.manual_seed(0)
    lin = dg.nn.Linear(shape[-1], 300, bias=bias)
    if dt == np.float64:
        lin = lin.double()
    fused = dg.nn.Sequential(lin, dg.nn.ReLU())
    x = dg.from_numpy(x0).requires_grad_(True)
    y = fused(x)
    plain = lin(dg.from_numpy(x0))
    assert counter.done == 2
    np.testing.assert_array_equal(y.data, np.maximum(plain.data, 0))
    w = lin.weight.data
    ref = x0 @ w.T + (lin.bias.data if bias else 0)
    tol = 1e-4 if dt == np.float32 else 1e-12
    np.testing.assert_allclose(plain.data, ref, rtol=tol, atol=tol)
    g = rng.standard_normal(y.shape).astype(dt)
    y.backward(dg.from_numpy(g))
    mask = (y.data > 0) * g
    np.testing.assert_allclose(x.grad.data, mask @ w, rtol=tol, atol=tol)
    np.testing.assert_allclose(lin.weight.grad.data,
                               mask.reshape(-1, 300).T @ x0.reshape(-1, shape[-1]),
                               rtol=tol * 10, atol=tol * 10)
    again = lin(dg.from_numpy(x0))
    np.testing.assert_array_equal(again.data, plain.data)  # one run to the next
    tanh = dg.nn.Sequential(lin, dg.nn.Tanh())(dg.from_numpy(x0))  # the product in parts too
    np.testing.assert_array_equal(tanh.data, np.tanh(plain.data))
    assert counter.done == 4


@needs_kernels
def test_linear_row_parts_skip_what_they_cannot_take(monkeypatch):
    """Small products, strided inputs and too few rows a part go the whole-product way."""
    _needs_row_parts()
    counter = _Counter(monkeypatch)
    rng = np.random.default_rng(0)
    lin = dg.nn.Linear(512, 256)
    lin(dg.from_numpy(rng.standard_normal((4, 512)).astype(np.float32)))  # small
    wide = rng.standard_normal((600, 1024)).astype(np.float32)
    lin(dg.from_numpy(wide[:, ::2]))  # rows not contiguous
    few = parallel.parts() * linalg._ROWS_MIN_PART_ROWS - 1
    assert few * 512 * 256 >= linalg._ROWS_MIN_MACS  # large enough but for its rows
    lin(dg.from_numpy(wide[:few, :512].copy()))
    assert counter.done == 0
    with parallel.split(1):
        lin(dg.from_numpy(wide[:, :512].copy()))
    assert counter.done == 0
    lin(dg.from_numpy(wide[:, :512].copy()))
    assert counter.done == 1


def _operand(rng, rows: int, cols: int, transposed: bool, dt) -> np.ndarray:
    """A (rows, cols) matrix, stored transposed (a transpose's view) if ``transposed``."""
    if transposed:
        return rng.standard_normal((cols, rows)).astype(dt).T
    return rng.standard_normal((rows, cols)).astype(dt)


def _gemm_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray, beta: float) -> None:
    """``a @ b + beta * out`` into ``out`` by ``gemm_rows``, whatever the size: the kernel
    without mkl.py's choice of which products it gets."""
    ta, lda, tb, ldb, ldc = mkl._plan(a, b, out)
    fn, local = mkl.native_gemm(a.dtype)
    addr = mkl._address
    rc = _native.lib().gemm_rows[a.dtype](fn, local, ta == mkl._TRANS, tb == mkl._TRANS,
                                          a.shape[0], b.shape[1], a.shape[1], addr(a), lda,
                                          addr(b), ldb, beta, addr(out), ldc)
    assert rc == 0


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n, ta, tb", [(517, 128, 300, True, False),
                                             (1031, 77, 257, True, True),
                                             (203, 1000, 64, False, False),
                                             (64, 33, 700, False, True)])
def test_products_in_row_parts_give_the_same_bits(dt, m, k, n, ta, tb):
    """A product in 2, 3, 5 or 7 blocks of rows, each block's on one MKL thread (the parts on
    the parallel loop, or in turn on this thread): the same bits whatever the blocks, with and
    without ``beta * out`` added, and the product to rounding."""
    if not mkl.available():
        pytest.skip("gemm_rows runs MKL's GEMM: " + mkl.status())
    rng = np.random.default_rng(0)
    a, b = _operand(rng, m, k, ta, dt), _operand(rng, k, n, tb, dt)
    c0 = rng.standard_normal((m, n)).astype(dt)
    runs = []
    for parts, loop in [(2, True), (3, False), (5, False), (7, False)]:
        with parallel.split(parts, loop):
            fresh, added = np.full((m, n), np.nan, dt), c0.copy()
            _gemm_rows(a, b, fresh, 0.0)  # beta 0: what was in the output does not count
            _gemm_rows(a, b, added, 0.5)
            runs.append([fresh, added])
    _assert_same_bits(runs)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    bound = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    u = np.finfo(dt).eps / 2
    assert np.all(np.abs(runs[0][0] - exact) <= 2 * (k + 2) * u * bound)
    assert np.all(np.abs(runs[0][1] - (exact + 0.5 * c0)) <= 2 * (k + 2) * u * (bound + np.abs(c0)))
    with parallel.split(1):
        assert _native.lib().gemm_rows[np.dtype(dt)](*[None] * 2, 0, 0, m, n, k, None, k,
                                                     None, n, 0.0, None, n) == -1


@needs_kernels
def test_transposed_products_run_in_row_parts(monkeypatch):
    """Which products mkl.py sends to gemm_rows: a transposed left operand (a layer's weight
    gradient) with enough rows a part, columns and multiply-adds; not the others."""
    _needs_row_parts()
    counter = _Counter(monkeypatch, "gemm_rows")
    rng = np.random.default_rng(0)
    g = rng.standard_normal((128, 512)).astype(np.float32)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    got = mkl.matmul(g.T, x)
    assert counter.done == 1
    np.testing.assert_allclose(got, g.T.astype(np.float64) @ x, rtol=1e-4, atol=1e-4)
    rows = mkl.ROWS_MIN_PART_ROWS * parallel.parts()
    mkl.matmul(np.ascontiguousarray(g.T), x)  # not transposed
    mkl.matmul(g.T[:rows - 8], x)  # too few rows a part
    mkl.matmul(g.T, x[:, :mkl.ROWS_MIN_COLS - 1])  # too few columns
    mkl.matmul(g[:32].T, x[:32])  # too few multiply-adds
    with parallel.split(1):
        mkl.matmul(g.T, x)  # one part: MKL's threads take it whole
    assert counter.done == 1
    with mkl.enabled(False):
        mkl.matmul(g.T, x)
    assert counter.done == 1
    # a Linear's weight gradient: g^T @ x
    lin = dg.nn.Linear(784, 512)
    lin(dg.from_numpy(x)).backward(dg.from_numpy(g))
    assert counter.done == 2
    np.testing.assert_allclose(lin.weight.grad.data, g.T.astype(np.float64) @ x, rtol=1e-4,
                               atol=1e-4)
