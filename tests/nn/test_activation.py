"""Activations and the softmax family: functional ops and modules against PyTorch, gradchecks,
the erf behind exact GELU, numerical stability and error messages."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from helpers import (FLOAT_DTYPES, Case, away_from, check_against_torch, params,
                     run_case_against_torch, run_case_float32_dtypes, run_case_gradcheck)

import deepgrad as dg
from deepgrad import nn
from deepgrad.ops.nn_ops import _erf, _normal_cdf

try:
    import torch
    torch.set_num_threads(1)  # tiny ops: a busy thread pool makes torch 1000x slower
except ImportError:  # pragma: no cover
    torch = None


def F(m):
    return m.nn.functional


def wide(rng, shape):
    """Values over [-8, 8] away from the kinks of relu6/hardtanh/leaky_relu."""
    return away_from(-1.0, 0.0, 1.0, 6.0, margin=0.1, spread=8.0)(rng, shape)


CASES = [
    Case("relu", lambda m, x: F(m).relu(x), [(3, 4)], gen=away_from(0.0)),
    Case("sigmoid", lambda m, x: F(m).sigmoid(x), [(3, 4)]),
    Case("tanh", lambda m, x: F(m).tanh(x), [(3, 4)]),
    Case("leaky_relu", lambda m, x: F(m).leaky_relu(x), [(3, 4)], gen=away_from(0.0)),
    Case("leaky_relu_0.2", lambda m, x: F(m).leaky_relu(x, 0.2), [(2, 3, 4)],
         gen=away_from(0.0)),
    Case("elu", lambda m, x: F(m).elu(x), [(3, 4)], gen=away_from(0.0, spread=3)),
    Case("elu_0.5", lambda m, x: F(m).elu(x, alpha=0.5), [(3, 4)], gen=away_from(0.0)),
    Case("selu", lambda m, x: F(m).selu(x), [(3, 4)], gen=away_from(0.0)),
    Case("celu_2", lambda m, x: F(m).celu(x, alpha=2.0), [(3, 4)], gen=away_from(0.0)),
    Case("gelu", lambda m, x: F(m).gelu(x), [(4, 5)], gen=wide),
    Case("gelu_tanh", lambda m, x: F(m).gelu(x, approximate="tanh"), [(4, 5)], gen=wide),
    Case("softplus", lambda m, x: F(m).softplus(x), [(3, 4)], gen=wide),
    Case("softplus_beta2_thr1", lambda m, x: F(m).softplus(x, beta=2.0, threshold=1.0),
         [(3, 4)], gen=away_from(0.5, spread=3)),
    Case("hardtanh", lambda m, x: F(m).hardtanh(x), [(3, 4)], gen=away_from(-1.0, 1.0)),
    Case("hardtanh_-2_3", lambda m, x: F(m).hardtanh(x, -2.0, 3.0), [(3, 4)], gen=wide),
    Case("relu6", lambda m, x: F(m).relu6(x), [(3, 4)], gen=wide),
    Case("silu", lambda m, x: F(m).silu(x), [(3, 4)], gen=wide),
    Case("mish", lambda m, x: F(m).mish(x), [(3, 4)], gen=wide),
    Case("logsigmoid", lambda m, x: F(m).logsigmoid(x), [(3, 4)], gen=wide),
    Case("softmax_dim1", lambda m, x: F(m).softmax(x, dim=1), [(3, 4)]),
    Case("softmax_dim0", lambda m, x: F(m).softmax(x, dim=0), [(3, 4, 2)]),
    Case("softmax_dim-1", lambda m, x: F(m).softmax(x, dim=-1), [(2, 3, 4)]),
    Case("softmax_1d", lambda m, x: F(m).softmax(x, dim=0), [(5,)]),
    Case("softmax_0d", lambda m, x: F(m).softmax(x, dim=0), [()]),
    Case("log_softmax_dim1", lambda m, x: F(m).log_softmax(x, dim=1), [(3, 4)]),
    Case("log_softmax_dim0", lambda m, x: F(m).log_softmax(x, dim=0), [(3, 4, 2)]),
    Case("log_softmax_dim-1", lambda m, x: F(m).log_softmax(x, dim=-1), [(2, 3, 4)]),
    Case("log_softmax_0d", lambda m, x: F(m).log_softmax(x, dim=0), [()]),
    Case("softmin", lambda m, x: F(m).softmin(x, dim=1), [(3, 4)]),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", params(CASES))
def test_functional_against_torch(case, dtype):
    run_case_against_torch(case, dtype)


@pytest.mark.parametrize("case", params(CASES))
def test_functional_gradcheck(case):
    run_case_gradcheck(case)


@pytest.mark.parametrize("case", params(CASES))
def test_functional_keeps_float32(case):
    run_case_float32_dtypes(case)


def test_softmax_dtype_argument():
    x = np.random.default_rng(0).standard_normal((3, 4))
    check_against_torch(lambda m, a: F(m).softmax(a, dim=1, dtype=m.float64), [x],
                        np.float32, rtol=1e-6, atol=1e-9)
    check_against_torch(lambda m, a: F(m).log_softmax(a, dim=1, dtype=m.float64), [x],
                        np.float32, rtol=1e-6, atol=1e-9)


# -- erf and exact GELU --------------------------------------------------------------------


def test_erf_matches_torch_float64():
    torch_ = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-30, 30, 20001), [0.0, -0.0, 1e-300, 0.46875, -0.46875,
                                                      4.0, -4.0, 26.0, np.inf, -np.inf]])
    got = _erf(x)
    want = torch_.erf(torch_.tensor(x)).numpy()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300)  # Cody's accuracy
    assert np.isnan(_erf(np.array([np.nan]))).all()


def test_erf_float32_stays_float32_and_matches_math():
    x = np.linspace(-6, 6, 4001).astype(np.float32)
    got = _erf(x)
    assert got.dtype == np.float32
    want = np.array([math.erf(float(v)) for v in x])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_normal_cdf_tail_has_relative_precision():
    x = np.array([-5.0, -10.0, -20.0, -37.0, 0.1, 3.0, 10.0])
    want = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    np.testing.assert_allclose(_normal_cdf(x), want, rtol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_float64_wide_range(approximate):
    torch_ = pytest.importorskip("torch")
    x = np.linspace(-12, 12, 2401)
    xt = torch_.tensor(x, requires_grad=True)
    yt = torch_.nn.functional.gelu(xt, approximate=approximate)
    yt.sum().backward()
    xd = dg.tensor(x, requires_grad=True)
    yd = F(dg).gelu(xd, approximate=approximate)
    yd.sum().backward()
    np.testing.assert_allclose(yd.detach().numpy(), yt.detach().numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-12)


# -- numerical stability -------------------------------------------------------------------

STABLE = [
    ("sigmoid", lambda m, x: F(m).sigmoid(x)),
    ("tanh", lambda m, x: F(m).tanh(x)),
    ("softplus", lambda m, x: F(m).softplus(x)),
    ("softplus_beta", lambda m, x: F(m).softplus(x, beta=3.0, threshold=50.0)),
    ("logsigmoid", lambda m, x: F(m).logsigmoid(x)),
    ("silu", lambda m, x: F(m).silu(x)),
    ("mish", lambda m, x: F(m).mish(x)),
    ("elu", lambda m, x: F(m).elu(x)),
    ("selu", lambda m, x: F(m).selu(x)),
    ("gelu", lambda m, x: F(m).gelu(x)),
    ("gelu_tanh", lambda m, x: F(m).gelu(x, approximate="tanh")),
    ("softmax", lambda m, x: F(m).softmax(x, dim=1)),
    ("log_softmax", lambda m, x: F(m).log_softmax(x, dim=1)),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name,fn", STABLE, ids=[s[0] for s in STABLE])
def test_stable_at_large_magnitudes(name, fn, dtype):
    x = np.array([[-1e4, 1e4, 0.0, 5.0], [1e4, 1e4, -1e4, -30.0], [-100.0, 100.0, 88.0, -88.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings from NumPy
        xd = dg.tensor(x.astype(dtype), requires_grad=True)
        y = fn(dg, xd)
        y.sum().backward()
    assert np.isfinite(y.detach().numpy()).all()
    assert np.isfinite(xd.grad.numpy()).all()
    if torch is not None:
        check_against_torch(fn, [x], dtype)


# -- modules -------------------------------------------------------------------------------

MODULES = [
    ("ReLU", {}), ("ReLU", {"inplace": True}), ("ReLU6", {}), ("LeakyReLU", {}),
    ("LeakyReLU", {"negative_slope": 0.3}), ("ELU", {}), ("ELU", {"alpha": 0.7}), ("SELU", {}),
    ("CELU", {"alpha": 1.5}), ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("Sigmoid", {}),
    ("Tanh", {}), ("Softmax", {"dim": 1}), ("Softmax", {"dim": -1}), ("LogSoftmax", {"dim": 1}),
    ("Softmin", {"dim": 0}), ("Softplus", {}), ("Softplus", {"beta": 2.0, "threshold": 5.0}),
    ("Hardtanh", {}), ("Hardtanh", {"min_val": -2.0, "max_val": 0.5}), ("SiLU", {}),
    ("Mish", {}), ("LogSigmoid", {}),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name,kwargs", MODULES,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for n, kw in MODULES])
def test_module_against_torch(name, kwargs, dtype):
    torch_ = pytest.importorskip("torch")
    x = away_from(-2.0, -1.0, 0.0, 0.5, 1.0, margin=0.05, spread=4.0)(
        np.random.default_rng(1), (2, 3, 4))
    dm = getattr(nn, name)(**kwargs)
    assert repr(dm) == repr(getattr(torch_.nn, name)(**kwargs))
    assert list(dm.state_dict()) == [] and list(dm.parameters()) == []
    # torch's in-place variant refuses a leaf that requires grad; ours returns a new tensor
    tm = getattr(torch_.nn, name)(**{k: v for k, v in kwargs.items() if k != "inplace"})
    check_against_torch(lambda m, a: (dm if m is dg else tm)(a), [x], dtype)


def test_relu_inplace_flag_leaves_input_unchanged():
    x = dg.tensor([-1.0, 2.0, -3.0])
    y = nn.ReLU(inplace=True)(x)
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.0, 0.0])
    np.testing.assert_array_equal(x.numpy(), [-1.0, 2.0, -3.0])


def test_softmax_implicit_dim_warns_and_matches_pytorch_choice():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    for shape, dim in (((5,), 0), ((2, 3), 1), ((2, 3, 4), 0), ((2, 3, 4, 5), 1)):
        a = dg.tensor(np.random.default_rng(0).standard_normal(shape))
        with pytest.warns(UserWarning, match="Implicit dimension"):
            got = F(dg).softmax(a)
        np.testing.assert_allclose(got.numpy(), F(dg).softmax(a, dim=dim).numpy())
    with pytest.warns(UserWarning, match="Implicit dimension"):
        nn.LogSoftmax()(dg.tensor(x))


def test_softmax_rows_sum_to_one_float32():
    x = dg.randn(5, 7)
    y = F(dg).softmax(x, dim=1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, rtol=1e-6)


# -- errors --------------------------------------------------------------------------------


def test_softmax_dim_out_of_range():
    with pytest.raises(IndexError, match=r"softmax: dim 2 .* 2 dims"):
        F(dg).softmax(dg.randn(3, 4), dim=2)
    with pytest.raises(IndexError, match=r"log_softmax: dim -3"):
        F(dg).log_softmax(dg.randn(3, 4), dim=-3)


def test_gelu_bad_approximate():
    with pytest.raises(ValueError, match=r"gelu: approximate must be 'none' or 'tanh', got 'x'"):
        F(dg).gelu(dg.randn(3), approximate="x")
    with pytest.raises(ValueError, match="GELU: approximate"):
        nn.GELU("erf")


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match=r"leaky_relu: expected a floating-point input, got "
                                        r"dtype int64"):
        F(dg).leaky_relu(dg.tensor([1, 2]))
    with pytest.raises(TypeError, match="softmax: expected a floating-point input"):
        F(dg).softmax(dg.tensor([1, 2]), dim=0)


def test_hardtanh_bad_range():
    with pytest.raises(ValueError, match=r"hardtanh: min_val must not exceed max_val"):
        F(dg).hardtanh(dg.randn(3), 1.0, -1.0)
    with pytest.raises(ValueError, match=r"Hardtanh: min_val"):
        nn.Hardtanh(2.0, 1.0)


def test_module_error_is_prefixed_with_path():
    model = nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=3))
    with pytest.raises(IndexError, match=r"softmax: dim 3"):
        model(dg.randn(2, 3))
