"""The optional MKL GEMM (deepgrad/_native/mkl.py): every layout it accepts gives NumPy's product
to rounding, every layout it does not accept falls back to NumPy, the same bits come back on
every call, and models train the same with it and without it."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import deepgrad as dg
from deepgrad._native import mkl

needs_mkl = pytest.mark.skipif(not mkl.available(), reason=mkl.status())

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def _layouts(x: np.ndarray) -> dict[str, np.ndarray]:
    """``x`` as row-major, column-major (a transposed view), a column slice of a wider array,
    and a row-strided view."""
    wide = np.zeros((x.shape[0], x.shape[1] + 7), x.dtype)
    wide[:, 3:3 + x.shape[1]] = x
    tall = np.zeros((2 * x.shape[0], x.shape[1]), x.dtype)
    tall[::2] = x
    return {"c": x.copy(), "f": np.asfortranarray(x), "cols": wide[:, 3:3 + x.shape[1]],
            "rows2": tall[::2]}


class _Count:
    """Counts the products that reach MKL: calls of its sgemm/dgemm."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        mkl.available()  # loads MKL, if it is there, so its functions can be wrapped
        table = mkl._state["gemm"]
        if table is None:
            return

        def counted(fn):
            def call(*args):
                self.calls += 1
                return fn(*args)
            return call

        for dt, fn in list(table.items()):
            monkeypatch.setitem(table, dt, counted(fn))


@needs_mkl
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 96, 80), (1, 1000, 300), (1000, 300, 1),
                                   (1100, 1, 257)])
def test_every_layout_matches_numpy(dt, shape, monkeypatch):
    m, k, n = shape
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype(dt)
    b = rng.standard_normal((k, n)).astype(dt)
    want = a @ b
    count = _Count(monkeypatch)
    for la, x in _layouts(a).items():
        for lb, y in _layouts(b).items():
            got = mkl.matmul(x, y)
            np.testing.assert_allclose(got, want, **TOL[dt], err_msg=f"a {la}, b {lb}")
            out = np.full((m, n + 5), np.nan, dt)
            res = mkl.matmul(x, y, out=out[:, 2:2 + n])
            assert res.base is out or res is out[:, 2:2 + n] or np.shares_memory(res, out)
            np.testing.assert_allclose(out[:, 2:2 + n], want, **TOL[dt])
            assert np.isnan(out[:, :2]).all() and np.isnan(out[:, 2 + n:]).all()
    # a strided view with a non-unit inner stride is not BLAS-shaped (the "rows2"
    # layouts of a row vector are), so at most the rest reach MKL; most must
    assert count.calls >= 2 * 12


@needs_mkl
def test_unsuited_operands_fall_back_to_numpy(monkeypatch):
    count = _Count(monkeypatch)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((64, 128)).astype(np.float32)
    b = rng.standard_normal((128, 64)).astype(np.float32)
    # every other column: neither dimension is contiguous
    np.testing.assert_allclose(mkl.matmul(a, np.repeat(b, 2, axis=1)[:, ::2]), a @ b,
                               rtol=1e-4, atol=1e-4)
    assert count.calls == 0
    # an output that overlaps an operand
    buf = np.zeros((64, 128), np.float32)
    buf[:, :] = a
    want = a @ b
    mkl.matmul(buf, b, out=buf[:, :64])
    np.testing.assert_allclose(buf[:, :64], want, rtol=1e-4, atol=1e-4)
    assert count.calls == 0
    # integers, mixed dtypes, 4-d stacks, tiny products: NumPy's
    ai, bi = (a * 10).astype(np.int64), (b * 10).astype(np.int64)
    np.testing.assert_array_equal(mkl.matmul(ai, bi), ai @ bi)
    assert mkl.matmul(a, b.astype(np.float64)).dtype == np.float64
    a4 = np.stack([a, a])[None]
    np.testing.assert_allclose(mkl.matmul(a4, b), a4 @ b, rtol=1e-4, atol=1e-4)
    small = np.ones((4, 2), np.float32)
    np.testing.assert_array_equal(mkl.matmul(small, small.T), small @ small.T)
    assert count.calls == 0
    # the shapes NumPy rejects, it rejects with its own error
    with pytest.raises(ValueError):
        mkl.matmul(a, a)


@needs_mkl
def test_same_bits_every_call_and_any_alignment():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((256, 2048)).astype(np.float32)
    b = rng.standard_normal((2048, 96)).astype(np.float32)
    first = mkl.matmul(a, b)
    for offset in (1, 3, 16):
        # the same values starting 4, 12 and 64 bytes further into a buffer
        buf = np.empty(a.size + offset, np.float32)
        shifted = buf[offset:].reshape(a.shape)
        shifted[...] = a
        np.testing.assert_array_equal(mkl.matmul(shifted, b), first)
    for _ in range(20):
        np.testing.assert_array_equal(mkl.matmul(a, b), first)


def test_enabled_false_uses_numpy(monkeypatch):
    count = _Count(monkeypatch)
    a = np.ones((64, 64), np.float32)
    with mkl.enabled(False):
        assert "off" in mkl.status()
        np.testing.assert_array_equal(mkl.matmul(a, a), a @ a)
    assert count.calls == 0


def test_missing_mkl_is_a_clear_status_and_numpy_serves(monkeypatch):
    monkeypatch.setattr(mkl, "_candidates", lambda: [])
    monkeypatch.setattr(mkl, "_state", {"gemm": None, "tried": False, "reason": "",
                                        "on": True})
    monkeypatch.setattr(mkl, "_mode", "auto")
    a = np.ones((64, 64), np.float32)
    np.testing.assert_array_equal(mkl.matmul(a, a), a @ a)
    assert "unavailable" in mkl.status() and "pip install mkl" in mkl.status()
    # asked for by name, its absence is an error that says what to do
    monkeypatch.setattr(mkl, "_state", {"gemm": None, "tried": False, "reason": "",
                                        "on": True})
    monkeypatch.setattr(mkl, "_mode", "mkl")
    with pytest.raises(RuntimeError, match="DEEPGRAD_BLAS=mkl.*pip install mkl"):
        mkl.matmul(a, a)


def _run(code: str, **env) -> str:
    full = {**os.environ, **env}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_environment_turns_it_off():
    out = _run("from deepgrad._native import mkl; print(mkl.status())", DEEPGRAD_BLAS="numpy")
    assert "off" in out


@needs_mkl
def test_one_thread_uses_the_sequential_layer():
    out = _run("from deepgrad._native import mkl; print(mkl.status())", DEEPGRAD_NUM_THREADS="1")
    assert "1 thread(s), sequential layer" in out


@needs_mkl
def test_import_does_not_load_mkl():
    out = _run("import sys, deepgrad, numpy as np\n"
               "from deepgrad import nn\n"
               "nn.Linear(3, 2)(deepgrad.ones(4, 3))\n"
               "print(any('mkl' in line for line in open('/proc/self/maps')))")
    assert out.strip() == "False"


def _train_mlp(steps: int) -> list[np.ndarray]:
    dg.manual_seed(0)
    from deepgrad import nn

    model = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    opt = dg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    x = dg.tensor(rng.standard_normal((64, 100)).astype(np.float32))
    y = dg.tensor(rng.integers(0, 10, 64))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()]


def _train_lstm(steps: int) -> list[np.ndarray]:
    dg.manual_seed(0)
    from deepgrad import nn

    lstm = nn.LSTM(32, 128, batch_first=True)
    opt = dg.optim.Adam(lstm.parameters(), lr=1e-3)
    x = dg.tensor(np.random.default_rng(0).standard_normal((16, 20, 32)).astype(np.float32))
    for _ in range(steps):
        opt.zero_grad()
        out, _ = lstm(x)
        (out * out).mean().backward()
        opt.step()
    return [p.detach().numpy().copy() for p in lstm.parameters()]


@needs_mkl
@pytest.mark.parametrize("train", [_train_mlp, _train_lstm])
def test_models_train_alike_with_and_without_mkl(train, monkeypatch):
    count = _Count(monkeypatch)
    with_mkl = train(5)
    assert count.calls > 0
    again = train(5)
    for p, q in zip(with_mkl, again):
        np.testing.assert_array_equal(p, q)  # reproducible bit for bit
    with mkl.enabled(False):
        without = train(5)
    for p, q in zip(with_mkl, without):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)


@needs_mkl
@pytest.mark.parametrize("case", ["both", "a2", "b2", "views"])
def test_stacks_of_products(case, monkeypatch):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 96, 64)).astype(np.float32)
    b = rng.standard_normal((3, 64, 48)).astype(np.float32)
    if case == "a2":
        a = a[0]
    elif case == "b2":
        b = b[1]
    elif case == "views":
        # the layouts of the convolution's per-image products: a transposed stack of columns
        b = np.ascontiguousarray(b.transpose(1, 0, 2)).transpose(1, 0, 2)
        a = np.asfortranarray(a[0])
    count = _Count(monkeypatch)
    want = np.matmul(a, b)
    np.testing.assert_allclose(mkl.matmul(a, b), want, rtol=1e-4, atol=1e-4)
    out = np.empty(want.shape, np.float32)
    assert mkl.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    assert count.calls == 2 * 3
    # stacks that do not line up are NumPy's to reject
    with pytest.raises(ValueError):
        mkl.matmul(np.ones((2, 96, 64), np.float32), np.ones((3, 64, 48), np.float32))


@needs_mkl
def test_prepared_product_runs_at_other_addresses():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((128, 70)).astype(np.float32)
    cols = rng.standard_normal((70, 5 * 32)).astype(np.float32)  # 5 blocks of 32 columns
    out = np.zeros((5, 128, 32), np.float32)
    run = mkl.prepared(w.T.copy().T, cols[:, :32], out[0])
    assert run is not None
    wf = np.asfortranarray(w)
    for t in range(5):
        run(wf.ctypes.data, cols[:, t * 32:].ctypes.data, out[t].ctypes.data)
    for t in range(5):
        np.testing.assert_allclose(out[t], w @ cols[:, t * 32:(t + 1) * 32], rtol=1e-4,
                                   atol=1e-4)
    # operands BLAS cannot describe, or MKL turned off: no plan
    assert mkl.prepared(w, np.repeat(cols, 2, axis=1)[:, :64:2], out[0]) is None
    with mkl.enabled(False):
        assert mkl.prepared(w, cols[:, :32], out[0]) is None


@needs_mkl
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_winograd_convolution_runs_its_gemms_in_mkl(dt, monkeypatch):
    """The Winograd kernels (kernels.c) call MKL's GEMM from their own threads, MKL on one
    thread each: forward, input and weight gradient equal the kernel's own GEMMs to rounding."""
    from deepgrad import _native
    from deepgrad.ops import conv as conv_ops
    if _native.lib() is None:
        pytest.skip(_native.status())
    handed = []
    real = mkl.native_gemm

    def spy(d):
        got = real(d)
        handed.append(got[0] is not None)
        return got

    monkeypatch.setattr(mkl, "native_gemm", spy)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 16, 13, 11)).astype(dt)  # odd sizes: partial tiles
    w = (rng.standard_normal((24, 16, 3, 3)) * 0.1).astype(dt)
    gy = rng.standard_normal((5, 24, 13, 11)).astype(dt)
    results = []
    for on in (True, False):
        with mkl.enabled(on):
            xt = dg.from_numpy(x.copy()).requires_grad_(True)
            wt = dg.from_numpy(w.copy()).requires_grad_(True)
            y = dg.nn.functional.conv2d(xt, wt, padding=1)
            y.backward(dg.from_numpy(gy))
            results.append((y.data.copy(), xt.grad.data.copy(), wt.grad.data.copy()))
    assert handed.count(True) == 3 and handed.count(False) == 3  # forward, input, weight grad
    assert conv_ops._winograd_kernels(conv_ops._Geom(x.shape, w.shape, (1, 1), ((1, 1), (1, 1)),
                                                     (1, 1), 1), np.dtype(dt), 16, 24)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, **TOL[dt])
