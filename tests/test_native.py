"""The optional native kernels (deepgrad/_native): built and loaded where a C compiler exists,
used by the LSTM and the optimizers, and bit for bit equal to the NumPy path they stand in for;
without a compiler (or with DEEPGRAD_NATIVE=0) deepgrad runs on NumPy alone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _native
from deepgrad._native import mkl, parallel
from deepgrad.ops import conv as conv_ops
from deepgrad.ops import rnn

needs_kernels = pytest.mark.skipif(_native.lib() is None, reason=_native.status())


class _Spy:
    """Counts calls of one kernel while the real one runs."""

    def __init__(self, monkeypatch, name: str) -> None:
        k = _native.lib()
        self.calls = 0
        table = dict(getattr(k, name))
        spy = self

        def wrap(fn):
            def call(*args):
                spy.calls += 1
                return fn(*args)
            return call

        monkeypatch.setattr(k, name, {dt: wrap(fn) for dt, fn in table.items()})


def _step_kernels(monkeypatch) -> None:
    """The LSTM's float32 forward through the step kernels (which give the NumPy loop's bits)
    instead of the fused kernel (which gives them to rounding), for this test."""
    monkeypatch.setattr(_native.lib(), "lstm_fused", False)


# ---- the LSTM ---------------------------------------------------------------------------------
def _layer_run(m, dt, batch_first: bool, initial: bool, T: int, N: int, I: int, H: int):
    """Forward and backward of the recurrent module ``m`` (an LSTM, or an RNN or GRU) on
    seeded data: its outputs, the input's, the weights' and the initial state's grads."""
    rng = np.random.default_rng(1)
    if dt == np.float64:
        m = m.double()
    cell = isinstance(m, dg.nn.LSTM)
    D = 2 if m.bidirectional else 1
    x = dg.from_numpy(rng.standard_normal((N, T, I) if batch_first else (T, N, I))
                      .astype(dt)).requires_grad_(True)
    states = [dg.from_numpy(rng.standard_normal((D * m.num_layers, N, H)).astype(dt))
              .requires_grad_(True) for _ in range(2 if cell else 1)] if initial else []
    args = ((tuple(states) if cell else states[0]),) if initial else ()
    out, hc = m(x, *args)
    hn, cn = hc if cell else (hc, None)
    weight = dg.from_numpy(rng.standard_normal(out.shape).astype(dt))
    loss = (out * weight).sum() + (hn * hn).sum()
    if cn is not None:
        loss = loss + (cn * 2).sum()
    loss.backward()
    got = [out.data, hn.data] + ([cn.data] if cn is not None else []) + [x.grad.data]
    got += [p.grad.data for p in m.parameters()]
    got += [s.grad.data for s in states]
    return [np.array(a) for a in got]


def _lstm_run(native: bool, dt, batch_first: bool, bidirectional: bool, initial: bool,
              layers: int = 2, T: int = 7, N: int = 3, I: int = 5, H: int = 6):
    with _native.enabled(native):
        dg.manual_seed(0)
        m = dg.nn.LSTM(I, H, num_layers=layers, batch_first=batch_first,
                       bidirectional=bidirectional)
        return _layer_run(m, dt, batch_first, initial, T, N, I, H)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("initial", [False, True])
def test_lstm_native_equals_numpy_bit_for_bit(monkeypatch, dt, batch_first, bidirectional,
                                              initial):
    _step_kernels(monkeypatch)
    gates = _Spy(monkeypatch, "lstm_gates")
    back = _Spy(monkeypatch, "lstm_backward_step")
    native = _lstm_run(True, dt, batch_first, bidirectional, initial)
    steps = 7 * 2 * (2 if bidirectional else 1)  # time steps x layers x directions
    assert gates.calls == steps and back.calls == steps
    reference = _lstm_run(False, dt, batch_first, bidirectional, initial)
    assert gates.calls == steps  # the NumPy run did not call the kernels
    for a, b in zip(native, reference):
        np.testing.assert_array_equal(a, b)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("N, H", [(16, 32), (19, 37)])
def test_lstm_native_equals_numpy_at_sizes_of_whole_register_tiles(monkeypatch, dt, N, H):
    """Batches and widths that fill the transposes' register tiles (16 float32 or 8 float64
    lanes), with and without ragged edges."""
    _step_kernels(monkeypatch)
    native = _lstm_run(True, dt, True, False, True, layers=1, T=4, N=N, I=5, H=H)
    reference = _lstm_run(False, dt, True, False, True, layers=1, T=4, N=N, I=5, H=H)
    for a, b in zip(native, reference):
        np.testing.assert_array_equal(a, b)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("rows, cols", [(1, 1), (16, 16), (33, 17), (8, 40), (5, 3)])
def test_transpose_kernel_matches_numpy(dt, rows, cols):
    """dst[c, r] = src[r, c] between strided rows, by register tiles plus ragged edges."""
    src = np.random.default_rng(0).standard_normal((rows, cols + 3)).astype(dt)[:, 2:2 + cols]
    dst = np.full((cols, rows + 5), -1.0, dt)
    it = src.itemsize
    _native.lib().transpose[np.dtype(dt)](_native.address(src), src.strides[0] // it,
                                          _native.address(dst), dst.strides[0] // it, rows, cols)
    np.testing.assert_array_equal(dst[:, :rows], src.T)
    assert (dst[:, rows:] == -1).all()  # nothing written past each row


@needs_kernels
def test_lstm_native_gradients_pass_gradcheck():
    dg.manual_seed(0)
    m = dg.nn.LSTM(3, 4, batch_first=True).double()
    x = dg.randn(2, 5, 3, dtype=dg.float64, requires_grad=True)
    assert dg.autograd.gradcheck(lambda x: m(x)[0], (x,))


@needs_kernels
def test_lstm_native_backward_flushes_tiny_carried_gradients(monkeypatch):
    """Gradients far below the normal range (1e-38) die out on every path: alike to the bit
    on the step kernels and NumPy's loop, and after the fused forward too."""
    def grad_x(native: bool) -> np.ndarray:
        with _native.enabled(native):
            dg.manual_seed(0)
            m = dg.nn.LSTM(4, 8)
            x = dg.randn(30, 2, 4, requires_grad=True)
            out, _ = m(x)
            g = np.zeros(out.shape, np.float32)
            g[-1] = 1e-36
            out.backward(dg.from_numpy(g))
            return x.grad.data.copy()

    fused = grad_x(True)
    _step_kernels(monkeypatch)
    first = grad_x(True)
    np.testing.assert_array_equal(first, grad_x(False))
    for grad in (first, fused):
        assert np.any(grad[-3:] != 0) and not np.any(np.abs(grad[:-3]) > 0)


needs_fused = pytest.mark.skipif(_native.lib() is None or not _native.lib().lstm_fused,
                                 reason="the fused LSTM forward is built for AVX2 without "
                                        "AVX-512 only")


def _ulps(got: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Distance of float32 results from the true tanh (float64, then rounded), in units in the
    last place of the rounded value."""
    ref = np.tanh(x.astype(np.float64))
    spacing = np.spacing(np.abs(ref.astype(np.float32))).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / spacing


@needs_fused
def test_fused_tanh_is_within_two_ulp_odd_and_keeps_special_values():
    """The fused LSTM's own tanh (kernels.c: tanh8; within 1.5 ulp over every float, checked
    once exhaustively) on a dense sample of both branches and their boundary, tiny and huge
    inputs, and partial vectors."""
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-12, 12, 400_001), rng.standard_normal(100_000) * 3,
                        np.linspace(0.62, 0.63, 10_001), 10.0 ** rng.uniform(-40, 3, 50_000),
                        [9.0, 9.5, 20.0, 1e30, 3.4e38, 1e-45]]).astype(np.float32)
    x = np.concatenate([x, -x])
    fast = _native.lib().tanh_fast[np.dtype(np.float32)]
    y = np.empty_like(x)
    fast(_native.address(x), _native.address(y), x.size)
    assert _ulps(y, x).max() <= 2.0
    np.testing.assert_array_equal(y[:x.size // 2], -y[x.size // 2:])  # odd, to the bit
    part = np.full(16, 7.0, np.float32)
    fast(_native.address(x), _native.address(part), 13)  # a partial vector at the end
    np.testing.assert_array_equal(part[:13], y[:13])
    assert (part[13:] == 7.0).all()  # nothing written past n
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40], np.float32)
    out = np.empty_like(special)
    fast(_native.address(special), _native.address(out), special.size)
    np.testing.assert_array_equal(out[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(out[1]) and np.isnan(out[4])
    np.testing.assert_array_equal(out[5:], special[5:])  # tanh(x) = x for subnormals


def _close_to_rounding(got: list, want: list) -> None:
    for a, b in zip(got, want):
        assert a.shape == b.shape
        scale = float(np.abs(b).max()) or 1.0
        assert float(np.abs(a - b).max()) <= 2e-5 * scale


@needs_fused
@pytest.mark.parametrize("N, H", [(3, 6), (16, 7), (19, 37), (32, 64), (40, 20)])
@pytest.mark.parametrize("batch_first, bidirectional, initial",
                         [(False, False, False), (True, True, True), (True, False, True)])
def test_lstm_fused_loops_equal_numpy_to_rounding(monkeypatch, N, H, batch_first,
                                                    bidirectional, initial):
    """The fused float32 loops (their own GEMM tiles, and tanh in the forward) against
    NumPy's: outputs, final states and every gradient. Batches that fill whole tiles of 16
    columns or leave a partial one, widths that fill whole blocks of 6 units or not, two
    layers."""
    fused = _Spy(monkeypatch, "lstm_forward_fused")
    back = _Spy(monkeypatch, "lstm_backward_fused")
    got = _lstm_run(True, np.float32, batch_first, bidirectional, initial, T=5, N=N, I=4, H=H)
    assert fused.calls == back.calls == 2 * (2 if bidirectional else 1)
    want = _lstm_run(False, np.float32, batch_first, bidirectional, initial, T=5, N=N, I=4, H=H)
    _close_to_rounding(got, want)


@needs_fused
def test_lstm_fused_forward_without_a_graph_gives_the_same_bits():
    """Under no_grad the fused forward keeps a few rotating buffers instead of every step's
    gates: the same outputs, to the bit."""
    dg.manual_seed(0)
    m = dg.nn.LSTM(10, 40, num_layers=2, batch_first=True)
    x = dg.randn(19, 12, 10)
    out, (hn, cn) = m(x.requires_grad_(True))
    with dg.no_grad():
        out2, (hn2, cn2) = m(x)
    for a, b in ((out, out2), (hn, hn2), (cn, cn2)):
        np.testing.assert_array_equal(a.data, b.data)


# ---- a narrow Linear (kernels.c: linear_narrow) -------------------------------------------------
needs_narrow = pytest.mark.skipif(_native.lib() is None or not _native.lib().narrow,
                                  reason="the narrow Linear kernel needs a build with AVX2 and FMA")


def _rounding_bound(x: np.ndarray, w: np.ndarray, b) -> np.ndarray:
    """How far a float32 sum of k products (then the bias) may fall from the exact value: the
    classic bound k * u * sum |x_i w_i| with u = 2^-24, doubled for the bias's rounding and
    the last one; the bound any summation order meets."""
    k = x.shape[1]
    mag = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64).T
    if b is not None:
        mag = mag + np.abs(b)
    return 2 * (k + 2) * 2.0**-24 * mag + 1e-30


@needs_narrow
@pytest.mark.parametrize("m,k,n", [(1000, 512, 10), (531, 300, 2), (97, 2000, 16),
                                   (1000, 70, 9), (2003, 150, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_narrow_linear_is_within_rounding_and_fuses_its_activations_bit_for_bit(
        monkeypatch, m, k, n, bias):
    """A Linear with few outputs runs on its own tiles: within float32 rounding of the exact
    product (rows not a multiple of the tile's six, one and two vectors of columns), the same
    bits alone and fused with ReLU, Sigmoid or Tanh, for a strided input and a transposed
    weight, and its gradients those of the product."""
    spy = _Spy(monkeypatch, "linear_narrow")
    rng = np.random.default_rng(m + n)
    x0 = rng.standard_normal((m, k)).astype(np.float32)
    dg.manual_seed(0)
    lin = dg.nn.Linear(k, n, bias=bias)
    w, b = lin.weight.data, (lin.bias.data if bias else None)
    x = dg.from_numpy(x0).requires_grad_(True)
    y = lin(x)
    assert spy.calls == 1
    exact = x0.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
    assert np.all(np.abs(y.data - exact) <= _rounding_bound(x0, w, b))
    for act, fn in (("ReLU", lambda v: np.maximum(v, 0)), ("Sigmoid", None), ("Tanh", np.tanh)):
        fused = dg.nn.Sequential(lin, getattr(dg.nn, act)())(dg.from_numpy(x0))
        alone = getattr(dg.nn, act)()(lin(dg.from_numpy(x0)))
        np.testing.assert_array_equal(fused.data, alone.data)
        if fn is not None:
            np.testing.assert_array_equal(fused.data, fn(y.data))
    wide = np.zeros((m, k + 13), np.float32)
    wide[:, 5:5 + k] = x0
    np.testing.assert_array_equal(lin(dg.from_numpy(wide[:, 5:5 + k])).data, y.data)
    wt = dg.from_numpy(np.asfortranarray(w))  # the same values, columns contiguous
    bt = None if b is None else dg.from_numpy(b)
    np.testing.assert_array_equal(dg.nn.functional.linear(dg.from_numpy(x0), wt, bt).data,
                                  y.data)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(dg.from_numpy(g))
    np.testing.assert_allclose(x.grad.data, g @ w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lin.weight.grad.data, g.T @ x0, rtol=1e-3, atol=1e-3)


@needs_narrow
def test_narrow_linear_takes_only_what_it_is_for(monkeypatch):
    """Small products (LeNet-5's head), wide outputs, float64 and a single output go the
    GEMM's way; NaN and inf pass through as in the product."""
    spy = _Spy(monkeypatch, "linear_narrow")
    rng = np.random.default_rng(0)
    for shape, n, dt in (((64, 84), 10, np.float32), ((1000, 512), 40, np.float32),
                         ((1000, 512), 10, np.float64), ((1000, 512), 1, np.float32)):
        lin = dg.nn.Linear(shape[1], n).to(dtype=dt)
        lin(dg.from_numpy(rng.standard_normal(shape).astype(dt)))
    assert spy.calls == 0
    lin = dg.nn.Linear(512, 10)
    x = rng.standard_normal((1000, 512)).astype(np.float32)
    x[3, 7], x[10, 0] = np.nan, np.inf
    y = dg.nn.Sequential(lin, dg.nn.ReLU())(dg.from_numpy(x)).data
    assert spy.calls == 1
    assert np.isnan(y[3]).all() and not np.isnan(np.delete(y, [3, 10], axis=0)).any()
    w = lin.weight.data
    np.testing.assert_array_equal(np.isposinf(y[10]), (w[:, 0] > 0) & ~np.isnan(y[10]))


# ---- the optimizers ---------------------------------------------------------------------------
_OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=1e-3)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2, betas=(0.3, 0.9), maximize=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, maximize=True)),
    ("AdamW", dict(lr=1e-2, amsgrad=True)),
]


def _optimizer_run(native: bool, name: str, kw: dict, dt, sizes) -> list:
    rng = np.random.default_rng(0)
    with _native.enabled(native), np.errstate(all="ignore"):  # NaN and inf in the gradients
        ps = [dg.nn.Parameter(dg.from_numpy(rng.standard_normal(s).astype(dt))) for s in sizes]
        opt = getattr(dg.optim, name)(ps, **kw)
        for _ in range(4):
            for p in ps:
                g = rng.standard_normal(p.shape).astype(dt)
                g.flat[:3] = [np.nan, np.inf, 0.0] if g.size > 3 else g.flat[:3]
                p.grad = dg.from_numpy(g)
            opt.step()
        return [p.data.copy() for p in ps] + [
            np.array(v.data) for st in opt.state.values() for v in st.values()
            if isinstance(v, dg.Tensor)]


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", _OPTIMIZERS)
@pytest.mark.parametrize("sizes", [[(300, 200), (7,)], [(60, 50), (40, 30), (100,)]],
                         ids=["large", "flat"])  # "flat": small enough for one flat buffer
def test_optimizer_native_equals_numpy_bit_for_bit(monkeypatch, dt, name, kw, sizes):
    kernel = "sgd_update" if name == "SGD" else "adam_update"
    spy = _Spy(monkeypatch, kernel)
    native = _optimizer_run(True, name, kw, dt, sizes)
    assert spy.calls > 0
    reference = _optimizer_run(False, name, kw, dt, sizes)
    for a, b in zip(native, reference):
        np.testing.assert_array_equal(a, b)


@needs_kernels
def test_small_arrays_stay_on_numpy(monkeypatch):
    """Below MIN_ELEMENTS a kernel call costs more than NumPy's passes."""
    update = _Spy(monkeypatch, "sgd_update")
    grad = _Spy(monkeypatch, "tanh_backward")
    # backward(ones): a dense gradient (a sum's is a broadcast view, which stays on NumPy)
    p = dg.nn.Parameter(dg.randn(_native.MIN_ELEMENTS - 1))
    dg.tanh(p).backward(dg.ones(p.shape))
    dg.optim.SGD([p], lr=0.1, momentum=0.9).step()
    assert update.calls == 0 and grad.calls == 0
    q = dg.nn.Parameter(dg.randn(_native.MIN_ELEMENTS))
    dg.tanh(q).backward(dg.ones(q.shape))
    dg.optim.SGD([q], lr=0.1, momentum=0.9).step()
    assert update.calls == 1 and grad.calls == 1


@needs_kernels
def test_optimizer_native_skips_arrays_it_cannot_take(monkeypatch):
    """A non-contiguous parameter goes through NumPy (and comes out the same)."""
    spy = _Spy(monkeypatch, "sgd_update")
    base = np.arange(8000, dtype=np.float32).reshape(80, 100)
    p = dg.nn.Parameter(dg.from_numpy(base))
    p.data = base.T  # a transposed view: not C-contiguous
    p.grad = dg.from_numpy(np.ones((100, 80), np.float32))
    dg.optim.SGD([p], lr=0.5).step()
    assert spy.calls == 0
    np.testing.assert_array_equal(
        p.data, np.arange(8000, dtype=np.float32).reshape(80, 100).T - 0.5)


# ---- building and falling back ----------------------------------------------------------------
def _fresh_process(env_update: dict, code: str) -> str:
    env = dict(os.environ, **env_update)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


_PROBE = ("import numpy as np, deepgrad as dg; from deepgrad import _native; "
          "dg.manual_seed(0); m = dg.nn.LSTM(3, 4); x = dg.randn(5, 2, 3); "
          "o, _ = m(x); o.sum().backward(); "
          "print(_native.status()); print(repr(float(m.weight_hh_l0.grad.data.sum())))")


def test_without_a_compiler_deepgrad_falls_back_to_numpy(tmp_path):
    out = _fresh_process({"CC": str(tmp_path / "no-such-cc"), "DEEPGRAD_CACHE": str(tmp_path)},
                         _PROBE)
    assert "unavailable, using NumPy" in out and "no C compiler" in out
    off = _fresh_process({"DEEPGRAD_NATIVE": "0"}, _PROBE)
    assert off.startswith("native kernels: off")
    assert out.splitlines()[1] == off.splitlines()[1]  # same gradient, to the last bit


def test_a_failing_build_is_reported_and_falls_back(tmp_path):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'compiler broken' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = _fresh_process({"CC": str(fake), "DEEPGRAD_CACHE": str(tmp_path)}, _PROBE)
    assert "build failed" in out and "compiler broken" in out


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="no C compiler")
def test_build_goes_to_the_cache_once_and_is_reused(tmp_path):
    env = {"DEEPGRAD_CACHE": str(tmp_path)}
    first = _fresh_process(env, _PROBE)
    assert "native kernels: on" in first
    built = list((tmp_path / "native").glob("kernels-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    second = _fresh_process(env, _PROBE)
    assert second == first
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert [p.name for p in (tmp_path / "native").iterdir()] == [built[0].name]  # no leftovers


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first, bidirectional, initial",
                         [(True, False, True), (False, True, False), (True, True, True)])
def test_lstm_sequence_kernels_equal_the_step_loops_bit_for_bit(monkeypatch, dt, batch_first,
                                                                bidirectional, initial):
    """Where MKL takes the step products, a direction's whole time loop runs in one kernel
    (lstm_forward_seq, lstm_backward_seq) calling MKL and NumPy's own tanh loop: the same
    bits as the Python loop over the step kernels and as the NumPy loop, with and without
    a graph to record."""
    if not (mkl.available() and _native.ufunc_loop(np.tanh, dt)):
        pytest.skip("needs MKL and NumPy's tanh loop")
    _step_kernels(monkeypatch)
    size = dict(layers=2, T=9, N=16, I=20, H=64)  # step products above mkl.MIN_MACS
    D = 2 if bidirectional else 1
    forward, backward = _Spy(monkeypatch, "lstm_forward_seq"), _Spy(monkeypatch,
                                                                    "lstm_backward_seq")
    whole = _lstm_run(True, dt, batch_first, bidirectional, initial, **size)
    assert forward.calls == backward.calls == 2 * D
    with dg.no_grad(), _native.enabled(True):  # the forward that keeps no gate blocks
        dg.manual_seed(0)
        m = dg.nn.LSTM(20, 64, num_layers=2, batch_first=batch_first,
                       bidirectional=bidirectional)
        if dt == np.float64:
            m = m.double()
        x = np.random.default_rng(1).standard_normal((16, 9, 20) if batch_first else
                                                     (9, 16, 20)).astype(dt)
        if not initial:
            out, (hn, cn) = m(dg.from_numpy(x))
            for a, b in zip(whole[:3], (out.data, hn.data, cn.data)):
                np.testing.assert_array_equal(a, b)
    assert forward.calls == (2 * D if initial else 4 * D)
    monkeypatch.setattr(rnn, "_sequence", lambda *args: None)
    steps = _lstm_run(True, dt, batch_first, bidirectional, initial, **size)
    reference = _lstm_run(False, dt, batch_first, bidirectional, initial, **size)
    assert forward.calls == (2 * D if initial else 4 * D)  # neither run used them
    for a, b, c in zip(whole, steps, reference):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def _rnn_run(dt, batch_first: bool, bidirectional: bool, initial: bool, nonlinearity: str,
             layers: int = 2, T: int = 9, N: int = 32, I: int = 20, H: int = 128):
    """An RNN ("tanh", "relu") or a GRU ("gru"); step products above mkl.MIN_MACS."""
    dg.manual_seed(0)
    kw = dict(num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
    m = (dg.nn.GRU(I, H, **kw) if nonlinearity == "gru"
         else dg.nn.RNN(I, H, nonlinearity=nonlinearity, **kw))
    return _layer_run(m, dt, batch_first, initial, T, N, I, H)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first, bidirectional, initial",
                         [(True, False, True), (False, True, False), (True, True, True)])
def test_rnn_sequence_kernels_equal_the_python_loop_bit_for_bit(monkeypatch, dt, batch_first,
                                                               bidirectional, initial):
    """A tanh RNN's direction runs its whole time loop in one kernel (rnn_forward_seq,
    rnn_backward_seq) where MKL takes the step products: the Python loop's bits. The ReLU RNN
    keeps the Python loop."""
    if not (mkl.available() and _native.ufunc_loop(np.tanh, dt)):
        pytest.skip("needs MKL and NumPy's tanh loop")
    D = 2 if bidirectional else 1
    forward, backward = _Spy(monkeypatch, "rnn_forward_seq"), _Spy(monkeypatch,
                                                                   "rnn_backward_seq")
    whole = _rnn_run(dt, batch_first, bidirectional, initial, "tanh")
    assert forward.calls == backward.calls == 2 * D
    _rnn_run(dt, batch_first, bidirectional, initial, "relu")
    assert forward.calls == backward.calls == 2 * D
    monkeypatch.setattr(rnn, "_sequence", lambda *args: None)
    loop = _rnn_run(dt, batch_first, bidirectional, initial, "tanh")
    assert forward.calls == backward.calls == 2 * D
    for a, b in zip(whole, loop):
        np.testing.assert_array_equal(a, b)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first, bidirectional, initial",
                         [(True, False, True), (False, True, False), (True, True, True)])
def test_gru_sequence_kernels_equal_the_python_loop_bit_for_bit(monkeypatch, dt, batch_first,
                                                               bidirectional, initial):
    """The GRU's time loop in one kernel per direction (gru_forward_seq, gru_backward_seq):
    the Python loop's bits; and a forward without a graph (no states' columns kept) gives the
    outputs of one with."""
    if not (mkl.available() and _native.ufunc_loop(np.tanh, dt)):
        pytest.skip("needs MKL and NumPy's tanh loop")
    D = 2 if bidirectional else 1
    forward, backward = _Spy(monkeypatch, "gru_forward_seq"), _Spy(monkeypatch,
                                                                   "gru_backward_seq")
    whole = _rnn_run(dt, batch_first, bidirectional, initial, "gru")
    assert forward.calls == backward.calls == 2 * D
    dg.manual_seed(0)
    m = dg.nn.GRU(20, 128, num_layers=2, batch_first=batch_first, bidirectional=bidirectional)
    if dt == np.float64:
        m = m.double()
    x = np.random.default_rng(1).standard_normal((32, 9, 20) if batch_first else (9, 32, 20))
    with dg.no_grad():
        out, hn = m(dg.from_numpy(x.astype(dt)))
    if not initial:
        np.testing.assert_array_equal(whole[0], out.data)
        np.testing.assert_array_equal(whole[1], hn.data)
    assert forward.calls == 4 * D
    monkeypatch.setattr(rnn, "_sequence", lambda *args: None)
    loop = _rnn_run(dt, batch_first, bidirectional, initial, "gru")
    assert forward.calls == backward.calls + 2 * D == 4 * D
    for a, b in zip(whole, loop):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ufunc", [np.tanh, np.exp, np.negative])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_ufunc_loop_is_numpys_own_loop(ufunc, dt):
    """The loop handed to kernels gives the ufunc's bits, strided and in place included."""
    found = _native.ufunc_loop(ufunc, dt)
    if found is None:
        pytest.skip("not found on this NumPy build")
    import ctypes
    loop = _native._LOOP(found[0])
    x = np.random.default_rng(0).standard_normal(203).astype(dt) * 5
    x[:4] = [np.nan, -np.inf, -0.0, 1e-6]
    y = np.full(2 * x.size, 7, dt)
    isz = np.dtype(dt).itemsize
    loop((ctypes.c_void_p * 2)(x.ctypes.data, y.ctypes.data), (ctypes.c_ssize_t * 1)(x.size),
         (ctypes.c_ssize_t * 2)(isz, 2 * isz), found[1])
    with np.errstate(all="ignore"):
        want = ufunc(x)
    np.testing.assert_array_equal(y[::2], want)
    assert (y[1::2] == 7).all()
    assert np.array_equal(np.signbit(y[::2]), np.signbit(want))
    z = x.copy()
    loop((ctypes.c_void_p * 2)(z.ctypes.data, z.ctypes.data), (ctypes.c_ssize_t * 1)(z.size),
         (ctypes.c_ssize_t * 2)(isz, isz), found[1])
    np.testing.assert_array_equal(z, want)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("ufunc", [np.add, np.maximum])
def test_two_input_ufunc_loop_reduces_as_numpy_does(ufunc, dt):
    """Called on a row as a reduction (the output as first input, strides (0, itemsize, 0)),
    from the identity or else the first element, a two-input loop gives ufunc.reduce's bits:
    lengths below, at and above NumPy's pairwise-sum blocks, with NaN, infinities and signed
    zeros; and called elementwise, the ufunc's."""
    found = _native.ufunc_loop(ufunc, dt)
    if found is None:
        pytest.skip("not found on this NumPy build")
    import ctypes
    loop = _native._LOOP(found[0])
    rng = np.random.default_rng(1)
    isz = np.dtype(dt).itemsize
    first = 1 if ufunc.identity is None else 0
    rows = [rng.standard_normal(n).astype(dt) * 10 for n in (1, 2, 7, 8, 9, 65, 128, 129, 1000)]
    rows += [np.array([-0.0, -0.0, -0.0], dt), np.array([0.0, -0.0], dt),
             np.array([1.0, np.nan, 2.0] * 5, dt), np.array([np.inf, -np.inf, 3.0], dt)]
    for row in rows:
        acc = row[:1].copy() if first else np.full(1, ufunc.identity, dt)
        loop((ctypes.c_void_p * 3)(acc.ctypes.data, row[first:].ctypes.data, acc.ctypes.data),
             (ctypes.c_ssize_t * 1)(row.size - first), (ctypes.c_ssize_t * 3)(0, isz, 0),
             found[1])
        with np.errstate(all="ignore"):
            want = ufunc.reduce(row, keepdims=True)
        assert np.array_equal(acc, want, equal_nan=True), (row.size, acc, want)
        assert np.array_equal(np.signbit(acc), np.signbit(want))
    a, b = rng.standard_normal(99).astype(dt), rng.standard_normal(99).astype(dt)
    out = np.empty_like(a)
    loop((ctypes.c_void_p * 3)(a.ctypes.data, b.ctypes.data, out.ctypes.data),
         (ctypes.c_ssize_t * 1)(a.size), (ctypes.c_ssize_t * 3)(isz, isz, isz), found[1])
    np.testing.assert_array_equal(out, ufunc(a, b))


def test_ufunc_loop_declines_what_it_cannot_serve():
    assert _native.ufunc_loop(np.divmod, np.float32) is None  # two outputs
    assert _native.ufunc_loop(np.modf, np.float32) is None
    assert _native.ufunc_loop(np.add, np.int32) is None  # float dtypes only
    assert _native.ufunc_loop(np.tanh, np.int8) is None  # no int8 -> int8 loop
    assert _native.ufunc_loop(np.negative, np.int8) is None  # float dtypes only
    assert _native.ufunc_loop(np.tanh, np.float32) is _native.ufunc_loop(np.tanh, np.float32)


def test_import_does_not_build():
    out = _fresh_process({}, "import deepgrad, sys; from deepgrad import _native; "
                             "print(_native._state['tried'])")
    assert out == "False"


def test_kernels_keep_rnn_numpy_path_reachable():
    """With the kernels off, the LSTM runs its NumPy loop (the reference the tests compare to)."""
    with _native.enabled(False):
        assert rnn._kernels(np, np.dtype(np.float32)) is None


# ---- activations ------------------------------------------------------------------------------
@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name,kernel", [("tanh", "tanh_backward"), ("sigmoid", "sigmoid_backward"),
                                         ("relu", "relu_backward")])
def test_activation_backward_native_equals_numpy_bit_for_bit(monkeypatch, dt, name, kernel):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 40)).astype(dt) * 3
    x.flat[:5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    g = rng.standard_normal(x.shape).astype(dt)
    g.flat[5:8] = [np.nan, -np.inf, -0.0]
    spy = _Spy(monkeypatch, kernel)
    grads = []
    for native in (True, False):
        with _native.enabled(native), np.errstate(all="ignore"):
            t = dg.from_numpy(x.copy()).requires_grad_(True)
            getattr(dg, name)(t).backward(dg.from_numpy(g))
            grads.append(t.grad.data.copy())
    assert spy.calls == 1
    np.testing.assert_array_equal(grads[0], grads[1])
    assert np.array_equal(np.signbit(grads[0]), np.signbit(grads[1]))


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [False, True])
def test_relu_forward_native_equals_numpy_bit_for_bit(monkeypatch, dt, in_place):
    from deepgrad.ops import elementwise
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 40)).astype(dt)
    x.flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, -np.nan]
    spy = _Spy(monkeypatch, "relu_forward")
    got = []
    for native in (True, False):
        with _native.enabled(native):
            src = x.copy()
            out = src if in_place else np.empty_like(src)
            assert elementwise._relu_into(src, out) is out
            got.append(out)
    assert spy.calls == 1
    np.testing.assert_array_equal(got[0], got[1])
    assert np.array_equal(np.signbit(got[0]), np.signbit(got[1]))
    assert np.isnan(got[0].flat[0]) and got[0].flat[2] == 0 and not np.signbit(got[0].flat[4])


# ---- convolution ------------------------------------------------------------------------------
# (N, C, H, W, O, kernel, stride, padding, dilation): every case is one the native kernels take
# (output rows of 8 or more, C*kh*kw <= 400)
_CONVS = [
    (2, 1, 12, 12, 6, 5, 1, 2, 1),     # LeNet's first layer, shrunk: weight grad along rows
    (2, 2, 12, 12, 6, 3, 1, 1, 1),     # 2 channels, 6 outputs: weight grad by patches
    (3, 1, 20, 37, 5, 3, 1, 1, 1),     # 1 channel, 3x3, rows of 37 (a partial vector)
    (2, 1, 10, 12, 4, 2, 1, 0, 1),     # 1 channel, 2x2: the generic loop along rows
    (2, 1, 17, 21, 3, 3, 2, 1, 1),     # 1 channel, stride 2: by patches
    (3, 6, 14, 14, 16, 5, 1, 0, 1),    # LeNet's second layer: weight grad by the kernel
    (2, 3, 21, 19, 20, 3, 2, 1, 1),    # stride 2, odd sizes, 20 output channels (3 blocks)
    (2, 2, 16, 18, 9, 3, 1, 2, 2),     # dilation
    (1, 4, 11, 30, 8, 3, 1, (0, 1), 1),
    # lanes over output channels (rows shorter than the channels fill): odd row counts, a last
    # block of columns rounded up, a second group of channels partly empty
    (2, 3, 13, 19, 16, 3, 1, 0, 1),
    (1, 2, 9, 9, 30, 3, 1, 1, 1),
    (2, 1, 13, 12, 6, 5, 1, 2, 1),     # weight grad along rows, a row past the last block of 4
    (1, 2, 8, 13, 16, 3, 1, 0, 1),     # lanes over channels, rows of 11 (one block of 12)
]


def _conv_run(native: bool, dt, case, transpose: bool = False):
    n, c, h, w, o, k, s, p, d = case
    rng = np.random.default_rng(2)
    with _native.enabled(native):
        x = dg.from_numpy(rng.standard_normal((n, c, h, w)).astype(dt)).requires_grad_(True)
        if transpose:
            wt = dg.from_numpy(rng.standard_normal((c, o, k, k)).astype(dt)).requires_grad_(True)
            b = dg.from_numpy(rng.standard_normal(o).astype(dt)).requires_grad_(True)
            y = dg.nn.functional.conv_transpose2d(x, wt, b, stride=s, padding=p, dilation=d)
        else:
            wt = dg.from_numpy(rng.standard_normal((o, c, k, k)).astype(dt)).requires_grad_(True)
            b = dg.from_numpy(rng.standard_normal(o).astype(dt)).requires_grad_(True)
            y = dg.nn.functional.conv2d(x, wt, b, stride=s, padding=p, dilation=d)
        gy = rng.standard_normal(y.shape).astype(dt)
        y.backward(dg.from_numpy(gy))
        return [y.data.copy(), x.grad.data.copy(), wt.grad.data.copy(), b.grad.data.copy()]


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("case", _CONVS, ids=lambda c: "x".join(map(str, c[:5])))
def test_conv2d_native_matches_numpy(monkeypatch, dt, case):
    forward = _Spy(monkeypatch, "conv2d_direct")
    native = _conv_run(True, dt, case)
    assert forward.calls >= 1
    reference = _conv_run(False, dt, case)
    tol = dict(rtol=2e-5, atol=2e-5) if dt == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(native, reference):
        np.testing.assert_allclose(a, b, **tol)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_conv2d_native_lanes_over_channels_without_bias(dt):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 14, 14)).astype(dt)
    w = rng.standard_normal((16, 6, 5, 5)).astype(dt)
    outs = []
    for native in (True, False):
        with _native.enabled(native):
            outs.append(dg.nn.functional.conv2d(dg.from_numpy(x), dg.from_numpy(w)).data)
    tol = 2e-5 if dt == np.float32 else 1e-12
    np.testing.assert_allclose(outs[0], outs[1], rtol=tol, atol=tol)


@needs_kernels
def test_conv2d_native_kernels_are_the_ones_used(monkeypatch):
    spies = {name: _Spy(monkeypatch, name) for name in
             ("conv2d_direct", "conv2d_weight_grad", "im2col", "conv2d_weight_grad_rows")}
    _conv_run(True, np.float32, _CONVS[5])  # 16 output channels: weight grad by the kernel
    assert spies["conv2d_direct"].calls == 2  # forward and input grad (6 channels)
    assert spies["conv2d_weight_grad"].calls == 1 and spies["im2col"].calls == 0
    _conv_run(True, np.float32, _CONVS[0])  # 1 channel, 6 outputs: along the output rows
    assert spies["conv2d_weight_grad_rows"].calls == 1 and spies["im2col"].calls == 0
    # the input grad of a 1-channel input is BLAS's: the forward only
    assert spies["conv2d_direct"].calls == 2 + 1
    # 2 channels, 6 outputs: lanes over the channels if 6 of them fill half the lanes (AVX2's
    # 8), else patches and a GEMM (AVX-512's 16)
    over_channels = 6 >= _native.lib().conv_bytes // 4 // 2
    _conv_run(True, np.float32, _CONVS[1])
    assert spies["im2col"].calls == int(not over_channels)
    assert spies["conv2d_weight_grad"].calls == 1 + int(over_channels)
    assert spies["conv2d_weight_grad_rows"].calls == 1


@needs_kernels
@pytest.mark.parametrize("index, rows", [(0, True), (2, True), (3, True), (4, False)])
def test_conv2d_one_channel_weight_grad_along_rows(monkeypatch, index, rows):
    spy = _Spy(monkeypatch, "conv2d_weight_grad_rows")
    _conv_run(True, np.float32, _CONVS[index])  # (float64's 8 lanes over 6 outputs idle less)
    assert spy.calls == int(rows)


@needs_kernels
def test_conv2d_weight_grad_along_rows_takes_a_broadcast_gradient():
    xa = np.random.default_rng(3).standard_normal((3, 1, 12, 20)).astype(np.float32)
    grads = []
    for native in (True, False):
        with _native.enabled(native):
            x = dg.from_numpy(xa)
            w = dg.from_numpy(np.linspace(-1, 1, 150, dtype=np.float32).reshape(6, 1, 5, 5))
            w.requires_grad_(True)
            dg.nn.functional.conv2d(x, w, padding=2).sum().backward()  # gy: a broadcast 1
            grads.append(w.grad.data.copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)


@needs_kernels
def test_conv2d_weight_grad_along_rows_reads_past_a_row_without_effect(monkeypatch):
    """A row's last block of columns reads the next row's first values into lanes it masks
    off: an inf there reaches no tap that does not meet it (taps j = 3, 4 never meet column 0
    with padding 2) and the kernel's NaNs and infs are where the NumPy path has them."""
    spy = _Spy(monkeypatch, "conv2d_weight_grad_rows")
    xa = np.random.default_rng(4).standard_normal((2, 1, 12, 12)).astype(np.float32)
    xa[0, 0, 5, 0] = np.inf
    gya = np.random.default_rng(5).standard_normal((2, 6, 12, 12)).astype(np.float32)
    grads = []
    for native in (True, False):
        with _native.enabled(native):
            w = dg.from_numpy(np.linspace(-1, 1, 150, dtype=np.float32).reshape(6, 1, 5, 5))
            w.requires_grad_(True)
            dg.nn.functional.conv2d(dg.from_numpy(xa), w, padding=2).backward(dg.from_numpy(gya))
            grads.append(w.grad.data.copy())
    assert spy.calls == 1
    assert np.isfinite(grads[0][..., 3:]).all()
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)  # NaN/inf equal too


@needs_kernels
@pytest.mark.parametrize("case", [(2, 3, 9, 10, 4, 3, 1, 1, 1), (1, 2, 12, 9, 3, 3, 1, 0, 1)])
def test_conv_transpose2d_native_matches_numpy(case):
    native = _conv_run(True, np.float64, case, transpose=True)
    reference = _conv_run(False, np.float64, case, transpose=True)
    for a, b in zip(native, reference):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _conv_gradcheck(x_shape: tuple, w_shape: tuple, **kw) -> bool:
    x = dg.randn(*x_shape, dtype=dg.float64, requires_grad=True)
    w = dg.randn(*w_shape, dtype=dg.float64, requires_grad=True)
    b = dg.randn(w_shape[0], dtype=dg.float64, requires_grad=True)
    return dg.autograd.gradcheck(lambda x, w, b: dg.nn.functional.conv2d(x, w, b, **kw),
                                 (x, w, b))


@needs_kernels
def test_conv2d_native_passes_gradcheck():
    assert _conv_gradcheck((2, 2, 9, 10), (5, 2, 3, 3), padding=1)
    assert _conv_gradcheck((2, 2, 9, 10), (5, 2, 3, 3), stride=2, dilation=2)
    # 8 output channels (a float64 vector) over rows of 9: lanes over channels forward, the
    # weight gradient's taps in registers
    assert _conv_gradcheck((1, 2, 6, 11), (8, 2, 3, 3))


# ---- Winograd convolution (3x3, stride 1, 16 or more channels) -------------------------------
# (N, C, H, W, O, padding): all take the Winograd kernels
_WINOGRAD = [
    (2, 16, 8, 8, 16, 1),
    (3, 20, 7, 9, 17, 1),       # odd sizes: half tiles at the bottom and right
    (2, 32, 5, 6, 24, 0),
    (2, 18, 5, 6, 16, 2),       # padding 2; channels not a multiple of the register blocks
    (2, 16, 1, 1, 16, 1),       # one pixel
    (1, 16, 12, 40, 30, (1, 0)),
]


def _winograd_run(native: bool, dt, case, threads: str | None = None, monkeypatch=None):
    n, c, h, w, o, p = case
    if threads is not None:
        monkeypatch.setenv("DEEPGRAD_NUM_THREADS", threads)
    return _conv_run(native, dt, (n, c, h, w, o, 3, 1, p, 1))


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("case", _WINOGRAD, ids=lambda c: "x".join(map(str, c[:5])))
def test_winograd_conv2d_matches_numpy(monkeypatch, dt, case):
    spies = {name: _Spy(monkeypatch, name) for name in ("winograd_conv", "winograd_weight_grad")}
    native = _winograd_run(True, dt, case)
    assert spies["winograd_conv"].calls == 2  # forward and input gradient
    assert spies["winograd_weight_grad"].calls == 1
    reference = _winograd_run(False, dt, case)
    eps = 1e-5 if dt == np.float32 else 1e-12
    for a, b in zip(native, reference):  # rounding grows with the sums: errors relative to them
        np.testing.assert_allclose(a, b, rtol=eps, atol=eps * np.abs(b).max())


@needs_kernels
@pytest.mark.parametrize("case", [(2, 16, 6, 6, 24, 1), (1, 24, 7, 5, 16, 0)])
def test_winograd_conv_transpose2d_matches_numpy(monkeypatch, case):
    spy = _Spy(monkeypatch, "winograd_conv")
    n, c, h, w, o, p = case
    native = _conv_run(True, np.float64, (n, c, h, w, o, 3, 1, p, 1), transpose=True)
    assert spy.calls == 2  # forward (an input gradient) and input gradient (a forward)
    reference = _conv_run(False, np.float64, (n, c, h, w, o, 3, 1, p, 1), transpose=True)
    for a, b in zip(native, reference):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@needs_kernels
@pytest.mark.parametrize("case", [
    (2, 8, 8, 8, 16, 3, 1, 1, 1),     # 8 input channels: the direct kernel
    (2, 16, 9, 9, 16, 3, 2, 1, 1),    # stride 2
    (2, 16, 9, 9, 16, 3, 1, 2, 2),    # dilation
    (2, 16, 9, 9, 16, 5, 1, 2, 1),    # 5x5
])
def test_winograd_applies_only_to_3x3_stride_1_with_channels(monkeypatch, case):
    spy = _Spy(monkeypatch, "winograd_conv")
    _conv_run(True, np.float64, case)
    assert spy.calls == 0


@needs_kernels
def test_winograd_passes_gradcheck():
    assert _conv_gradcheck((1, 16, 4, 3), (16, 16, 3, 3), padding=1)


def _nonfinite_run(x0: np.ndarray, w0: np.ndarray, gy: np.ndarray) -> list:
    x = dg.from_numpy(x0).requires_grad_(True)
    w = dg.from_numpy(w0).requires_grad_(True)
    y = dg.nn.functional.conv2d(x, w, padding=1)
    y.backward(dg.from_numpy(gy))
    return [y.data.copy(), x.grad.data.copy(), w.grad.data.copy()]


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["weight", "input", "nan", "gradient"])
def test_winograd_keeps_infinities_as_the_direct_sums_do(monkeypatch, dt, where):
    """An infinite weight, input or output gradient: the Winograd transforms would make NaN of
    whole tiles, where the direct sums (and PyTorch) give inf. Each Winograd result that is not
    all finite is recomputed by the direct kernels, so forward and gradients have the direct
    path's infs and NaNs, place for place, and its finite values to rounding."""
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((2, 16, 6, 7))).astype(dt)
    w = (np.abs(rng.standard_normal((16, 16, 3, 3))) * 0.1).astype(dt)
    gy = np.ones((2, 16, 6, 7), dt)
    if where == "weight":
        w[3, 2, 1, 1] = np.inf
    elif where == "input":
        x[1, 4, 2, 3] = -np.inf
    elif where == "nan":
        x[0, 0, 5, 6] = np.nan
    else:
        gy[1, 7, 0, 4] = np.inf
    spy = _Spy(monkeypatch, "all_finite")
    got = _nonfinite_run(x, w, gy)
    # forward and input gradient; the weight gradient takes Winograd after a Winograd forward
    assert spy.calls == (3 if where == "gradient" else 2)
    monkeypatch.setattr(conv_ops, "_WINOGRAD_MIN_CHANNELS", 1 << 30)  # the direct kernels
    want = _nonfinite_run(x, w, gy)
    assert spy.calls == (3 if where == "gradient" else 2)
    assert not np.isfinite(want[0 if where != "gradient" else 1]).all()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b))
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b))
        finite = np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-5, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_all_finite(dt):
    """kernels.c: all_finite, in parts or whole, with the odd value anywhere."""
    kern = _native.lib()
    fn = kern.all_finite[np.dtype(dt)]
    for n in (1, 17, parallel.min_elements() + 5):
        x = np.linspace(-3e3, 3e3, n).astype(dt)
        x[0] = np.finfo(dt).max
        for split in (1, 2, 5):
            with parallel.split(split, split == 2):
                assert fn(_native.address(x), n) == 1
                for k in {0, n // 2, n - 1}:
                    for v in (np.inf, -np.inf, np.nan):
                        y = x.copy()
                        y[k] = v
                        assert fn(_native.address(y), n) == 0
    assert fn(_native.address(x), 0) == 1


@needs_kernels
def test_winograd_threads_split_images_not_results(monkeypatch):
    case = (5, 16, 6, 7, 20, 1)
    one = _winograd_run(True, np.float32, case, "1", monkeypatch)
    three = _winograd_run(True, np.float32, case, "3", monkeypatch)
    for a, b in zip(one[:2], three[:2]):  # forward and input gradient: each image on its own
        np.testing.assert_array_equal(a, b)
    # the weight gradient sums the threads' parts: another order of the same sums
    np.testing.assert_allclose(one[2], three[2], rtol=1e-5, atol=1e-5 * np.abs(one[2]).max())


@needs_kernels
def test_winograd_declined_falls_back_to_numpy(monkeypatch):
    k = _native.lib()
    monkeypatch.setattr(k, "winograd_conv", {dt: (lambda *a: -1) for dt in k.winograd_conv})
    monkeypatch.setattr(k, "winograd_weight_grad",
                        {dt: (lambda *a: -1) for dt in k.winograd_weight_grad})
    native = _winograd_run(True, np.float64, _WINOGRAD[1])
    reference = _winograd_run(False, np.float64, _WINOGRAD[1])
    for a, b in zip(native, reference):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@needs_kernels
def test_winograd_forward_then_backward_with_kernels_off():
    rng = np.random.default_rng(4)
    xa = rng.standard_normal((2, 16, 6, 5))
    wa = rng.standard_normal((20, 16, 3, 3))
    grads = []
    for native_forward in (True, False):
        x = dg.from_numpy(xa).requires_grad_(True)
        w = dg.from_numpy(wa).requires_grad_(True)
        with _native.enabled(native_forward):
            y = dg.nn.functional.conv2d(x, w, padding=1)
        with _native.enabled(False):  # backward on NumPy, whatever the forward kept
            y.sum().backward()
        grads.append((x.grad.data.copy(), w.grad.data.copy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@needs_kernels
def test_winograd_input_changed_in_place_is_caught():
    x = dg.randn(2, 16, 6, 6, requires_grad=False)
    w = dg.randn(16, 16, 3, 3, requires_grad=True)
    y = dg.nn.functional.conv2d(x, w, padding=1)
    x.add_(1.0)
    with pytest.raises(RuntimeError, match="in-place"):
        y.sum().backward()


@pytest.mark.parametrize("env, expected", [({"DEEPGRAD_NUM_THREADS": "3"}, 3),
                                           ({"OMP_NUM_THREADS": "2"}, 2),
                                           ({"OPENBLAS_NUM_THREADS": "1"}, 1)])
def test_native_threads_follow_the_environment(monkeypatch, env, expected):
    for var in ("DEEPGRAD_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert _native.threads() == expected


# ---- max pooling ------------------------------------------------------------------------------
def _pool_native_and_numpy(monkeypatch, pool, kernel: str, x, g):
    """Forward and backward of ``pool`` with the native kernels and without: both must run
    (the spies count one call each) and agree bit for bit, signs of zeros included."""
    forward = _Spy(monkeypatch, kernel)
    backward = _Spy(monkeypatch, kernel + "_backward")
    results = []
    for native in (True, False):
        with _native.enabled(native), np.errstate(all="ignore"):
            t = dg.from_numpy(x.copy()).requires_grad_(True)
            y = pool(t, 2)
            y.backward(dg.from_numpy(g))
            results.append((y.data.copy(), t.grad.data.copy()))
    assert forward.calls == 1 and backward.calls == 1
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
        assert np.array_equal(np.signbit(a), np.signbit(b))


@needs_kernels
@pytest.mark.parametrize("width", [28, 34, 16, 12, 10, 8, 6])
def test_max_pool_2x2_native_equals_numpy_bit_for_bit(monkeypatch, width):
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 3, (6, 16, 48, width)).astype(np.float32)  # ties everywhere
    x[0, 0, :2, :2] = np.nan  # a window of NaNs: the last is chosen
    x[0, 1, 0, :4] = [np.nan, 1.0, np.nan, np.inf]
    x[1, 0, :2, :2] = [[-0.0, 0.0], [0.0, -0.0]]  # zeros of both signs tie
    x[2, 3, 2:4, -2:] = [[-np.inf, np.nan], [np.inf, 2.0]]
    g = rng.standard_normal((6, 16, 24, width // 2)).astype(np.float32)
    g[0, 2, 0, :3] = [np.nan, np.inf, -0.0]
    _pool_native_and_numpy(monkeypatch, dg.nn.functional.max_pool2d, "max_pool_2x2", x, g)


@needs_kernels
@pytest.mark.parametrize("width", [28, 34, 16, 12, 10, 8, 6])
def test_avg_pool_2x2_native_equals_numpy_bit_for_bit(monkeypatch, width):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 16, 48, width)) * 1e3).astype(np.float32)
    x[0, 0, :2, :4] = [[np.nan, 1.0, np.inf, -np.inf], [2.0, 3.0, 1.0, 1.0]]
    x[1, 0, :2, :2] = [[-0.0, -0.0], [-0.0, -0.0]]
    x[1, 1, :2, :2] = 3e38  # the sum overflows, as in NumPy
    g = rng.standard_normal((6, 16, 24, width // 2)).astype(np.float32)
    g[0, 2, 0, :3] = [np.nan, np.inf, -0.0]
    _pool_native_and_numpy(monkeypatch, dg.nn.functional.avg_pool2d, "avg_pool_2x2", x, g)


@needs_kernels
@pytest.mark.parametrize("pool, kernel", [(dg.nn.functional.max_pool2d, "max_pool_2x2"),
                                          (dg.nn.functional.avg_pool2d, "avg_pool_2x2")])
def test_pool_2x2_native_takes_planes_of_any_size(monkeypatch, pool, kernel):
    """Planes of more than 4,096 windows (the old kernels' limit) take the native path too."""
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 4, (2, 3, 130, 162)).astype(np.float32)  # 65 x 81 windows a plane
    g = rng.standard_normal((2, 3, 65, 81)).astype(np.float32)
    _pool_native_and_numpy(monkeypatch, pool, kernel, x, g)


def test_address_is_the_first_element_for_any_view():
    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    read_only = a.copy()
    read_only.flags.writeable = False
    views = [a, a[2:], a[:, 3:], a.T, a[::-1], np.broadcast_to(a[0], (5, 10)),
             np.zeros(0, np.float32), a[3:4, 5:6], read_only]
    for v in views:
        assert _native.address(v) == v.__array_interface__["data"][0]


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_padded_copy_matches_numpy_pad(dt):
    from deepgrad.ops import conv
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(dt)
    for pads in [(0, 0, 0, 0), (1, 2, 3, 0), (4, 4, 4, 4)]:
        top, bottom, left, right = pads
        flat = conv._padded_flat(x, top, bottom, left, right, slack=11)
        padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        np.testing.assert_array_equal(flat[:padded.size].reshape(padded.shape), padded)
        assert flat.size == padded.size + 11 and not flat[padded.size:].any()  # zero slack
        conv._scratch.put(flat)


@needs_kernels
def test_every_kernel_is_declared_and_loaded():
    from deepgrad._native import _F32_ONLY, _FMA8, _FUSED, _SIGNATURES, Kernels
    declared = {name for name, kind in Kernels.__annotations__.items() if "dict" in str(kind)}
    assert declared == set(_SIGNATURES) | set(_F32_ONLY) | set(_FUSED) | set(_FMA8)
    k = _native.lib()
    missing = (set() if k.lstm_fused else set(_FUSED)) | (set() if k.narrow else set(_FMA8))
    for name in declared - missing:
        assert np.dtype(np.float32) in getattr(k, name)


@needs_kernels
def test_optimizer_native_skips_overlapping_operands(monkeypatch):
    """A gradient that overlaps its parameter (views of one buffer at different offsets) goes
    through NumPy: the kernels assume their arrays do not alias."""
    spy = _Spy(monkeypatch, "sgd_update")
    buf = np.ones(3 * _native.MIN_ELEMENTS, np.float32)
    n = 2 * _native.MIN_ELEMENTS
    p = dg.nn.Parameter(dg.from_numpy(buf[:n].copy()))
    p.data = buf[:n]
    p.grad = dg.from_numpy(buf[_native.MIN_ELEMENTS:])
    dg.optim.SGD([p], lr=0.5).step()
    assert spy.calls == 0


# ---- batch normalization ------------------------------------------------------------------------
def _batch_norm_run(native: bool, dt, shape, affine: bool) -> list:
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(dt)
    g = rng.standard_normal(shape).astype(dt)
    with _native.enabled(native):
        bn = dg.nn.BatchNorm2d(shape[1], affine=affine) if len(shape) == 4 else \
            dg.nn.BatchNorm1d(shape[1], affine=affine)
        bn.to(dg.float64 if dt == np.float64 else dg.float32)
        if affine:
            bn.weight.data[...] = rng.standard_normal(shape[1])
            bn.bias.data[...] = rng.standard_normal(shape[1])
        t = dg.from_numpy(x).requires_grad_(True)
        y = bn(t)
        y.backward(dg.from_numpy(g))
        out = [y.data.copy(), t.grad.data.copy(), bn.running_mean.data.copy(),
               bn.running_var.data.copy()]
        if affine:
            out += [bn.weight.grad.data.copy(), bn.bias.grad.data.copy()]
    return out


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 3, 9, 7), (2, 5, 40), (3, 2, 16, 16)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_native_matches_numpy(monkeypatch, dt, shape, affine):
    """Runs of 63, 40 and 256 values: whole and partial vectors of lanes."""
    spies = [_Spy(monkeypatch, k) for k in ("batch_norm_forward", "batch_norm_backward")]
    native = _batch_norm_run(True, dt, shape, affine)
    assert [s.calls for s in spies] == [1, 1]
    reference = _batch_norm_run(False, dt, shape, affine)
    tol = 2e-5 if dt == np.float32 else 1e-12
    for a, b in zip(native, reference):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


@needs_kernels
def test_batch_norm_short_runs_stay_on_numpy(monkeypatch):
    spy = _Spy(monkeypatch, "batch_norm_forward")
    _batch_norm_run(True, np.float32, (8, 6), True)  # (N, C): one value per image and channel
    _batch_norm_run(True, np.float32, (8, 6, 3, 3), True)  # runs of 9
    assert spy.calls == 0


@needs_kernels
def test_batch_norm_native_passes_gradcheck(monkeypatch):
    from deepgrad.autograd.gradcheck import gradcheck
    spy = _Spy(monkeypatch, "batch_norm_backward")
    rng = np.random.default_rng(2)
    x = dg.from_numpy(rng.standard_normal((3, 2, 4, 5))).requires_grad_(True)  # runs of 20
    w = dg.from_numpy(rng.standard_normal(2)).requires_grad_(True)
    b = dg.from_numpy(rng.standard_normal(2)).requires_grad_(True)
    assert gradcheck(lambda x, w, b: dg.nn.functional.batch_norm(x, None, None, w, b,
                                                                 training=True), (x, w, b))
    assert spy.calls > 0


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_bias_relu_equals_add_then_relu_bit_for_bit(monkeypatch, dt):
    from deepgrad.ops import elementwise
    rng = np.random.default_rng(4)
    y = rng.standard_normal((70, 90)).astype(dt)
    b = rng.standard_normal(90).astype(dt)
    y[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    b[1] = -np.inf  # inf + -inf is NaN: it stays NaN through the ReLU
    spy = _Spy(monkeypatch, "bias_relu")
    got = elementwise._relu_biased(y.copy(), b)
    assert spy.calls == 1
    with _native.enabled(False), np.errstate(invalid="ignore"):
        want = elementwise._relu_biased(y.copy(), b)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


# ---- rows: bias, bias gradient, cross-entropy, embedding gradient -----------------------------
def _both_paths(run):
    """``run()`` with the kernels on and off: its results as two lists of arrays."""
    out = []
    for native in (True, False):
        with _native.enabled(native), np.errstate(all="ignore"):
            out.append([np.array(a, copy=True) for a in run()])
    return out


def _assert_same_bits(a: list, b: list) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y, equal_nan=True)
        assert np.array_equal(np.signbit(x), np.signbit(y))


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [{}, {"reduction": "sum"}, {"reduction": "none"},
                                    {"label_smoothing": 0.2}, {"weighted": True},
                                    {"ignore_index": 3}, {"probabilities": True}])
@pytest.mark.parametrize("shape", [(2048, 65), (300, 7), (9, 3000), (1024, 1)])
def test_cross_entropy_native_equals_numpy_bit_for_bit(monkeypatch, dt, kwargs, shape):
    """The cross-entropy kernels (forward and input gradient) give the NumPy path's bits, with
    NaN, infinite and signed-zero logits, every reduction, weights, ignored targets, label
    smoothing and probability targets."""
    rng = np.random.default_rng(2)
    n, c = shape
    x = (rng.standard_normal(shape) * 6).astype(dt)
    x[0, 0], x[1, :] = np.nan, np.inf
    x[2, :] = -0.0
    x[3, :2] = [-np.inf, np.inf] if c > 1 else [-np.inf]
    kw = dict(kwargs)
    if kw.pop("weighted", False):
        kw["weight"] = dg.from_numpy(rng.random(c).astype(dt) + 0.5)
    if kw.pop("probabilities", False):
        target = dg.from_numpy(rng.dirichlet(np.ones(c), n).astype(dt))
    else:
        y = rng.integers(0, c, n)
        y[:5] = 3 % c
        target = dg.from_numpy(y)
    g = dg.from_numpy(rng.standard_normal(n).astype(dt)) if kw.get("reduction") == "none" \
        else None
    spy = _Spy(monkeypatch, "softmax_rows")

    def run():
        t = dg.from_numpy(x.copy()).requires_grad_(True)
        loss = dg.nn.functional.cross_entropy(t, target, **kw)
        loss.backward(g)
        return loss.data, t.grad.data

    native, numpy = _both_paths(run)
    assert spy.calls == 1
    _assert_same_bits(native, numpy)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32, np.uint8])
@pytest.mark.parametrize("kwargs", [{}, {"padding_idx": 2}, {"scale_grad_by_freq": True}])
def test_embedding_backward_native_equals_numpy_bit_for_bit(monkeypatch, dt, index_dtype,
                                                            kwargs):
    """Repeated indices add up in index order, as np.add.at adds them; narrow index types give
    the same gradient as int64 (the NumPy path once let uint8 flat indices wrap around)."""
    rng = np.random.default_rng(3)
    emb = dg.nn.Embedding(65, 64, **kwargs)
    if dt == np.float64:
        emb = emb.double()
    idx = rng.integers(0, 65, (32, 64))
    g = dg.from_numpy((rng.standard_normal((32, 64, 64)) * 1e3).astype(dt))
    spy = _Spy(monkeypatch, "embedding_backward")

    def run(index_dtype=index_dtype):
        emb.weight.grad = None
        emb(dg.from_numpy(idx.astype(index_dtype))).backward(g)
        return [emb.weight.grad.data]

    native, numpy = _both_paths(run)
    assert spy.calls == 1
    _assert_same_bits(native, numpy)
    with _native.enabled(False):
        _assert_same_bits(run(np.int64), numpy)


@needs_kernels
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 64, 256), (3000, 2), (1000, 513)])
def test_linear_bias_and_its_gradient_native_equal_numpy_bit_for_bit(monkeypatch, dt, shape):
    """Many rows of few columns: the bias add and the bias gradient (a sum down the rows) run
    natively and give NumPy's bits."""
    rng = np.random.default_rng(4)
    lin = dg.nn.Linear(shape[-1], 65 if shape[-1] > 2 else 3)
    if dt == np.float64:
        lin = lin.double()
    x = (rng.standard_normal(shape) * np.exp(rng.standard_normal(shape) * 3)).astype(dt)
    g = (rng.standard_normal(shape[:-1] + (lin.out_features,)) * 1e2).astype(dt)
    adds, sums = _Spy(monkeypatch, "add_rows"), _Spy(monkeypatch, "sum_rows")

    def run():
        lin.zero_grad()
        t = dg.from_numpy(x).requires_grad_(True)
        y = lin(t)
        y.backward(dg.from_numpy(g))
        return y.data, t.grad.data, lin.weight.grad.data, lin.bias.grad.data

    with parallel.split(1):  # a large Linear in row parts adds its bias inside linear_rows
        native, numpy = _both_paths(run)
    assert adds.calls == sums.calls == 1
    _assert_same_bits(native, numpy)
    # in row parts (tests/test_parallel.py), where the loop is attached: the same bits again
    _assert_same_bits(native, _both_paths(run)[0])


@needs_kernels
def test_cross_entropy_backward_without_kernels_after_a_native_forward():
    """Kernels turned off between forward and backward: the backward takes the NumPy path on
    what the native forward saved, with the same bits."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((300, 7)).astype(np.float32)
    y = dg.from_numpy(rng.integers(0, 7, 300))
    grads = []
    for off_in_backward in (False, True):
        t = dg.from_numpy(x.copy()).requires_grad_(True)
        loss = dg.nn.functional.cross_entropy(t, y)
        with _native.enabled(not off_in_backward):
            loss.backward()
        grads.append(t.grad.data)
    _assert_same_bits(grads[:1], grads[1:])


@needs_kernels
@pytest.mark.parametrize("c, o, padding", [(1, 6, 2), (6, 16, 0)])
def test_conv2d_backward_without_kernels_after_a_native_forward(c, o, padding):
    """Kernels turned off between a native forward and its backward: the weight gradient comes
    from the padded input the forward saved, by the NumPy path."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, c, 14, 14)).astype(np.float32)
    w = rng.standard_normal((o, c, 5, 5)).astype(np.float32)
    gy = None
    grads = []
    for off_in_backward in (False, True):
        xt = dg.from_numpy(x).requires_grad_(True)
        wt = dg.from_numpy(w).requires_grad_(True)
        y = dg.nn.functional.conv2d(xt, wt, padding=padding)
        assert y.grad_fn.saved.ndim == 1  # the native forward's flat padded input
        if gy is None:
            gy = rng.standard_normal(y.shape).astype(np.float32)
        with _native.enabled(not off_in_backward):
            y.backward(dg.from_numpy(gy))
        grads.append((xt.grad.data.copy(), wt.grad.data.copy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)


@needs_kernels
@pytest.mark.parametrize("kernel", [(1, 13), (1, 25), (2, 12), (5, 5)])
def test_conv2d_one_channel_weight_grad_of_wide_kernels(monkeypatch, kernel):
    """The kernel along the rows holds a pass of whole kernel rows in registers: rows wider than
    that (13 or 25 taps with AVX2's 12) go to another kernel instead of a pass of no rows."""
    spy = _Spy(monkeypatch, "conv2d_weight_grad_rows")
    kh, kw = kernel
    rng = np.random.default_rng(8)
    xa = rng.standard_normal((2, 1, 12, 40)).astype(np.float32)
    wa = rng.standard_normal((6, 1, kh, kw)).astype(np.float32)
    grads = []
    for native in (True, False):
        with _native.enabled(native):
            w = dg.from_numpy(wa).requires_grad_(True)
            dg.nn.functional.conv2d(dg.from_numpy(xa), w, padding=(kh // 2, kw // 2)).sum().backward()
            grads.append(w.grad.data.copy())
    assert spy.calls == int(kw <= _native.lib().conv_tap_registers)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-3)
