"""F.linear and nn.Linear against torch and finite differences, for every input rank."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import FLOAT_DTYPES, Case, params, run_case_against_torch, run_case_gradcheck

import deepgrad as dg


def F(m):
    return m.nn.functional


def _transposed(m, x):
    # a non-contiguous input: the flattening for the GEMM must copy, not reinterpret
    return x.transpose(0, 1)


CASES = [
    Case("1d", lambda m, x, w, b: F(m).linear(x, w, b), [(4,), (3, 4), (3,)]),
    Case("2d", lambda m, x, w, b: F(m).linear(x, w, b), [(5, 4), (3, 4), (3,)]),
    Case("3d", lambda m, x, w, b: F(m).linear(x, w, b), [(2, 5, 4), (3, 4), (3,)]),
    Case("4d", lambda m, x, w, b: F(m).linear(x, w, b), [(2, 1, 3, 4), (6, 4), (6,)]),
    Case("3d-no-bias", lambda m, x, w: F(m).linear(x, w), [(2, 5, 4), (3, 4)]),
    Case("3d-noncontiguous", lambda m, x, w, b: F(m).linear(_transposed(m, x), w, b),
         [(5, 2, 4), (3, 4), (3,)]),
    Case("3d-empty-batch", lambda m, x, w, b: F(m).linear(x, w, b), [(0, 5, 4), (3, 4), (3,)]),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", params(CASES))
def test_linear_against_torch(case, dtype):
    run_case_against_torch(case, dtype)


@pytest.mark.parametrize("case", params([c for c in CASES if "empty" not in c.id]))
def test_linear_gradcheck(case):
    run_case_gradcheck(case)


def test_linear_shape_error_names_the_shapes():
    with pytest.raises(ValueError, match=r"linear: expected input with last dim 4 .* \(2, 5, 3\)"):
        F(dg).linear(dg.zeros(2, 5, 3), dg.zeros(6, 4))


def test_linear_module_keeps_leading_dims():
    layer = dg.nn.Linear(4, 3)
    x = dg.tensor(np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32))
    y = layer(x)
    assert y.shape == (2, 5, 3)
    np.testing.assert_allclose(y.detach().numpy()[1, 2],
                               layer.weight.data @ x.numpy()[1, 2] + layer.bias.data,
                               rtol=1e-5, atol=1e-6)
