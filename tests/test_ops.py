"""Elementwise ops, matmul and comparisons: torch oracle + gradcheck, errors, dtype rules."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from helpers import (
    Case,
    away_from,
    params,
    positive,
    real,
    requires_torch,
    run_case_against_torch,
    run_case_float32_dtypes,
    run_case_gradcheck,
    torch,
)

# Broadcasting pairs every binary op is checked on.
BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((3, 1), (1, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((2, 1, 4), (3, 1)),
]


def _shape_id(shape) -> str:
    return "x".join(str(s) for s in shape) if shape else "scalar"


def _pair_id(a, b) -> str:
    return f"{_shape_id(a)}-{_shape_id(b)}"


BINARY = {
    "add": (lambda m, a, b: a + b, None),
    "sub": (lambda m, a, b: a - b, None),
    "mul": (lambda m, a, b: a * b, None),
    "div": (lambda m, a, b: a / b, [real, positive]),
    "pow": (lambda m, a, b: a ** b, [positive, real]),
    "maximum": (lambda m, a, b: m.maximum(a, b), None),
    "minimum": (lambda m, a, b: m.minimum(a, b), None),
    "where": (lambda m, a, b: m.where(a > 0, a, b), None),
}

BINARY_CASES = []
for _name, (_fn, _gens) in BINARY.items():
    for _sa, _sb in BROADCAST_PAIRS:
        BINARY_CASES.append(Case(f"{_name}-{_pair_id(_sa, _sb)}", _fn, (_sa, _sb), gens=_gens))

# One requires_grad / one constant input: the constant must get no grad.
BINARY_CASES += [
    Case("mul-const-rhs", lambda m, a, b: a * b, ((3, 4), (4,)), requires_grad=[True, False]),
    Case("add-const-lhs", lambda m, a, b: a + b, ((3, 1), (1, 4)), requires_grad=[False, True]),
    Case("where-mask-broadcast",
         lambda m, a, b: m.where(m.tensor(np.array([True, False, True, False])), a, b),
         ((3, 4), (3, 1))),
    Case("where-cond-2d-broadcast",
         lambda m, a, b: m.where(m.tensor(np.array([[True], [False], [True]])), a, b),
         ((4,), ())),
    Case("add-same-tensor", lambda m, a: a + a, ((3, 4),)),
    Case("mul-same-tensor", lambda m, a: a * a * a, ((3, 4),)),
    Case("chain", lambda m, a, b: ((a * b + a) / (b * b + 1.0)).tanh() - a.exp() * 0.5,
         ((3, 4), (4,))),
]

SCALAR_CASES = [
    Case("add-scalar-rhs", lambda m, a: a + 2.5, ((3, 4),)),
    Case("add-scalar-lhs", lambda m, a: 2.5 + a, ((3, 4),)),
    Case("add-int-scalar", lambda m, a: a + 2, ((3, 4),)),
    Case("sub-scalar-rhs", lambda m, a: a - 1.5, ((3, 4),)),
    Case("sub-scalar-lhs", lambda m, a: 1.5 - a, ((3, 4),)),
    Case("mul-scalar-rhs", lambda m, a: a * 3.0, ((3, 4),)),
    Case("mul-scalar-lhs", lambda m, a: 3 * a, ((3, 4),)),
    Case("div-scalar-rhs", lambda m, a: a / 2.0, ((3, 4),)),
    Case("div-scalar-lhs", lambda m, a: 2.0 / a, ((3, 4),), gen=positive),
    Case("pow-2", lambda m, a: a ** 2, ((3, 4),)),
    Case("pow-3", lambda m, a: a ** 3, ((2, 3),)),
    Case("pow-half", lambda m, a: a ** 0.5, ((3, 4),), gen=positive),
    Case("pow-neg", lambda m, a: a ** -1.5, ((3, 4),), gen=positive),
    Case("rpow", lambda m, a: 2.0 ** a, ((3, 4),)),
    Case("scalar-tensor-op-scalar", lambda m, a: (1.0 - a) * 2.0 + a / 4.0, ((),)),
    Case("maximum-0d", lambda m, a, b: m.maximum(a, b), ((), ())),
]

UNARY = {
    "neg": (lambda m, a: -a, real),
    "neg-method": (lambda m, a: a.neg(), real),
    "abs": (lambda m, a: a.abs(), away_from(0.0)),
    "abs-fn": (lambda m, a: m.abs(a), away_from(0.0)),
    "exp": (lambda m, a: a.exp(), real),
    "exp-fn": (lambda m, a: m.exp(a), real),
    "log": (lambda m, a: a.log(), positive),
    "log-fn": (lambda m, a: m.log(a), positive),
    "sqrt": (lambda m, a: a.sqrt(), positive),
    "sqrt-fn": (lambda m, a: m.sqrt(a), positive),
    "sin": (lambda m, a: a.sin(), real),
    "sin-fn": (lambda m, a: m.sin(a), real),
    "cos": (lambda m, a: a.cos(), real),
    "cos-fn": (lambda m, a: m.cos(a), real),
    "relu": (lambda m, a: a.relu(), away_from(0.0)),
    "relu-fn": (lambda m, a: m.relu(a), away_from(0.0)),
    "sigmoid": (lambda m, a: a.sigmoid(), real),
    "sigmoid-fn": (lambda m, a: m.sigmoid(a), real),
    "tanh": (lambda m, a: a.tanh(), real),
    "tanh-fn": (lambda m, a: m.tanh(a), real),
    "clamp": (lambda m, a: a.clamp(-0.5, 0.5), away_from(-0.5, 0.5)),
    "clamp-kw": (lambda m, a: a.clamp(min=-0.5, max=0.5), away_from(-0.5, 0.5)),
    "clamp-min": (lambda m, a: a.clamp(min=0.2), away_from(0.2)),
    "clamp-max": (lambda m, a: a.clamp(max=-0.3), away_from(-0.3)),
    "clamp-fn": (lambda m, a: m.clamp(a, -0.5, 0.5), away_from(-0.5, 0.5)),
}
UNARY_SHAPES = [(3, 4), (), (2, 1, 3)]
UNARY_CASES = [
    Case(f"{name}-{_shape_id(shape)}", fn, (shape,), gen=gen)
    for name, (fn, gen) in UNARY.items()
    for shape in UNARY_SHAPES
]

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((1, 4), (4, 1)),
]
MATMUL_CASES = [
    Case(f"matmul-{_pair_id(a, b)}", lambda m, x, y: x @ y, (a, b)) for a, b in MATMUL_SHAPES
] + [
    Case(f"matmul-fn-{_pair_id(a, b)}", lambda m, x, y: m.matmul(x, y), (a, b))
    for a, b in MATMUL_SHAPES[:4]
] + [
    Case("matmul-then-add-bias", lambda m, x, w, b: x @ w.T + b, ((5, 3), (4, 3), (4,))),
]

# Inputs exactly at kinks / zeros: torch's conventions (abs'(0)=0, relu'(0)=0, clamp passes the
# grad at its bounds, maximum/minimum split ties, d(x**2)/dx at 0 is 0). Torch oracle only.
KINKS = np.array([[-1.0, -0.5, 0.0, 0.5], [1.0, 0.0, 0.2, -0.2]])
TIES_B = np.array([-1.0, 0.3, 0.0, 0.5])
ZERO_BASE = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 0.7]])
EXTREME = np.array([-1000.0, -60.0, -1.0, 0.0, 1.0, 60.0, 1000.0])
KINK_CASES = [
    Case("abs-at-0", lambda m, a: a.abs(), (KINKS,), gradcheck=False),
    Case("relu-at-0", lambda m, a: a.relu(), (KINKS,), gradcheck=False),
    Case("clamp-at-bounds", lambda m, a: a.clamp(-0.5, 0.5), (KINKS,), gradcheck=False),
    Case("clamp-min-at-bound", lambda m, a: a.clamp(min=0.0), (KINKS,), gradcheck=False),
    Case("maximum-ties", lambda m, a, b: m.maximum(a, b), (KINKS, TIES_B), gradcheck=False),
    Case("minimum-ties", lambda m, a, b: m.minimum(a, b), (KINKS, TIES_B), gradcheck=False),
    Case("pow-2-at-0", lambda m, a: a ** 2, (ZERO_BASE,)),
    Case("pow-3-at-0", lambda m, a: a ** 3, (ZERO_BASE,)),
    Case("pow-0", lambda m, a: a ** 0, (ZERO_BASE,)),
    Case("pow-1-at-0", lambda m, a: a ** 1, (ZERO_BASE,)),
    Case("pow-tensor-zero-base", lambda m, a, b: a ** b, (ZERO_BASE, np.array([2.0, 1.5, 3.0])),
         gradcheck=False),
    Case("mul-by-zero", lambda m, a, b: a * b, (ZERO_BASE, np.zeros(3))),
    Case("sigmoid-extreme", lambda m, a: a.sigmoid(), (EXTREME,), gradcheck=False),
    Case("tanh-extreme", lambda m, a: a.tanh(), (EXTREME,), gradcheck=False),
    Case("exp-very-negative", lambda m, a: (a - 1000.0).exp(), ((3,),)),
]

# where with a Python number on either side (torch allows it)
WHERE_SCALAR_CASES = [
    Case("where-scalar-other", lambda m, a: m.where(a > 0, a, 0.0), ((3, 4),)),
    Case("where-scalar-input", lambda m, a: m.where(a > 0, -1.0, a * 2.0), ((3, 4),)),
    Case("where-method-like-relu", lambda m, a, b: m.where(b > 0, a, a * 0.1), ((3, 4), (4,))),
]

DIFF_CASES = (BINARY_CASES + SCALAR_CASES + UNARY_CASES + MATMUL_CASES + KINK_CASES
              + WHERE_SCALAR_CASES)

_ints = np.array([[1.0, 2.0, 2.0, 0.0], [3.0, 2.0, 1.0, 2.0], [0.0, 0.0, 2.0, 1.0]])
COMPARE = {
    "eq": lambda m, a, b: a == b,
    "ne": lambda m, a, b: a != b,
    "lt": lambda m, a, b: a < b,
    "le": lambda m, a, b: a <= b,
    "gt": lambda m, a, b: a > b,
    "ge": lambda m, a, b: a >= b,
}
COMPARE_CASES = [
    Case(f"{name}-{tag}", fn, (_ints, rhs), differentiable=False)
    for name, fn in COMPARE.items()
    for tag, rhs in [("same", _ints[::-1].copy()), ("bcast", np.array([2.0, 2.0, 1.0, 0.0])),
                     ("col", np.array([[2.0], [1.0], [0.0]])), ("0d", np.array(2.0))]
] + [
    Case("gt-scalar", lambda m, a: a > 1.0, (_ints,), differentiable=False),
    Case("eq-scalar-lhs", lambda m, a: 2.0 == a, (_ints,), differentiable=False),
    Case("le-int-scalar", lambda m, a: a <= 1, (_ints,), differentiable=False),
]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", params(DIFF_CASES + COMPARE_CASES))
def test_matches_torch(case, dtype):
    run_case_against_torch(case, dtype)


@pytest.mark.parametrize("case", params(DIFF_CASES))
def test_gradcheck(case):
    run_case_gradcheck(case)


@pytest.mark.parametrize("case", params(DIFF_CASES + COMPARE_CASES))
def test_float32_stays_float32(case):
    run_case_float32_dtypes(case)


def test_extreme_inputs_do_not_warn():
    import warnings

    x = dg.tensor(EXTREME, dtype=dg.float32, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = x.sigmoid().sum() + x.tanh().sum()
        y.backward()
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.sigmoid().detach().numpy()[[0, -1]], [0.0, 1.0], atol=1e-30)


def test_pow_zero_base_does_not_warn():
    import warnings

    a = dg.tensor(ZERO_BASE, requires_grad=True)
    b = dg.tensor([2.0, 1.5, 3.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (a ** b).sum().backward()
    assert np.isfinite(a.grad.numpy()).all() and np.isfinite(b.grad.numpy()).all()


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
def test_add_broadcast_error_names_op_and_shapes():
    with pytest.raises(ValueError) as info:
        dg.ones(3, 4) + dg.ones(2, 4)
    msg = str(info.value)
    assert "add" in msg
    assert "(3, 4)" in msg and "(2, 4)" in msg


@pytest.mark.parametrize("name, fn", [
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b),
])
def test_binary_broadcast_error_names_shapes(name, fn):
    with pytest.raises(ValueError) as info:
        fn(dg.ones(3, 4), dg.ones(2, 4))
    msg = str(info.value)
    assert "(3, 4)" in msg and "(2, 4)" in msg


def test_matmul_shape_error_names_op_and_shapes():
    a = dg.ones(32, 100)
    b = dg.ones(784, 10)
    for op in (lambda: a @ b, lambda: dg.matmul(a, b)):
        with pytest.raises(ValueError) as info:
            op()
        msg = str(info.value)
        assert "matmul" in msg
        assert "(32, 100)" in msg and "(784, 10)" in msg


def test_matmul_batch_mismatch_raises():
    with pytest.raises(ValueError) as info:
        dg.ones(2, 3, 4) @ dg.ones(3, 4, 5)
    assert "matmul" in str(info.value)


def test_matmul_inner_mismatch_1d():
    with pytest.raises(ValueError) as info:
        dg.ones(3) @ dg.ones(4)
    msg = str(info.value)
    assert "matmul" in msg and "(3,)" in msg and "(4,)" in msg


def test_matmul_0d_raises():
    with pytest.raises((ValueError, RuntimeError)):
        dg.matmul(dg.tensor(2.0), dg.ones(3))


@pytest.mark.parametrize("name, fn", [
    ("maximum", lambda a, b: dg.maximum(a, b)),
    ("where", lambda a, b: dg.where(a > 0, a, b)),
    ("pow", lambda a, b: a ** b),
])
def test_other_broadcast_errors(name, fn):
    with pytest.raises(ValueError) as info:
        fn(dg.ones(3, 4), dg.ones(2, 4))
    msg = str(info.value)
    assert "(3, 4)" in msg and "(2, 4)" in msg


def test_backward_gradient_wrong_shape_raises():
    x = dg.ones(2, 3, requires_grad=True)
    with pytest.raises((ValueError, RuntimeError)) as info:
        (x * 2.0).backward(gradient=dg.ones(3, 2))
    msg = str(info.value)
    assert "(2, 3)" in msg and "(3, 2)" in msg


def test_retain_graph_then_free():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])
    with pytest.raises(RuntimeError) as info:
        y.backward()
    assert "retain_graph" in str(info.value)


def test_backward_without_requires_grad_raises():
    x = dg.ones(3)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError):
        y.backward()


def test_second_backward_without_retain_graph_raises():
    x = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).exp().sum()
    y.backward()
    with pytest.raises(RuntimeError) as info:
        y.backward()
    assert "retain_graph" in str(info.value)


def test_retain_graph_twice_accumulates():
    x = dg.tensor([1.0, 2.0, 3.0], dtype=dg.float64, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0, 12.0])


@pytest.mark.parametrize("make", [
    pytest.param(lambda a, b: a * b, id="mul-saves-input"),
    pytest.param(lambda a, b: b.sin() + a, id="sin-saves-input"),
    pytest.param(lambda a, b: a @ b, id="matmul"),
])
def test_inplace_modification_of_saved_tensor_raises(make):
    a = dg.ones(3, 3, requires_grad=True)
    b = dg.full((3, 3), 2.0, requires_grad=True)
    y = make(a, b)
    with dg.no_grad():
        b.add_(1)
    with pytest.raises(RuntimeError) as info:
        y.sum().backward()
    assert "in-place" in str(info.value)


def test_inplace_modification_of_saved_output_raises():
    # exp saves its output, so changing the output in place invalidates the backward.
    x = dg.ones(3, requires_grad=True)
    y = x.exp()
    with dg.no_grad():
        y.add_(1)
    with pytest.raises(RuntimeError) as info:
        y.sum().backward()
    assert "in-place" in str(info.value)


def test_inplace_on_unsaved_input_is_allowed():
    # add does not need its inputs in backward, so torch allows this.
    a = dg.ones(3, requires_grad=True)
    b = dg.ones(3, requires_grad=True)
    y = a + b
    with dg.no_grad():
        b.add_(1)
    y.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.ones(3))


def test_backward_on_non_scalar_needs_gradient():
    x = dg.ones(2, 3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError) as info:
        y.backward()
    assert "gradient" in str(info.value)


def test_backward_with_explicit_gradient():
    x = dg.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=dg.float64, requires_grad=True)
    y = x * x
    y.backward(gradient=dg.tensor([[1.0, 0.0], [2.0, 1.0]], dtype=dg.float64))
    np.testing.assert_allclose(x.grad.numpy(), [[2.0, 0.0], [12.0, 8.0]])


def test_comparisons_do_not_require_grad():
    x = dg.tensor([1.0, -2.0, 3.0], requires_grad=True)
    for r in (x > 0, x < 0, x == 1.0, x != 1.0, x >= 0, x <= 0):
        assert r.dtype == dg.bool
        assert r.requires_grad is False


# --------------------------------------------------------------------------------------------
# dtype rules
# --------------------------------------------------------------------------------------------
def test_float32_op_float32_stays_float32():
    a = dg.ones(2, 3, dtype=dg.float32)
    b = dg.ones(3, dtype=dg.float32)
    for out in (a + b, a - b, a * b, a / b, a ** b, dg.maximum(a, b), a @ b.reshape(3, 1)):
        assert out.dtype == dg.float32


@pytest.mark.parametrize("scalar", [2.5, 2, np.float64(2.5)], ids=["float", "int", "np-float64"])
def test_float32_with_python_scalar_stays_float32(scalar):
    a = dg.ones(2, 3, dtype=dg.float32)
    for out in (a + scalar, scalar + a, a - scalar, scalar - a, a * scalar, scalar * a,
                a / scalar, scalar / a, a ** scalar, scalar ** a):
        assert isinstance(out, dg.Tensor), type(out)
        assert out.dtype == dg.float32


def test_default_dtypes():
    assert dg.tensor([1.0, 2.0]).dtype == dg.float32
    assert dg.tensor([1, 2]).dtype == dg.int64
    assert dg.tensor([True, False]).dtype == dg.bool
    assert dg.ones(2).dtype == dg.float32
    assert dg.tensor(np.array([1.0, 2.0])).dtype == dg.float64  # as torch.tensor(ndarray)


def test_float32_with_int64_tensor_is_float32():
    a = dg.ones(2, 3, dtype=dg.float32)
    i = dg.tensor([1, 2, 3])
    assert i.dtype == dg.int64
    for out in (a + i, i + a, a * i, a - i, a / i):
        assert out.dtype == dg.float32


@requires_torch
def test_promotion_matches_torch():
    pairs = [(np.float32, np.int64), (np.float64, np.float32), (np.int64, np.float64),
             (np.int64, np.int64)]
    for da, db in pairs:
        a = np.array([1, 2, 3], dtype=da)
        b = np.array([2, 1, 1], dtype=db)
        expected = (torch.tensor(a) + torch.tensor(b)).numpy().dtype
        assert (dg.tensor(a) + dg.tensor(b)).dtype == expected, (da, db)
        expected = (torch.tensor(a) * 2.5).numpy().dtype
        assert (dg.tensor(a) * 2.5).dtype == expected, da


@pytest.mark.parametrize("op", ["exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid"])
def test_float_ops_on_int_tensor_give_float32(op):
    # torch computes these in the default float dtype (float32), never float64
    i = dg.tensor([1, 2, 4])
    out = getattr(i, op)()
    assert out.dtype == dg.float32
    expected = getattr(np, op, None)
    if op == "sigmoid":
        expected = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(out.numpy(), expected(np.array([1.0, 2.0, 4.0])), rtol=1e-6)


@pytest.mark.parametrize("op", ["relu", "abs", "neg"])
def test_int_preserving_ops_on_int_tensor(op):
    out = getattr(dg.tensor([-1, 2]), op)()
    assert out.dtype == dg.int64


def test_int_true_division_gives_float():
    i = dg.tensor([1, 2, 3])
    assert (i / 2).dtype == dg.float32
    assert np.issubdtype(np.dtype((i / i).dtype), np.floating)


# --------------------------------------------------------------------------------------------
# tensor basics: creation, seeds, conversions, repr, in-place ops
# --------------------------------------------------------------------------------------------
def _np(t):
    return np.asarray(t.numpy())


@pytest.mark.parametrize("make, expected", [
    (lambda: dg.zeros(2, 3), np.zeros((2, 3), np.float32)),
    (lambda: dg.zeros((2, 3)), np.zeros((2, 3), np.float32)),
    (lambda: dg.zeros(4, dtype=dg.float64), np.zeros(4, np.float64)),
    (lambda: dg.ones(2, 3), np.ones((2, 3), np.float32)),
    (lambda: dg.ones((3,), dtype=dg.int64), np.ones(3, np.int64)),
    (lambda: dg.full((2, 3), 7.5), np.full((2, 3), 7.5, np.float32)),
    (lambda: dg.full((2,), 7), np.full(2, 7, np.int64)),  # torch infers int64 from an int
    (lambda: dg.full((2, 2), 1.0, dtype=dg.float64), np.full((2, 2), 1.0)),
    (lambda: dg.arange(5), np.arange(5, dtype=np.int64)),
    (lambda: dg.arange(1, 10, 3), np.arange(1, 10, 3, dtype=np.int64)),
    (lambda: dg.arange(0, 1, 0.25), np.arange(0, 1, 0.25, dtype=np.float32)),
    (lambda: dg.arange(5.0), np.arange(5, dtype=np.float32)),
    (lambda: dg.arange(4, dtype=dg.float64), np.arange(4, dtype=np.float64)),
    (lambda: dg.linspace(0, 1, 5), np.linspace(0, 1, 5, dtype=np.float32)),
    (lambda: dg.linspace(-2, 2, 1), np.array([-2.0], np.float32)),
    (lambda: dg.eye(3), np.eye(3, dtype=np.float32)),
    (lambda: dg.eye(2, 3), np.eye(2, 3, dtype=np.float32)),
    (lambda: dg.tensor([[1, 2], [3, 4]]), np.array([[1, 2], [3, 4]], np.int64)),
    (lambda: dg.tensor([[1, 2]], dtype=dg.float32), np.array([[1, 2]], np.float32)),
    (lambda: dg.tensor(3.5), np.array(3.5, np.float32)),
    (lambda: dg.tensor([]), np.zeros((0,), np.float32)),
], ids=["zeros", "zeros-tuple", "zeros-f64", "ones", "ones-int", "full", "full-int",
        "full-f64", "arange", "arange-step", "arange-float", "arange-float-end", "arange-dtype",
        "linspace", "linspace-1", "eye", "eye-rect", "tensor-int", "tensor-dtype", "tensor-0d",
        "tensor-empty"])
def test_creation_values_and_dtypes(make, expected):
    t = make()
    assert isinstance(t, dg.Tensor)
    assert t.shape == expected.shape
    assert t.dtype == expected.dtype
    np.testing.assert_array_equal(_np(t), expected)
    assert t.requires_grad is False


@pytest.mark.parametrize("name", ["zeros", "ones", "empty", "rand", "randn"])
def test_shape_only_creation(name):
    f = getattr(dg, name)
    for t in (f(2, 3), f((2, 3)), f(2, 3, dtype=dg.float64)):
        assert t.shape == (2, 3)
        assert t.dtype in (dg.float32, dg.float64)
    assert f(2, 3).dtype == dg.float32
    assert f(2, 3, dtype=dg.float64).dtype == dg.float64
    assert f(2, requires_grad=True).requires_grad is True


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "empty_like", "rand_like",
                                  "randn_like"])
def test_like_creation(name):
    f = getattr(dg, name)
    src = dg.ones(2, 3, dtype=dg.float64, requires_grad=True)
    t = f(src)
    assert t.shape == (2, 3) and t.dtype == dg.float64
    assert t.requires_grad is False
    assert f(src, dtype=dg.float32).dtype == dg.float32


def test_full_like():
    t = dg.full_like(dg.ones(2, 3), 4.0)
    np.testing.assert_array_equal(_np(t), np.full((2, 3), 4.0, np.float32))
    assert t.dtype == dg.float32
    np.testing.assert_array_equal(_np(dg.zeros_like(dg.ones(2))), [0, 0])
    np.testing.assert_array_equal(_np(dg.ones_like(dg.zeros(2, dtype=dg.int64))), [1, 1])


@requires_torch
def test_creation_dtypes_match_torch():
    pairs = [
        (dg.full((2,), 7), torch.full((2,), 7)),
        (dg.full((2,), 7.0), torch.full((2,), 7.0)),
        (dg.full((2,), True), torch.full((2,), True)),
        (dg.arange(3), torch.arange(3)),
        (dg.arange(0.5, 3), torch.arange(0.5, 3)),
        (dg.tensor([1, 2.5]), torch.tensor([1, 2.5])),
        (dg.tensor(np.array([1, 2], np.int32)).long(), torch.tensor(np.array([1, 2])).long()),
        (dg.linspace(0, 10, 4), torch.linspace(0, 10, 4)),
    ]
    for d, t in pairs:
        assert d.dtype == t.numpy().dtype, (d, t)
        np.testing.assert_allclose(_np(d), t.numpy(), rtol=1e-6)


def test_rand_randn_randint_ranges_and_dtypes():
    r = dg.rand(200)
    assert r.dtype == dg.float32 and r.shape == (200,)
    assert _np(r).min() >= 0.0 and _np(r).max() < 1.0
    n = dg.randn(2000, dtype=dg.float64)
    assert n.dtype == dg.float64
    assert abs(_np(n).mean()) < 0.1 and 0.9 < _np(n).std() < 1.1
    i = dg.randint(3, 7, (50,))
    assert i.dtype == dg.int64 and i.shape == (50,)
    assert _np(i).min() >= 3 and _np(i).max() < 7
    assert set(np.unique(_np(i))) == {3, 4, 5, 6}
    j = dg.randint(5, (2, 3))
    assert j.shape == (2, 3) and _np(j).min() >= 0 and _np(j).max() < 5


@pytest.mark.parametrize("make", [
    lambda: dg.rand(3, 4), lambda: dg.randn(3, 4), lambda: dg.randint(0, 100, (3, 4)),
    lambda: dg.rand_like(dg.ones(3, 4)), lambda: dg.ones(3, 4).uniform_(-1, 1),
    lambda: dg.ones(3, 4).normal_(0.0, 2.0),
], ids=["rand", "randn", "randint", "rand_like", "uniform_", "normal_"])
def test_manual_seed_reproducible(make):
    dg.manual_seed(123)
    a = _np(make()).copy()
    b = _np(make()).copy()
    dg.manual_seed(123)
    c = _np(make()).copy()
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)
    dg.manual_seed(124)
    assert not np.array_equal(a, _np(make()))


def test_manual_seed_independent_of_numpy_global_state():
    dg.manual_seed(7)
    a = _np(dg.randn(5)).copy()
    dg.manual_seed(7)
    np.random.seed(999)
    np.random.rand(10)
    b = _np(dg.randn(5)).copy()
    np.testing.assert_array_equal(a, b)


def test_from_numpy_shares_memory_and_dtype():
    arr = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = dg.from_numpy(arr)
    assert t.dtype == dg.float64 and t.shape == (2, 3)
    arr[0, 0] = 42.0
    assert t[0, 0].item() == 42.0


def test_tensor_copies_its_input():
    arr = np.ones(3)
    t = dg.tensor(arr)
    arr[0] = 5.0
    assert t[0].item() == 1.0


def test_attributes():
    t = dg.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and isinstance(t.shape, tuple)
    assert t.ndim == 3
    assert tuple(t.size()) == (2, 3, 4)
    assert t.size(1) == 3 and t.size(-1) == 4
    assert t.numel() == 24
    assert len(t) == 2
    assert dg.tensor(1.0).ndim == 0 and dg.tensor(1.0).numel() == 1
    with pytest.raises(TypeError):
        len(dg.tensor(1.0))


def test_item_tolist_numpy_round_trips():
    data = [[1.5, -2.0], [0.25, 4.0]]
    t = dg.tensor(data)
    assert t.tolist() == data
    assert isinstance(t.tolist()[0][0], float)
    assert dg.tensor(data, dtype=dg.float64).tolist() == data
    ints = dg.tensor([[1, 2], [3, 4]])
    assert ints.tolist() == [[1, 2], [3, 4]] and isinstance(ints.tolist()[0][0], int)
    s = dg.tensor(2.5)
    assert s.item() == 2.5 and isinstance(s.item(), float)
    assert isinstance(dg.tensor(3).item(), int)
    assert dg.tensor(2.5).tolist() == 2.5
    assert dg.tensor([[7.0]]).item() == 7.0
    with pytest.raises((ValueError, RuntimeError)):
        dg.tensor([1.0, 2.0]).item()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    back = dg.tensor(arr).numpy()
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_array_equal(np.asarray(dg.tensor(arr)), arr)
    np.testing.assert_array_equal(np.array(dg.tensor(arr), dtype=np.float64), arr)
    y = dg.tensor(arr, requires_grad=True) * 2.0
    np.testing.assert_array_equal(y.detach().numpy(), arr * 2)


def test_repr():
    r = repr(dg.tensor([1.0, 2.0]))
    assert "tensor(" in r
    assert "requires_grad" not in r
    r = repr(dg.tensor([1.0, 2.0], requires_grad=True))
    assert "tensor(" in r and "requires_grad=True" in r
    assert "1." in r and "2." in r
    assert "dtype" in repr(dg.tensor([1.0], dtype=dg.float64)) or "float64" in repr(
        dg.tensor([1.0], dtype=dg.float64))
    assert len(repr(dg.zeros(100, 100))) < 5000  # large tensors are summarised
    assert "tensor(" in str(dg.ones(2))


def test_in_place_ops():
    x = dg.ones(3)
    assert x.add_(2.0) is x
    np.testing.assert_array_equal(_np(x), [3.0, 3.0, 3.0])
    assert x.mul_(2.0) is x
    np.testing.assert_array_equal(_np(x), [6.0, 6.0, 6.0])
    x.add_(dg.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(_np(x), [7.0, 8.0, 9.0])
    x.mul_(dg.tensor([0.0, 1.0, 0.5]))
    np.testing.assert_array_equal(_np(x), [0.0, 8.0, 4.5])
    assert x.fill_(5.0) is x
    np.testing.assert_array_equal(_np(x), [5.0, 5.0, 5.0])
    assert x.copy_(dg.tensor([1.0, 2.0, 3.0])) is x
    np.testing.assert_array_equal(_np(x), [1.0, 2.0, 3.0])
    assert x.zero_() is x
    np.testing.assert_array_equal(_np(x), [0.0, 0.0, 0.0])
    assert x.dtype == dg.float32
    m = dg.zeros(2, 3)
    m.add_(dg.tensor([1.0, 2.0, 3.0]))  # broadcast into self
    np.testing.assert_array_equal(_np(m), [[1.0, 2.0, 3.0]] * 2)
    m.copy_(dg.tensor([4.0, 5.0, 6.0], dtype=dg.float64))  # broadcast + cast
    assert m.dtype == dg.float32
    np.testing.assert_array_equal(_np(m), [[4.0, 5.0, 6.0]] * 2)


def test_uniform_normal_in_place():
    x = dg.empty(1000)
    assert x.uniform_(-2.0, 3.0) is x
    assert _np(x).min() >= -2.0 and _np(x).max() < 3.0 and x.dtype == dg.float32
    assert x.normal_(1.0, 0.5) is x
    assert abs(_np(x).mean() - 1.0) < 0.1 and abs(_np(x).std() - 0.5) < 0.1


def test_in_place_on_leaf_under_no_grad_keeps_leaf():
    w = dg.ones(3, requires_grad=True)
    with dg.no_grad():
        w.mul_(0.5)
        w.add_(dg.ones(3))
    assert w.is_leaf and w.requires_grad
    np.testing.assert_array_equal(_np(w.detach()), [1.5, 1.5, 1.5])
    (w * w).sum().backward()
    np.testing.assert_allclose(_np(w.grad), [3.0, 3.0, 3.0])
