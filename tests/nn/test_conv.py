"""Conv1d/Conv2d/ConvTranspose1d/ConvTranspose2d: functional and layers against PyTorch over a
grid of options (both convolution kernels: grid for stride 1 with many channels, im2col
otherwise), gradchecks, init, state_dict, repr and error messages."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from helpers import check_against_torch, run_gradcheck

import deepgrad as dg
from deepgrad import nn
from deepgrad.ops import conv as conv_ops

try:
    import torch as _torch_mod
    _torch_mod.set_num_threads(1)  # tiny ops: a busy thread pool makes torch much slower
except ImportError:  # pragma: no cover
    pass

# torch warns that it copies the input for padding='same' with an even kernel
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

F = dg.nn.functional
DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): (1e-4, 1e-4), np.dtype(np.float64): (1e-6, 1e-9)}


def _torch():
    return pytest.importorskip("torch")


def _f(m):
    return m.nn.functional


def _rng(seed=0):
    return np.random.default_rng(seed)


def _tol(dtype):
    return TOL[np.dtype(dtype)]


# -----------------------------------------------------------------------------------------
# functional conv2d over a grid; channel counts pick the kernel (grid needs C/groups >= 16)
# -----------------------------------------------------------------------------------------

CONV2D_GRID = [
    pytest.param(dict(stride=s, padding=p, dilation=d, groups=g, bias=b, k=k, cin=cin),
                 id=f"s{s}-p{p}-d{d}-g{g}-b{int(b)}-k{k[0]}x{k[1]}-c{cin}")
    for s, p, d, g, b, k, cin in itertools.product(
        [1, 2], [0, 1, "same"], [1, 2], [1, 2], [True, False], [(3, 3), (2, 3)], [4, 32])
    if not (p == "same" and s != 1) and not (b is False and cin == 32)
]


@pytest.mark.parametrize("cfg", CONV2D_GRID)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_grid_matches_torch(cfg, dtype):
    rng = _rng()
    cin, g = cfg["cin"], cfg["groups"]
    cout = 6 if cin == 4 else 8
    x = rng.standard_normal((2, cin, 9, 10))
    w = rng.standard_normal((cout, cin // g) + cfg["k"]) * 0.3
    arrays = [x, w]
    if cfg["bias"]:
        arrays.append(rng.standard_normal(cout))
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=g)

    def fn(m, x, w, b=None):
        return _f(m).conv2d(x, w, b, **kw)

    rtol, atol = _tol(dtype)
    check_against_torch(fn, arrays, dtype, rtol=rtol, atol=atol)


def test_both_kernels_are_exercised():
    g = conv_ops._Geom((2, 32, 9, 10), (8, 16, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 2)
    assert g.grid
    g = conv_ops._Geom((2, 4, 9, 10), (6, 4, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert not g.grid
    g = conv_ops._Geom((2, 32, 9, 10), (8, 32, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1)
    assert not g.grid


@pytest.mark.parametrize("cin,stride", [(3, 2), (32, 1)])
def test_scratch_reuse_across_calls_keeps_results_apart(cin, stride):
    # two same-shaped convolutions recorded before either backward: their temporaries share
    # scratch arrays, what backward reads must not
    torch = _torch()
    rng = _rng(1)
    xs = [rng.standard_normal((2, cin, 8, 7)) for _ in range(2)]
    w = rng.standard_normal((5, cin, 3, 3))
    wd = dg.tensor(w, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    xd = [dg.tensor(x, requires_grad=True) for x in xs]
    xt = [torch.tensor(x, requires_grad=True) for x in xs]
    yd = [F.conv2d(x, wd, stride=stride, padding=1) for x in xd]
    yt = [torch.nn.functional.conv2d(x, wt, stride=stride, padding=1) for x in xt]
    (yd[0] * 2 + yd[1] * yd[1]).sum().backward()
    (yt[0] * 2 + yt[1] * yt[1]).sum().backward()
    np.testing.assert_allclose(wd.grad.numpy(), wt.grad.numpy(), rtol=1e-6, atol=1e-9)
    for a, b in zip(xd, xt):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cin,stride,keep_cols", [(3, 2, True), (3, 1, False), (32, 1, True)])
def test_retain_graph_backward_twice_with_other_calls_between(monkeypatch, cin, stride,
                                                              keep_cols):
    # saved arrays go back to the scratch pool only when the graph is released
    if not keep_cols:
        monkeypatch.setattr(conv_ops, "_KEEP_COLS_BYTES", 0)
    rng = _rng(2)
    x = dg.tensor(rng.standard_normal((2, cin, 8, 7)), requires_grad=True)
    w = dg.tensor(rng.standard_normal((5, cin, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, stride=stride, padding=1)
    y.sum().backward(retain_graph=True)
    gx, gw = x.grad.numpy().copy(), w.grad.numpy().copy()
    for _ in range(2):  # same shapes: would reuse the scratch arrays if they were released
        F.conv2d(dg.tensor(rng.standard_normal((2, cin, 8, 7)), requires_grad=True), w,
                 stride=stride, padding=1).sum().backward()
    x.grad = w.grad = None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), gx)
    np.testing.assert_array_equal(w.grad.numpy(), gw)


@pytest.mark.parametrize("cout,keep_bytes", [(16, None), (40, None), (40, 0), (16, 0)])
def test_conv2d_grid_kernel_variants(monkeypatch, cout, keep_bytes):
    # many small blocks; input gradient as gy patches (cout <= 2*cin), as shifted adds
    # (cout > 2*cin), or through col2im when the adds' buffer would be too large
    monkeypatch.setattr(conv_ops, "_GRID_BLOCK_BYTES", 4096)
    if keep_bytes is not None:
        monkeypatch.setattr(conv_ops, "_GCOLS_MAX_BYTES", keep_bytes)
    rng = _rng(17)
    arrays = [rng.standard_normal((2, 16, 12, 13)), rng.standard_normal((cout, 16, 3, 2)) * 0.3,
              rng.standard_normal(cout)]
    for kw in (dict(padding=1), dict(padding=(2, 0), dilation=(2, 1))):
        g = conv_ops._Geom((2, 16, 12, 13), (cout, 16, 3, 2), (1, 1),
                           conv_ops._conv_padding("t", kw["padding"], 2, (3, 2), (1, 1),
                                                  kw.get("dilation", (1, 1))),
                           kw.get("dilation", (1, 1)), 1)
        assert g.grid
        check_against_torch(lambda m, x, w, b: _f(m).conv2d(x, w, b, **kw), arrays, np.float64)


def test_conv2d_blocked_products(monkeypatch):
    # few output channels over many columns: the GEMMs run in column blocks
    monkeypatch.setattr(conv_ops, "_BLOCK", 16)
    rng = _rng(16)
    for stride in (1, 2):
        check_against_torch(
            lambda m, x, w, b: _f(m).conv2d(x, w, b, stride=stride, padding=2),
            [rng.standard_normal((3, 1, 9, 10)), rng.standard_normal((6, 1, 5, 5)),
             rng.standard_normal(6)], np.float64)


@pytest.mark.parametrize("block_bytes", [1, 4 << 20])
def test_conv2d_input_grad_by_shifted_adds_in_column_blocks(monkeypatch, block_bytes):
    # few channels, stride 1: the input gradient is a GEMM on the grid and shifted adds, one
    # block of grid columns at a time (several blocks with the tiny block size)
    monkeypatch.setattr(conv_ops, "_ADDS_BLOCK_BYTES", block_bytes)
    rng = _rng(21)
    x = rng.standard_normal((8, 3, 14, 14))
    g = conv_ops._Geom(x.shape, (5, 3, 5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    assert not g.grid and g.M > 512  # 512: the smallest block
    for kw in (dict(), dict(padding=2, dilation=(1, 2))):
        check_against_torch(lambda m, x, w, b: _f(m).conv2d(x, w, b, **kw),
                            [x, rng.standard_normal((5, 3, 5, 5)) * 0.3, rng.standard_normal(5)],
                            np.float64)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("kw", [dict(padding=2), dict(stride=2, padding=1),
                                dict(padding=(1, 3), dilation=(2, 1)), dict(groups=2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_per_image_products(monkeypatch, per_image, kw, dtype):
    # im2col kernel with one GEMM per image (output and weight gradient), forced on or off
    limit = 1 if per_image else 1 << 30
    monkeypatch.setattr(conv_ops, "_PER_IMAGE_MIN_P", limit)
    monkeypatch.setattr(conv_ops, "_PER_IMAGE_MIN_P_W", limit)
    rng = _rng(23)
    arrays = [rng.standard_normal((3, 4, 9, 8)), rng.standard_normal((6, 4 // kw.get("groups", 1),
                                                                      3, 3)) * 0.3,
              rng.standard_normal(6)]
    rtol, atol = _tol(dtype)
    check_against_torch(lambda m, x, w, b: _f(m).conv2d(x, w, b, **kw), arrays, dtype,
                        rtol=rtol, atol=atol)
    check_against_torch(lambda m, x, w: _f(m).conv2d(x, w, **kw), arrays[:2], dtype,
                        rtol=rtol, atol=atol)
    check_against_torch(lambda m, x, w: _f(m).conv1d(x, w, padding=1),
                        [arrays[0][:, :, 0], rng.standard_normal((5, 4, 3))], dtype, rtol=rtol,
                        atol=atol)
    # the transposed convolution's weight gradient goes through the same products
    check_against_torch(lambda m, x, w: _f(m).conv_transpose2d(x, w, stride=2, padding=1),
                        [arrays[0], rng.standard_normal((4, 5, 3, 3))], dtype, rtol=rtol,
                        atol=atol)


@pytest.mark.parametrize("density", [None, 0.0])
def test_conv2d_input_grad_when_outputs_are_sparse_on_the_grid(monkeypatch, density):
    # LeNet's last conv: a 5x5 input to a 1x1 output goes through col2im by default; the
    # shifted adds (forced with density 0) must give the same gradients
    if density is not None:
        monkeypatch.setattr(conv_ops, "_ADDS_MIN_DENSITY", density)
    rng = _rng(22)
    check_against_torch(lambda m, x, w, b: _f(m).conv2d(x, w, b),
                        [rng.standard_normal((4, 6, 5, 5)), rng.standard_normal((7, 6, 5, 5)),
                         rng.standard_normal(7)], np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_unbatched_and_1x1(dtype):
    rng = _rng(2)
    rtol, atol = _tol(dtype)
    check_against_torch(lambda m, x, w, b: _f(m).conv2d(x, w, b, padding=1),
                        [rng.standard_normal((3, 6, 5)), rng.standard_normal((4, 3, 3, 3)),
                         rng.standard_normal(4)], dtype, rtol=rtol, atol=atol)
    check_against_torch(lambda m, x, w: _f(m).conv2d(x, w),
                        [rng.standard_normal((2, 20, 4, 5)), rng.standard_normal((7, 20, 1, 1))],
                        dtype, rtol=rtol, atol=atol)


def test_conv2d_only_weight_or_only_input_needs_grad():
    rng = _rng(3)
    arrays = [rng.standard_normal((2, 32, 6, 6)), rng.standard_normal((4, 32, 3, 3)),
              rng.standard_normal(4)]
    for mask in ([True, False, False], [False, True, True], [False, False, True]):
        for pad in (1, 0):  # grid kernel (pad 1) and im2col (grid margins too large)
            check_against_torch(lambda m, x, w, b: _f(m).conv2d(x, w, b, padding=pad),
                                arrays, np.float64, requires_grad_mask=mask)


def test_conv2d_no_grad_and_float32_stays_float32():
    x = dg.randn(2, 3, 8, 8)
    w = dg.randn(4, 3, 3, 3, requires_grad=True)
    with dg.no_grad():
        y = F.conv2d(x, w)
    assert not y.requires_grad and y.dtype == np.float32
    y = F.conv2d(x, w, padding="same")
    y.sum().backward()
    assert y.shape == (2, 4, 8, 8) and w.grad.dtype == np.float32


# -----------------------------------------------------------------------------------------
# conv1d and the transposed convolutions
# -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), (1, "same", 2, 1), (1, "valid", 1, 2), (3, 2, 2, 2),
    (1, 1, 1, 2)])
@pytest.mark.parametrize("cin", [4, 32])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_matches_torch(stride, padding, dilation, groups, cin, dtype):
    rng = _rng(4)
    x = rng.standard_normal((3, cin, 11))
    w = rng.standard_normal((6, cin // groups, 3)) * 0.3
    b = rng.standard_normal(6)
    rtol, atol = _tol(dtype)
    check_against_torch(
        lambda m, x, w, b: _f(m).conv1d(x, w, b, stride, padding, dilation, groups),
        [x, w, b], dtype, rtol=rtol, atol=atol)
    # unbatched (C, L)
    check_against_torch(
        lambda m, x, w, b: _f(m).conv1d(x, w, b, stride, padding, dilation, groups),
        [x[0], w, b], dtype, rtol=rtol, atol=atol)


CONVT_GRID = [
    pytest.param(s, p, op, d, g, cin, id=f"s{s}-p{p}-op{op}-d{d}-g{g}-c{cin}")
    for s, p, op, d, g, cin in itertools.product([1, 2, 3], [0, 1], [0, 1], [1, 2], [1, 2],
                                                  [4, 32])
    if op < s or op < d
]


@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups,cin", CONVT_GRID)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_matches_torch(stride, padding, output_padding, dilation, groups, cin,
                                        dtype):
    rng = _rng(5)
    cout_g = 3 if cin == 4 else 16
    x = rng.standard_normal((2, cin, 5, 6))
    w = rng.standard_normal((cin, cout_g, 3, 2)) * 0.3
    b = rng.standard_normal(cout_g * groups)
    rtol, atol = _tol(dtype)
    check_against_torch(
        lambda m, x, w, b: _f(m).conv_transpose2d(x, w, b, stride, padding, output_padding,
                                                  groups, dilation),
        [x, w, b], dtype, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose1d_and_unbatched(dtype):
    rng = _rng(6)
    rtol, atol = _tol(dtype)
    check_against_torch(
        lambda m, x, w, b: _f(m).conv_transpose1d(x, w, b, stride=2, padding=1,
                                                  output_padding=1, groups=2),
        [rng.standard_normal((2, 4, 7)), rng.standard_normal((4, 3, 4)), rng.standard_normal(6)],
        dtype, rtol=rtol, atol=atol)
    check_against_torch(
        lambda m, x, w: _f(m).conv_transpose2d(x, w, stride=2),
        [rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 2, 3, 3))],
        dtype, rtol=rtol, atol=atol)


def test_conv_transpose2d_weight_grad_only():
    rng = _rng(7)
    arrays = [rng.standard_normal((2, 32, 5, 5)), rng.standard_normal((32, 16, 3, 3))]
    for mask in ([False, True], [True, False]):
        for stride in (1, 2):
            check_against_torch(
                lambda m, x, w: _f(m).conv_transpose2d(x, w, stride=stride, padding=1),
                arrays, np.float64, requires_grad_mask=mask)


# -----------------------------------------------------------------------------------------
# gradchecks (float64 finite differences) of every functional op
# -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", [
    pytest.param(((2, 3, 5, 6), (4, 3, 3, 2), (4,), dict(stride=2, padding=1, dilation=1)),
                 id="im2col-stride2"),
    pytest.param(((1, 2, 5, 5), (2, 1, 2, 3), (2,), dict(padding="same", dilation=2,
                                                          groups=2)), id="im2col-same-groups"),
    pytest.param(((1, 16, 4, 5), (3, 16, 3, 3), (3,), dict(padding=1)), id="grid"),
])
def test_gradcheck_conv2d(case):
    xs, ws, bs, kw = case
    rng = _rng(8)
    run_gradcheck(lambda m, x, w, b: F.conv2d(x, w, b, **kw),
                  [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(bs)])


def test_gradcheck_conv2d_fast_mode_larger():
    rng = _rng(9)
    x = dg.tensor(rng.standard_normal((2, 32, 6, 6)), requires_grad=True)
    w = dg.tensor(rng.standard_normal((8, 16, 3, 3)), requires_grad=True)
    b = dg.tensor(rng.standard_normal(8), requires_grad=True)
    assert dg.autograd.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2),
                                 (x, w, b), fast_mode=True)


def test_gradcheck_conv1d():
    rng = _rng(10)
    run_gradcheck(lambda m, x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=2),
                  [rng.standard_normal((2, 3, 9)), rng.standard_normal((2, 3, 3)),
                   rng.standard_normal(2)])


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1),
                                dict(stride=1, dilation=2, groups=2)])
def test_gradcheck_conv_transpose2d(kw):
    rng = _rng(11)
    run_gradcheck(lambda m, x, w, b: F.conv_transpose2d(x, w, b, **kw),
                  [rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((2, 2, 3, 2)),
                   rng.standard_normal(2 * kw.get("groups", 1))])


def test_gradcheck_conv_transpose1d():
    rng = _rng(12)
    run_gradcheck(lambda m, x, w: F.conv_transpose1d(x, w, stride=3, padding=1),
                  [rng.standard_normal((2, 2, 4)), rng.standard_normal((2, 3, 3))])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_gradcheck_padding_modes(mode):
    rng = _rng(13)
    conv = nn.Conv2d(2, 2, 3, padding=(2, 1), padding_mode=mode, dtype=np.float64)
    run_gradcheck(lambda m, x: conv(x), [rng.standard_normal((1, 2, 4, 5))])


# -----------------------------------------------------------------------------------------
# layers
# -----------------------------------------------------------------------------------------

def _copy_from_torch(dm, tm):
    dm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _step(dm, tm, x, dtype, seed=0, **fwd_kwargs):
    """One forward/backward in both; compare output, input grad and every parameter grad."""
    torch = _torch()
    rtol, atol = _tol(dtype)
    xd = dg.tensor(x.astype(dtype), requires_grad=True)
    xt = torch.tensor(x.astype(dtype), requires_grad=True)
    yd = dm(xd, **fwd_kwargs)
    yt = tm(xt, **fwd_kwargs)
    assert yd.dtype == np.dtype(dtype) and yd.shape == tuple(yt.shape)
    np.testing.assert_allclose(yd.detach().numpy(), yt.detach().numpy(), rtol=rtol, atol=atol)
    w = np.random.default_rng(seed).standard_normal(yd.shape).astype(dtype)
    (yd * dg.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=rtol, atol=atol,
                               err_msg="input grad")
    dparams = dict(dm.named_parameters())
    assert set(dparams) == {n for n, _ in tm.named_parameters()}
    for name, p in tm.named_parameters():
        assert dparams[name].grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(dparams[name].grad.numpy(), p.grad.numpy(), rtol=rtol,
                                   atol=atol, err_msg=f"grad of {name}")


LAYERS = [
    ("Conv2d", (1, 6, 5), dict(padding=2), (3, 1, 12, 12)),
    ("Conv2d", (4, 6, (3, 2)), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                                    bias=False), (2, 4, 9, 8)),
    ("Conv2d", (32, 8, 3), dict(padding="same", groups=2), (2, 32, 7, 7)),
    ("Conv2d", (3, 4, 4), dict(padding="same", dilation=1), (2, 3, 7, 6)),
    ("Conv2d", (3, 4, 3), dict(padding="valid"), (3, 7, 6)),
    ("Conv2d", (2, 4, 3), dict(padding=2, padding_mode="reflect"), (2, 2, 6, 5)),
    ("Conv2d", (2, 4, 3), dict(padding=(1, 2), padding_mode="replicate"), (2, 2, 6, 5)),
    ("Conv2d", (2, 4, (3, 2)), dict(padding=(1, 2), padding_mode="circular", stride=2),
     (2, 2, 6, 5)),
    ("Conv2d", (2, 4, 4), dict(padding="same", padding_mode="circular"), (2, 2, 6, 5)),
    ("Conv1d", (3, 5, 3), dict(stride=2, padding=1), (2, 3, 10)),
    ("Conv1d", (4, 4, 3), dict(padding="same", groups=4, padding_mode="reflect"), (2, 4, 9)),
    ("Conv1d", (3, 5, 3), dict(), (3, 10)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 5, 5)),
    ("ConvTranspose2d", (4, 6, (2, 3)), dict(groups=2, dilation=2, bias=False), (4, 3, 4)),
    ("ConvTranspose1d", (3, 2, 4), dict(stride=2, padding=1), (2, 3, 6)),
]


@pytest.mark.parametrize("name,args,kwargs,xshape", LAYERS,
                         ids=[f"{n}-{i}" for i, (n, *_) in enumerate(LAYERS)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_matches_torch(name, args, kwargs, xshape, dtype):
    torch = _torch()
    tm = getattr(torch.nn, name)(*args, **kwargs)
    if dtype == np.float64:
        tm = tm.double()
    dm = getattr(nn, name)(*args, **kwargs, dtype=dtype)
    _copy_from_torch(dm, tm)
    sd_d, sd_t = dm.state_dict(), tm.state_dict()
    assert list(sd_d) == list(sd_t)
    assert [tuple(v.shape) for v in sd_d.values()] == [tuple(v.shape) for v in sd_t.values()]
    assert repr(dm) == repr(tm)
    _step(dm, tm, _rng(14).standard_normal(xshape), dtype)


def test_conv_transpose2d_output_size():
    torch = _torch()
    tm = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1).double()
    dm = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, dtype=np.float64)
    _copy_from_torch(dm, tm)
    _step(dm, tm, _rng(15).standard_normal((2, 3, 4, 5)), np.float64, output_size=[8, 10])
    assert dm(dg.randn(2, 3, 4, 5, dtype=dg.float64), output_size=(2, 2, 7, 9)).shape == \
        (2, 2, 7, 9)
    with pytest.raises(ValueError, match=r"ConvTranspose2d.*output_size \(9, 9\).*between 7 and 8"):
        dm(dg.randn(2, 3, 4, 5, dtype=dg.float64), output_size=(9, 9))


@pytest.mark.parametrize("cls,args,fan_in", [
    ("Conv2d", (3, 8, 5), 75), ("Conv2d", (4, 8, 3, 1, 0, 1, 2), 18), ("Conv1d", (2, 4, 3), 6),
    ("ConvTranspose2d", (8, 4, 3), 36), ("ConvTranspose2d", (8, 4, 3, 1, 0, 0, 2), 18),
])
def test_default_init_matches_pytorch_scheme(cls, args, fan_in):
    dg.manual_seed(0)
    m = getattr(nn, cls)(*args)
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) gives U(+-1/sqrt(fan_in))
    w = m.weight.detach().numpy()
    b = m.bias.detach().numpy()
    assert w.dtype == np.float32 and np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.5 * bound and w.std() > 0.3 * bound
    assert np.abs(b).max() <= bound and len(np.unique(b)) == len(b)


def test_state_dict_and_repr_match_torch():
    torch = _torch()
    cases = [
        ("Conv2d", (1, 6, 5), {}), ("Conv2d", (3, 8, (3, 5)), dict(stride=2, padding=1,
                                                                    dilation=2, bias=False,
                                                                    padding_mode="reflect")),
        ("Conv2d", (4, 4, 3), dict(padding="same")), ("Conv2d", (4, 4, 3), dict(padding="valid")),
        ("Conv1d", (2, 4, 3), {}), ("ConvTranspose2d", (4, 2, 3), dict(stride=2, output_padding=1,
                                                                        groups=2)),
        ("ConvTranspose1d", (4, 2, 3), {}),
    ]
    for name, args, kwargs in cases:
        tm = getattr(torch.nn, name)(*args, **kwargs)
        dm = getattr(nn, name)(*args, **kwargs)
        assert repr(dm) == repr(tm)
        assert {k: tuple(v.shape) for k, v in dm.state_dict().items()} == \
            {k: tuple(v.shape) for k, v in tm.state_dict().items()}
        for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                     "dilation", "output_padding", "groups", "padding_mode", "transposed"):
            assert getattr(dm, attr) == getattr(tm, attr), (name, attr)
    assert repr(nn.Conv2d(1, 6, 5)) == "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))"


def test_in_a_sequential_and_training_reduces_loss():
    dg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 2))
    x = dg.randn(16, 1, 8, 8)
    target = dg.tensor((np.arange(16) % 2).astype(np.int64))
    opt = dg.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# -----------------------------------------------------------------------------------------
# errors
# -----------------------------------------------------------------------------------------

def test_layer_errors_name_path_and_shapes():
    model = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU())
    with pytest.raises(ValueError) as e:
        model(dg.randn(2, 1, 28, 28))
    assert str(e.value) == ("0 (Conv2d): expected input with 3 channels (in_channels=3), got "
                            "shape (2, 1, 28, 28)")
    with pytest.raises(ValueError, match=r"^Conv2d: expected 3-d \(C, H, W\) or 4-d "
                                         r"\(N, C, H, W\) input, got shape \(28, 28\)"):
        nn.Conv2d(3, 6, 5)(dg.randn(28, 28))
    with pytest.raises(ValueError, match=r"^Conv1d: expected 2-d \(C, L\) or 3-d \(N, C, L\) "
                                         r"input, got shape \(2, 3, 4, 5\)"):
        nn.Conv1d(3, 6, 2)(dg.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"^ConvTranspose2d: expected input with 4 channels "
                                         r"\(in_channels=4\), got shape \(1, 2, 3, 3\)"):
        nn.ConvTranspose2d(4, 2, 3)(dg.randn(1, 2, 3, 3))
    with pytest.raises(ValueError, match=r"Conv2d.*conv2d: padded input size \(2, 2\) is "
                                         r"smaller than the dilated kernel size \(5, 5\)"):
        nn.Conv2d(3, 6, 5)(dg.randn(1, 3, 2, 2))


def test_constructor_errors():
    cases = [
        (lambda: nn.Conv2d(3, 6, 5, padding_mode="foo"),
         "Conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', "
         "got 'foo'"),
        (lambda: nn.Conv2d(3, 6, 5, groups=2), "Conv2d: in_channels must be divisible by groups"),
        (lambda: nn.Conv2d(4, 6, 3, groups=4), "Conv2d: out_channels must be divisible by groups"),
        (lambda: nn.Conv2d(3, 6, 3, stride=2, padding="same"),
         "Conv2d: padding='same' is not supported for strided convolutions"),
        (lambda: nn.Conv2d(3, 6, 3, padding="full"), "Conv2d: padding must be"),
        (lambda: nn.Conv2d(0, 6, 3), "Conv2d: in_channels must be a positive integer, got 0"),
        (lambda: nn.Conv2d(3, 6, (3, 3, 3)), "Conv2d: kernel_size must be an int or a tuple of 2"),
        (lambda: nn.Conv2d(3, 6, 3, stride=0), "Conv2d: stride must be positive, got 0"),
        (lambda: nn.Conv1d(3, 6, 3, padding=-1), "Conv1d: padding must be non-negative"),
        (lambda: nn.ConvTranspose2d(3, 6, 3, padding_mode="reflect"),
         "ConvTranspose2d: only padding_mode='zeros' is supported"),
        (lambda: nn.ConvTranspose2d(3, 6, 3, padding="same"), "ConvTranspose2d: padding must be"),
    ]
    for make, msg in cases:
        with pytest.raises(ValueError) as e:
            make()
        assert msg in str(e.value)


def test_functional_errors():
    x = dg.randn(2, 3, 8, 8)
    cases = [
        (lambda: F.conv2d(x, dg.randn(6, 2, 3, 3)), ValueError,
         "conv2d: expected input with 2 channels (weight.shape[1] * groups = 2 * 1), got input "
         "of shape (2, 3, 8, 8) and weight of shape (6, 2, 3, 3)"),
        (lambda: F.conv2d(x, dg.randn(6, 3, 3)), ValueError,
         "conv2d: expected a 4-d weight (out_channels, in_channels/groups, kH, kW), got weight "
         "of shape (6, 3, 3)"),
        (lambda: F.conv2d(dg.randn(8, 8), dg.randn(6, 3, 3, 3)), ValueError,
         "conv2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape (8, 8)"),
        (lambda: F.conv2d(x, dg.randn(6, 3, 3, 3), dg.randn(5)), ValueError,
         "conv2d: expected bias of shape (6,), got (5,)"),
        (lambda: F.conv2d(x, dg.randn(6, 3, 3, 3), stride=2, padding="same"), ValueError,
         "conv2d: padding='same' is not supported for strided convolutions; got stride=(2, 2)"),
        (lambda: F.conv2d(x, dg.randn(6, 3, 3, 3), padding="full"), ValueError,
         "conv2d: padding must be 'valid', 'same', an int or a tuple of 2 ints, got 'full'"),
        (lambda: F.conv2d(x, dg.randn(6, 1, 3, 3), groups=3, dilation=0), ValueError,
         "conv2d: dilation must be positive, got 0"),
        (lambda: F.conv2d(x, dg.randn(5, 1, 3, 3), groups=3), ValueError,
         "conv2d: out_channels (weight.shape[0] = 5) must be divisible by groups=3"),
        (lambda: F.conv2d(x, dg.randn(6, 3, 3, 3, dtype=dg.float64)), TypeError,
         "conv2d: input dtype float32 differs from weight dtype float64"),
        (lambda: F.conv2d(x.numpy(), dg.randn(6, 3, 3, 3)), TypeError,
         "conv2d: input must be a Tensor, got ndarray"),
        (lambda: F.conv1d(dg.randn(2, 3, 8), dg.randn(6, 3, 3, 3)), ValueError,
         "conv1d: expected a 3-d weight"),
        (lambda: F.conv_transpose2d(x, dg.randn(4, 2, 3, 3)), ValueError,
         "conv_transpose2d: expected input with 4 channels (weight.shape[0]), got input of shape "
         "(2, 3, 8, 8) and weight of shape (4, 2, 3, 3)"),
        (lambda: F.conv_transpose2d(x, dg.randn(3, 2, 3, 3), stride=2, output_padding=2),
         ValueError, "conv_transpose2d: output_padding must be smaller than either stride or "
         "dilation"),
        (lambda: F.conv_transpose2d(x, dg.randn(3, 2, 3, 3), dg.randn(3)), ValueError,
         "conv_transpose2d: expected bias of shape (2,), got (3,)"),
    ]
    for fn, exc, msg in cases:
        with pytest.raises(exc) as e:
            fn()
        assert msg in str(e.value), str(e.value)
