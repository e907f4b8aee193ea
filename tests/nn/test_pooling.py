"""Max/avg/adaptive pooling, 1-d and 2-d: functional and layers against PyTorch over a grid of
options (incl. indices and PyTorch's tie rule), gradchecks, repr and error messages."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import check_against_torch, distinct, run_gradcheck

import deepgrad as dg
from deepgrad import nn

try:
    import torch as _torch_mod
    _torch_mod.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

F = dg.nn.functional
DTYPES = [np.float32, np.float64]


def _torch():
    return pytest.importorskip("torch")


def _f(m):
    return m.nn.functional


def _valid_pool(k, p, d=1, max_pool=True):
    ks = k if isinstance(k, tuple) else (k, k)
    return all(p <= ((d * (kk - 1) + 1) // 2 if max_pool else kk // 2) for kk in ks)


# -----------------------------------------------------------------------------------------
# max pooling
# -----------------------------------------------------------------------------------------

MAX_GRID = [
    pytest.param(k, s, p, d, c, id=f"k{k}-s{s}-p{p}-d{d}-ceil{int(c)}")
    for k, s, p, d, c in itertools.product([2, 3, (2, 3)], [None, 1, 2], [0, 1], [1, 2],
                                           [False, True])
    if _valid_pool(k, p, d)
]


@pytest.mark.parametrize("k,s,p,d,ceil", MAX_GRID)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_matches_torch(k, s, p, d, ceil, dtype):
    x = distinct(np.random.default_rng(0), (2, 3, 7, 8))
    check_against_torch(
        lambda m, x: _f(m).max_pool2d(x, k, s, p, d, ceil, return_indices=True), [x], dtype)


@pytest.mark.parametrize("k,s,p,d,ceil", [(2, None, 0, 1, False), (3, 2, 1, 1, True),
                                          (2, 1, 1, 2, False), (4, 3, 0, 1, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool1d_matches_torch(k, s, p, d, ceil, dtype):
    x = distinct(np.random.default_rng(1), (2, 3, 11))
    check_against_torch(
        lambda m, x: _f(m).max_pool1d(x, k, s, p, d, ceil, return_indices=True), [x], dtype)
    check_against_torch(lambda m, x: _f(m).max_pool1d(x, k, s, p, d, ceil), [x[0]], dtype)


def test_max_pool_unbatched_and_no_grad():
    x = distinct(np.random.default_rng(2), (3, 6, 6))
    check_against_torch(lambda m, x: _f(m).max_pool2d(x, 2, return_indices=True), [x],
                        np.float64)
    with dg.no_grad():
        y = F.max_pool2d(dg.tensor(x), 3, 1, 1)
    torch = _torch()
    np.testing.assert_array_equal(
        y.numpy(), torch.nn.functional.max_pool2d(torch.tensor(x), 3, 1, 1).numpy())


@pytest.mark.parametrize("k,s", [(2, 2), (3, 1), (2, 1)])
def test_max_pool_ties_go_to_first_maximum(k, s):
    torch = _torch()
    x = np.ones((1, 2, 5, 6))
    x[0, 1, 2:, :] = 0.5
    xd = dg.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yd, id_ = F.max_pool2d(xd, k, s, return_indices=True)
    yt, it = torch.nn.functional.max_pool2d(xt, k, s, return_indices=True)
    np.testing.assert_array_equal(id_.numpy(), it.numpy())
    yd.sum().backward()
    yt.sum().backward()
    np.testing.assert_array_equal(xd.grad.numpy(), xt.grad.numpy())


def test_max_pool_propagates_nan():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    y = F.max_pool2d(dg.tensor(x, requires_grad=True), 2)
    assert np.isnan(y.detach().numpy()[0, 0, 0, 0]) and not np.isnan(y.detach().numpy()[0, 0, 1, 1])


def test_max_pool_indices_are_int64_and_not_differentiable():
    x = dg.randn(2, 3, 6, 6, requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.dtype == np.int64 and not idx.requires_grad and y.requires_grad
    y.sum().backward()
    assert x.grad.shape == x.shape


# -----------------------------------------------------------------------------------------
# average pooling
# -----------------------------------------------------------------------------------------

AVG_GRID = [
    pytest.param(k, s, p, c, cip, div, id=f"k{k}-s{s}-p{p}-ceil{int(c)}-cip{int(cip)}-div{div}")
    for k, s, p, c, cip, div in itertools.product([2, 3, (2, 3)], [None, 1, 2], [0, 1],
                                                   [False, True], [True, False], [None, 3])
    if _valid_pool(k, p, max_pool=False)
]


@pytest.mark.parametrize("k,s,p,ceil,cip,div", AVG_GRID)
def test_avg_pool2d_matches_torch(k, s, p, ceil, cip, div):
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 8))
    for dtype in DTYPES:
        check_against_torch(lambda m, x: _f(m).avg_pool2d(x, k, s, p, ceil, cip, div), [x],
                            dtype)


@pytest.mark.parametrize("k,s,p,ceil,cip", [(2, None, 0, False, True), (3, 2, 1, True, False),
                                            (3, 2, 1, True, True), (4, 1, 2, False, False)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool1d_matches_torch(k, s, p, ceil, cip, dtype):
    x = np.random.default_rng(4).standard_normal((2, 3, 11))
    check_against_torch(lambda m, x: _f(m).avg_pool1d(x, k, s, p, ceil, cip), [x], dtype)
    check_against_torch(lambda m, x: _f(m).avg_pool1d(x, k, s, p, ceil, cip), [x[0]], dtype)


@pytest.mark.parametrize("k", [2, (2, 4), (3, 2), (1, 2), (2, 1), 1, (3, 4)])
@pytest.mark.parametrize("div", [None, 3])
def test_avg_pool_windows_that_tile_the_input(k, div):
    # kernel = stride and dividing the input: rows added first, gradients written per slot
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 8))
    for dtype in DTYPES:
        check_against_torch(lambda m, x: _f(m).avg_pool2d(x, k, divisor_override=div), [x],
                            dtype)
    check_against_torch(lambda m, x: _f(m).avg_pool2d(x, k), [x[0]], np.float64)
    check_against_torch(lambda m, x: _f(m).avg_pool1d(x, 4), [x[0]], np.float32)


def test_avg_pool_large_window_and_unbatched():
    x = np.random.default_rng(5).standard_normal((2, 4, 10, 10))
    check_against_torch(lambda m, x: _f(m).avg_pool2d(x, 5), [x], np.float64)
    check_against_torch(lambda m, x: _f(m).avg_pool2d(x, 10), [x], np.float32)
    check_against_torch(lambda m, x: _f(m).avg_pool2d(x, 3, 2, 1), [x[0]], np.float64)


# -----------------------------------------------------------------------------------------
# adaptive average pooling
# -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("out", [1, 2, 3, (3, 5), (None, 4), (7, 8), (5, None), (4, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_pool2d_matches_torch(out, dtype):
    x = np.random.default_rng(6).standard_normal((2, 3, 7, 8))
    check_against_torch(lambda m, x: _f(m).adaptive_avg_pool2d(x, out), [x], dtype)
    check_against_torch(lambda m, x: _f(m).adaptive_avg_pool2d(x, out), [x[0]], dtype)


@pytest.mark.parametrize("out", [1, 3, 4, 11, 12])
def test_adaptive_avg_pool1d_matches_torch(out):
    x = np.random.default_rng(7).standard_normal((2, 3, 12))
    for dtype in DTYPES:
        check_against_torch(lambda m, x: _f(m).adaptive_avg_pool1d(x, out), [x], dtype)
        check_against_torch(lambda m, x: _f(m).adaptive_avg_pool1d(x, out), [x[1]], dtype)


# -----------------------------------------------------------------------------------------
# gradchecks
# -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    pytest.param(lambda m, x: F.max_pool2d(x, 2), id="max2d-tiles"),
    pytest.param(lambda m, x: F.max_pool2d(x, (3, 2), 1, 1, ceil_mode=True), id="max2d-overlap"),
    pytest.param(lambda m, x: F.max_pool2d(x, 2, 2, 1, dilation=2), id="max2d-dilation"),
    pytest.param(lambda m, x: F.max_pool1d(x[0], 3, 2, 1, ceil_mode=True), id="max1d"),
    pytest.param(lambda m, x: F.avg_pool2d(x, 2), id="avg2d-tiles"),
    pytest.param(lambda m, x: F.avg_pool2d(x, 3, 2, 1, True, False), id="avg2d-pad"),
    pytest.param(lambda m, x: F.avg_pool2d(x, (2, 3), 1, divisor_override=4), id="avg2d-div"),
    pytest.param(lambda m, x: F.avg_pool1d(x[0], 3, 2, 1, ceil_mode=True), id="avg1d"),
    pytest.param(lambda m, x: F.adaptive_avg_pool2d(x, (3, 2)), id="adaptive2d"),
    pytest.param(lambda m, x: F.adaptive_avg_pool2d(x, (2, 1)), id="adaptive2d-tiles"),
    pytest.param(lambda m, x: F.adaptive_avg_pool1d(x[0], 4), id="adaptive1d"),
])
def test_gradcheck_pooling(fn):
    run_gradcheck(fn, [distinct(np.random.default_rng(8), (2, 2, 6, 5))])


# -----------------------------------------------------------------------------------------
# layers
# -----------------------------------------------------------------------------------------

LAYERS = [
    ("MaxPool2d", (2,), {}, (2, 3, 8, 8)),
    ("MaxPool2d", ((2, 3),), dict(stride=1, padding=1, dilation=(1, 2), ceil_mode=True),
     (2, 3, 7, 9)),
    ("MaxPool1d", (3,), dict(stride=2, padding=1), (2, 3, 9)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False),
     (2, 3, 8, 7)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (3, 6, 6)),
    ("AvgPool1d", (3,), dict(stride=2, padding=1), (2, 3, 9)),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (2, 3, 8, 7)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 5, 5)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 9)),
]


@pytest.mark.parametrize("name,args,kwargs,xshape", LAYERS,
                         ids=[f"{n}-{i}" for i, (n, *_) in enumerate(LAYERS)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_matches_torch(name, args, kwargs, xshape, dtype):
    torch = _torch()
    tm = getattr(torch.nn, name)(*args, **kwargs)
    dm = getattr(nn, name)(*args, **kwargs)
    assert repr(dm) == repr(tm)
    assert dm.state_dict() == {} and len(tm.state_dict()) == 0
    x = distinct(np.random.default_rng(9), xshape)
    check_against_torch(lambda m, x: (tm if m is torch else dm)(x), [x], dtype)


def test_max_pool_layer_return_indices():
    torch = _torch()
    x = distinct(np.random.default_rng(10), (2, 2, 6, 6))
    tm = torch.nn.MaxPool2d(2, return_indices=True)
    dm = nn.MaxPool2d(2, return_indices=True)
    check_against_torch(lambda m, x: (tm if m is torch else dm)(x), [x], np.float64)


def test_reprs_and_attributes_match_torch():
    torch = _torch()
    cases = [("MaxPool2d", (2,), {}), ("MaxPool2d", ((2, 3),), dict(stride=1)),
             ("MaxPool1d", (2,), {}), ("AvgPool2d", (2,), {}),
             ("AvgPool2d", ((2, 3),), dict(ceil_mode=True, count_include_pad=False,
                                           divisor_override=3)),
             ("AvgPool1d", (3,), {}), ("AdaptiveAvgPool2d", ((2, None),), {}),
             ("AdaptiveAvgPool2d", (1,), {}), ("AdaptiveAvgPool1d", (3,), {})]
    for name, args, kwargs in cases:
        tm = getattr(torch.nn, name)(*args, **kwargs)
        dm = getattr(nn, name)(*args, **kwargs)
        assert repr(dm) == repr(tm)
        for attr in ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                     "count_include_pad", "divisor_override", "return_indices", "output_size"):
            if hasattr(tm, attr):
                assert getattr(dm, attr) == getattr(tm, attr), (name, attr)
    assert repr(nn.MaxPool2d(2)) == \
        "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"


# -----------------------------------------------------------------------------------------
# errors
# -----------------------------------------------------------------------------------------

def test_errors():
    x = dg.randn(2, 3, 8, 8)
    cases = [
        (lambda: nn.Sequential(nn.MaxPool2d(2))(dg.randn(8, 8)), ValueError,
         "0 (MaxPool2d): expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape (8, 8)"),
        (lambda: nn.AvgPool1d(2)(x), ValueError,
         "AvgPool1d: expected 2-d (C, L) or 3-d (N, C, L) input, got shape (2, 3, 8, 8)"),
        (lambda: F.max_pool2d(x, 2, padding=2), ValueError,
         "max_pool2d: padding should be at most half of the (dilated) kernel size; got "
         "padding=(2, 2), kernel_size=(2, 2), dilation=(1, 1)"),
        (lambda: F.avg_pool2d(x, 3, padding=2), ValueError,
         "avg_pool2d: padding should be at most half of the (dilated) kernel size"),
        (lambda: F.max_pool2d(x, 9), ValueError,
         "max_pool2d: output size (0, 0) is too small; input shape (2, 3, 8, 8)"),
        (lambda: F.max_pool2d(x, 0), ValueError, "max_pool2d: kernel_size must be positive"),
        (lambda: F.avg_pool2d(x, 2, divisor_override=0), ValueError,
         "avg_pool2d: divisor_override must be a non-zero int, got 0"),
        (lambda: F.max_pool1d(x, 2), ValueError,
         "max_pool1d: expected 2-d (C, L) or 3-d (N, C, L) input, got shape (2, 3, 8, 8)"),
        (lambda: F.adaptive_avg_pool2d(x, (2, 2, 2)), ValueError,
         "adaptive_avg_pool2d: output_size must be an int or a tuple of 2 ints"),
        (lambda: F.adaptive_avg_pool2d(x, 0), ValueError,
         "adaptive_avg_pool2d: output_size must be positive, got 0"),
        (lambda: nn.AdaptiveAvgPool2d((0, 2)), ValueError,
         "AdaptiveAvgPool2d: output_size must be a positive int"),
        (lambda: nn.MaxPool2d(2, stride=0), ValueError, "MaxPool2d: stride must be positive"),
        (lambda: F.max_pool2d(dg.tensor(np.ones((2, 3, 4, 4), np.int64)), 2), TypeError,
         "max_pool2d: expected a floating-point input, got dtype int64"),
    ]
    for fn, exc, msg in cases:
        with pytest.raises(exc) as e:
            fn()
        assert msg in str(e.value), str(e.value)


def test_max_pool_nan_gradient_goes_where_torch_puts_it():
    torch = _torch()
    x = np.random.default_rng(11).standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 0, 1] = np.nan
    x[0, 1, 3, 3] = np.nan
    for k, s in ((2, 2), (3, 1)):
        xd = dg.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        yd, id_ = F.max_pool2d(xd, k, s, return_indices=True)
        yt, it = torch.nn.functional.max_pool2d(xt, k, s, return_indices=True)
        np.testing.assert_array_equal(id_.numpy(), it.numpy())
        yd.sum().backward()
        yt.sum().backward()
        np.testing.assert_array_equal(xd.grad.numpy(), xt.grad.numpy())
