"""Reductions: sum mean var std max min argmax argmin logsumexp prod all."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import deepgrad as dg
from helpers import (
    Case,
    distinct,
    params,
    requires_torch,
    run_case_against_torch,
    run_case_float32_dtypes,
    run_case_gradcheck,
    torch,
)

SHAPE = (2, 3, 4)
DIMS = [0, 1, -1, (0, 2), (-1, -3), (1,)]


def _dim_id(dim) -> str:
    if isinstance(dim, tuple):
        return "dims" + "_".join(str(d) for d in dim)
    return f"dim{dim}"


def _with_dims(name, call, dims, gen=None, inputs=(SHAPE,), **kw):
    """Cases for a.<op>() and a.<op>(dim=d, keepdim=k) for every d in dims."""
    extra = {} if gen is None else {"gen": gen}
    cases = [Case(f"{name}-all", lambda m, a: call(a), inputs, **extra, **kw)]
    for d in dims:
        for k in (False, True):
            cases.append(Case(f"{name}-{_dim_id(d)}-keep{int(k)}",
                              lambda m, a, d=d, k=k: call(a, dim=d, keepdim=k),
                              inputs, **extra, **kw))
    return cases


CASES = []
CASES += _with_dims("sum", lambda a, **kw: a.sum(**kw), DIMS)
CASES += _with_dims("mean", lambda a, **kw: a.mean(**kw), DIMS)
CASES += _with_dims("logsumexp", lambda a, **kw: a.logsumexp(**kw), DIMS)[1:]  # torch needs dim
CASES += _with_dims("var", lambda a, **kw: a.var(**kw), [1, -1, (0, 2)])
CASES += _with_dims("std", lambda a, **kw: a.std(**kw), [1, -1, (0, 2)])
CASES += _with_dims("max", lambda a, **kw: a.max(**kw), [0, 1, -1], gen=distinct)
CASES += _with_dims("min", lambda a, **kw: a.min(**kw), [0, 1, -1], gen=distinct)
CASES += _with_dims("prod", lambda a, **kw: a.prod(**kw), [0, 1, -1])

CASES += [
    Case("sum-0d", lambda m, a: a.sum(), ((),)),
    Case("sum-1d", lambda m, a: a.sum(), ((5,),)),
    Case("sum-positional-dim", lambda m, a: a.sum(1), (SHAPE,)),
    Case("mean-0d", lambda m, a: a.mean(), ((),)),
    Case("mean-1d-dim0", lambda m, a: a.mean(dim=0), ((5,),)),
    Case("mean-positional-dim", lambda m, a: a.mean(-1, True), (SHAPE,)),
    Case("logsumexp-large", lambda m, a: (a + 1000.0).logsumexp(dim=1), ((3, 4),)),
    Case("logsumexp-very-negative", lambda m, a: (a - 1000.0).logsumexp(dim=-1), ((3, 4),)),
    Case("max-1d-dim0", lambda m, a: a.max(dim=0), ((5,),), gen=distinct),
    Case("sum-0d-dim0", lambda m, a: a.sum(dim=0), ((),)),
    Case("mean-keepdim-tuple-all", lambda m, a: a.mean(dim=(0, 1, 2), keepdim=True), (SHAPE,)),
    Case("var-correction2", lambda m, a: a.var(dim=1, correction=2), ((3, 5),)),
    Case("std-keepdim-positional", lambda m, a: a.std(0, keepdim=True), ((4, 3),)),
    Case("logsumexp-with-neg-inf", lambda m, a: (a + m.tensor(
        np.array([0.0, -np.inf, 0.0, 0.0]), dtype=a.dtype)).logsumexp(dim=1), ((3, 4),)),
    Case("logsumexp-fn", lambda m, a: m.logsumexp(a, dim=1), ((3, 4),)),
]

for _op in ("var", "std"):
    CASES += [
        Case(f"{_op}-unbiased-false", lambda m, a, o=_op: getattr(a, o)(unbiased=False), (SHAPE,)),
        Case(f"{_op}-unbiased-true", lambda m, a, o=_op: getattr(a, o)(unbiased=True), (SHAPE,)),
        Case(f"{_op}-dim1-unbiased-false",
             lambda m, a, o=_op: getattr(a, o)(dim=1, unbiased=False), (SHAPE,)),
        Case(f"{_op}-dim1-correction0",
             lambda m, a, o=_op: getattr(a, o)(dim=1, correction=0), (SHAPE,)),
        Case(f"{_op}-dim1-correction1",
             lambda m, a, o=_op: getattr(a, o)(dim=1, correction=1), (SHAPE,)),
        Case(f"{_op}-dims02-correction0-keep",
             lambda m, a, o=_op: getattr(a, o)(dim=(0, 2), correction=0, keepdim=True), (SHAPE,)),
        Case(f"{_op}-correction0-all", lambda m, a, o=_op: getattr(a, o)(correction=0), (SHAPE,)),
        Case(f"{_op}-positional-dim", lambda m, a, o=_op: getattr(a, o)(-1), (SHAPE,)),
        Case(f"{_op}-1d", lambda m, a, o=_op: getattr(a, o)(), ((6,),)),
    ]

# ties: torch spreads the grad evenly in the full reduction, picks the first index with dim.
TIE_MAX = np.array([[1.0, 3.0, 3.0], [0.0, 3.0, 2.0]])
TIE_MIN = np.array([[0.0, 3.0, 0.0], [2.0, 1.0, 0.0]])
TIE_DIM = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0], [2.0, -1.0, 2.0]])
CASES += [
    Case("max-all-ties", lambda m, a: a.max(), (TIE_MAX,), gradcheck=False),
    Case("min-all-ties", lambda m, a: a.min(), (TIE_MIN,), gradcheck=False),
    Case("max-dim1-ties", lambda m, a: a.max(dim=1), (TIE_DIM,), gradcheck=False),
    Case("max-dim0-ties-keep", lambda m, a: a.max(dim=0, keepdim=True), (TIE_DIM,),
         gradcheck=False),
    Case("min-dim1-ties", lambda m, a: a.min(dim=1), (TIE_DIM,), gradcheck=False),
    Case("min-dim-1-ties", lambda m, a: a.min(-1), (TIE_DIM,), gradcheck=False),
    Case("max-then-sub", lambda m, a: a - a.max(dim=-1, keepdim=True)[0], ((3, 4),),
         gen=distinct),
    Case("max-1d", lambda m, a: a.max(), ((5,),), gen=distinct),
    Case("max-0d", lambda m, a: a.max(), ((),)),
]

# prod with zeros: row 0 one zero, row 1 none, row 2 two zeros; column 1 two zeros.
ZEROS = np.array([[1.5, 0.0, 2.0, -0.5], [0.7, 1.2, -1.1, 0.9], [0.0, 0.0, 1.3, 2.0]])
ONE_ZERO = np.array([[1.5, 0.0, 2.0], [0.5, -1.0, 1.2]])
CASES += [
    Case("prod-zeros-dim1", lambda m, a: a.prod(dim=1), (ZEROS,)),
    Case("prod-zeros-dim0", lambda m, a: a.prod(dim=0), (ZEROS,)),
    Case("prod-zeros-dim-1-keep", lambda m, a: a.prod(-1, keepdim=True), (ZEROS,)),
    Case("prod-zeros-all", lambda m, a: a.prod(), (ZEROS,)),
    Case("prod-one-zero-all", lambda m, a: a.prod(), (ONE_ZERO,)),
    Case("prod-all-zero", lambda m, a: a.prod(), (np.zeros((2, 2)),)),
]

# integer / bool results: forward only
ARG = np.array([[0.5, 2.0, 2.0, -1.0], [3.0, -2.0, 3.0, 0.1], [-1.0, -1.0, 0.0, -1.0]])
NONDIFF = [
    Case("argmax-all", lambda m, a: a.argmax(), (ARG,)),
    Case("argmax-dim1", lambda m, a: a.argmax(dim=1), (ARG,)),
    Case("argmax-all-keepdim", lambda m, a: a.argmax(keepdim=True), (ARG,)),
    Case("argmin-all-keepdim", lambda m, a: a.argmin(keepdim=True), (SHAPE,)),
    Case("argmax-dim0-keep", lambda m, a: a.argmax(dim=0, keepdim=True), (ARG,)),
    Case("argmax-dim-1", lambda m, a: a.argmax(-1), (ARG,)),
    Case("argmin-all", lambda m, a: a.argmin(), (ARG,)),
    Case("argmin-dim1", lambda m, a: a.argmin(dim=1), (ARG,)),
    Case("argmin-dim0-keep", lambda m, a: a.argmin(dim=0, keepdim=True), (ARG,)),
    Case("argmax-fn", lambda m, a: m.argmax(a, dim=1), (ARG,)),
    Case("argmax-3d", lambda m, a: a.argmax(dim=2), (SHAPE,)),
    Case("all-full", lambda m, a: (a > -1.5).all(), (ARG,)),
    Case("all-dim1", lambda m, a: (a > -1.5).all(dim=1), (ARG,)),
    Case("all-dim0-keep", lambda m, a: (a > -1.5).all(dim=0, keepdim=True), (ARG,)),
    Case("all-dims-tuple", lambda m, a: (a > 0).all(dim=(0, 2)), (SHAPE,)),
    Case("all-dims-tuple-keep", lambda m, a: (a > -2).all(dim=(-1, 0), keepdim=True), (SHAPE,)),
    Case("all-false", lambda m, a: (a > 100).all(), (ARG,)),
]
for _c in NONDIFF:
    _c.differentiable = False


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", params(CASES + NONDIFF))
def test_matches_torch(case, dtype):
    run_case_against_torch(case, dtype)


@pytest.mark.parametrize("case", params(CASES))
def test_gradcheck(case):
    run_case_gradcheck(case)


@pytest.mark.parametrize("case", params(CASES + NONDIFF))
def test_float32_stays_float32(case):
    run_case_float32_dtypes(case)


# --------------------------------------------------------------------------------------------
# specific behaviour
# --------------------------------------------------------------------------------------------
def test_max_with_dim_returns_namedtuple():
    x = dg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]], requires_grad=True)
    out = x.max(dim=1)
    values, indices = out
    assert out.values is values and out.indices is indices
    np.testing.assert_array_equal(values.detach().numpy(), [5.0, 7.0])
    np.testing.assert_array_equal(indices.numpy(), [1, 0])
    assert indices.dtype == dg.int64
    assert indices.requires_grad is False
    assert values.requires_grad is True
    mn = x.min(dim=0)
    np.testing.assert_array_equal(mn.values.detach().numpy(), [1.0, 0.0, 2.0])
    np.testing.assert_array_equal(mn.indices.numpy(), [0, 1, 0])


def test_max_without_dim_is_scalar_tensor():
    x = dg.tensor([[1.0, 5.0], [7.0, 0.0]])
    m = x.max()
    assert isinstance(m, dg.Tensor)
    assert m.shape == ()
    assert m.item() == 7.0
    assert x.min().item() == 0.0


def test_max_full_ties_spread_grad_evenly():
    x = dg.tensor(TIE_MAX, dtype=dg.float64, requires_grad=True)
    x.max().backward()
    expected = np.zeros_like(TIE_MAX)
    expected[TIE_MAX == 3.0] = 1.0 / 3.0
    np.testing.assert_allclose(x.grad.numpy(), expected)


def test_max_dim_ties_grad_to_first_index():
    x = dg.tensor(TIE_DIM, dtype=dg.float64, requires_grad=True)
    x.max(dim=1).values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0], [1, 0, 0]])


def test_reductions_keep_float32():
    x = dg.ones(2, 3, 4, dtype=dg.float32)
    for out in (x.sum(), x.mean(dim=1), x.var(dim=(0, 2)), x.std(), x.max(), x.max(dim=1)[0],
                x.logsumexp(dim=2), x.prod(dim=0)):
        assert out.dtype == dg.float32


def test_sum_of_int_and_bool():
    i = dg.tensor([[1, 2], [3, 4]])
    assert i.sum().item() == 10
    assert i.sum().dtype == dg.int64
    b = dg.tensor([True, False, True])
    assert not b.all().item()
    assert dg.tensor([True, True]).all().item()
    assert b.sum().item() == 2


def test_sum_and_mean_grads_are_broadcast_views_until_a_leaf_owns_them():
    """sum/mean hand back a read-only broadcast view (nothing written per element); a leaf's
    .grad, a retained grad and accumulation still get arrays of their own."""
    import deepgrad as dg
    from deepgrad.ops.reduce import Mean, Sum

    for op in (Sum(), Mean()):
        op.forward(np.ones((64, 64), np.float32), (0, 1), False)
        view = op.backward(np.float32(1.0))[0]
        assert view.shape == (64, 64) and view.strides == (0, 0) and not view.flags.writeable
        op.forward(np.ones((3, 4), np.float32), (0, 1), False)  # small: a dense copy
        assert op.backward(np.float32(1.0))[0].flags.c_contiguous
    x = dg.tensor(np.arange(8192, dtype=np.float32).reshape(64, 128), requires_grad=True)
    for loss in (lambda t: t.sum(), lambda t: t.mean(), lambda t: t.sum(dim=0)):
        x.grad = None
        out = loss(x)
        out.backward(dg.ones(out.shape))
        gx = x.grad.numpy()
        assert gx.flags.writeable and gx.flags.c_contiguous and gx.strides == (512, 4)
        gx += 1  # the leaf owns it
    x.grad = None
    x.sum().backward()
    x.sum().backward()  # accumulates into the leaf's own array
    np.testing.assert_array_equal(x.grad.numpy(), np.full((64, 128), 2, np.float32))
    h = x * 3
    h.retain_grad()
    h.mean().backward()
    assert h.grad.numpy().flags.writeable
    np.testing.assert_allclose(h.grad.numpy(), np.full((64, 128), 1 / 8192, np.float32))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("shape,dim", [((4, 8), None), ((4, 8), 0), ((4, 8), 1),
                                       ((3, 5, 7), (0, 2)), ((1000,), None), ((0, 3), 0)])
def test_sum_mean_max_give_numpys_bits(dtype, shape, dim):
    """sum, mean and amax call NumPy's reductions directly (not np.sum, np.mean, np.max, whose
    Python layers cost microseconds a call): the results are the same arrays, dtypes and bits."""
    x = (np.random.default_rng(5).standard_normal(shape) * 100).astype(dtype)
    t = dg.from_numpy(x)
    axis = dim if dim is None or isinstance(dim, tuple) else (dim,)
    empty_warning = pytest.warns(RuntimeWarning) if x.size == 0 else contextlib.nullcontext()
    with np.errstate(all="ignore"), empty_warning:
        got_mean = t.mean(dim).numpy()
        want_mean = np.asarray(np.mean(x, axis=axis))
    for got, want in ((t.sum(dim).numpy(), np.asarray(np.sum(x, axis=axis))),
                      (got_mean, want_mean)):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want, equal_nan=True)
    if x.size and dtype != np.complex64:
        got = t.amax(dim).numpy()
        want = np.asarray(np.max(x, axis=axis))
        assert got.dtype == want.dtype and np.array_equal(got, want)
