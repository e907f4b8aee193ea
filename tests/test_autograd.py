"""Autograd engine: deep graphs, accumulation, hooks, grad modes, leaves, detach, custom Functions."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from helpers import run_gradcheck


def f64(data, requires_grad=True):
    return dg.tensor(np.asarray(data, dtype=np.float64), dtype=dg.float64,
                     requires_grad=requires_grad)


# --------------------------------------------------------------------------------------------
# deep graphs and accumulation
# --------------------------------------------------------------------------------------------
def test_deep_mul_chain_has_no_recursion_limit():
    x = f64([1.0, 2.0])
    y = x
    for _ in range(10000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10000] * 2, rtol=1e-9)


def test_deep_add_chain_has_no_recursion_limit():
    x = f64(0.5)
    y = x
    for _ in range(10000):
        y = y + 1
    y.backward()
    assert y.item() == pytest.approx(10000.5)
    assert x.grad.item() == pytest.approx(1.0)


def test_grad_accumulates_across_backward_calls():
    x = f64([1.0, -2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0 + 2.0, 3.0 - 4.0])
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_grad_zero_in_place_then_accumulate():
    x = f64([1.0, 2.0])
    (x * 2.0).sum().backward()
    x.grad.zero_()
    (x * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_diamond_graph():
    x = f64([0.3, -0.7])
    y = x * 2.0
    z = (y * y + y.exp()).sum()  # dz/dx = 2 * (2y + e^y)
    z.backward()
    yv = 2.0 * np.array([0.3, -0.7])
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * (2.0 * yv + np.exp(yv)), rtol=1e-12)


def test_grad_is_plain_tensor_without_graph():
    x = f64([1.0, 2.0])
    (x * x).sum().backward()
    assert isinstance(x.grad, dg.Tensor)
    assert x.grad.requires_grad is False
    assert x.grad.shape == x.shape
    assert x.grad.dtype == x.dtype


def test_float32_grad_stays_float32():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    w = dg.tensor([[0.5, 1.0], [2.0, 3.0]], requires_grad=True)
    ((w @ x).exp().sum() / 3.0).backward()
    assert x.grad.dtype == dg.float32
    assert w.grad.dtype == dg.float32


def test_unused_leaf_has_no_grad():
    x = f64([1.0])
    unused = f64([2.0])
    (x * 2.0).sum().backward()
    assert unused.grad is None


def test_non_leaf_grad_not_kept():
    x = f64([1.0, 2.0])
    y = x * 2.0
    y.sum().backward()
    assert y.grad is None


def test_backward_with_partial_requires_grad():
    x = f64([1.0, 2.0])
    c = f64([3.0, 4.0], requires_grad=False)
    (x * c).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])
    assert c.grad is None


# --------------------------------------------------------------------------------------------
# hooks
# --------------------------------------------------------------------------------------------
def test_hook_on_leaf_modifies_grad():
    x = f64([1.0, 2.0])
    seen = []

    def hook(g):
        seen.append(g.numpy().copy())
        return g * 10.0

    x.register_hook(hook)
    (x * 3.0).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [3.0, 3.0])
    np.testing.assert_allclose(x.grad.numpy(), [30.0, 30.0])


def test_hook_on_intermediate_modifies_upstream_grad():
    x = f64([1.0, 2.0])
    y = x * 2.0
    y.register_hook(lambda g: g * 0.5)
    (y * y).sum().backward()  # dL/dy = 2y, halved, times dy/dx = 2
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * (2.0 * np.array([2.0, 4.0])) * 0.5)


def test_hook_called_once_with_summed_grad():
    x = f64([1.0, 2.0])
    y = x * 2.0
    calls = []

    def hook(g):
        calls.append(g.numpy().copy())

    y.register_hook(hook)
    (y * y + y).sum().backward()
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], 2.0 * np.array([2.0, 4.0]) + 1.0)
    # returning None keeps the gradient unchanged
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * (2.0 * np.array([2.0, 4.0]) + 1.0))


def test_hook_on_leaf_used_twice_called_once():
    x = f64([1.0, 2.0])
    calls = []
    x.register_hook(lambda g: calls.append(1))
    (x * x + x).sum().backward()
    assert len(calls) == 1
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 5.0])


def test_hook_receives_tensor():
    x = f64([1.0])
    kinds = []
    x.register_hook(lambda g: kinds.append(type(g)))
    (x * 2.0).sum().backward()
    assert kinds == [dg.Tensor] or issubclass(kinds[0], dg.Tensor)


# --------------------------------------------------------------------------------------------
# grad modes
# --------------------------------------------------------------------------------------------
def test_no_grad_context():
    x = f64([1.0, 2.0])
    with dg.no_grad():
        y = x * 2.0
        z = y.exp().sum()
    assert y.requires_grad is False and y.is_leaf
    assert z.requires_grad is False
    assert (x * 2.0).requires_grad is True


def test_enable_grad_inside_no_grad():
    x = f64([1.0, 2.0])
    with dg.no_grad():
        with dg.enable_grad():
            y = x * 2.0
        z = x * 2.0
    assert y.requires_grad is True
    assert z.requires_grad is False
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_set_grad_enabled_context():
    x = f64([1.0])
    with dg.set_grad_enabled(False):
        assert (x * 2.0).requires_grad is False
        with dg.set_grad_enabled(True):
            assert (x * 2.0).requires_grad is True
    assert (x * 2.0).requires_grad is True


def test_set_grad_enabled_as_function():
    x = f64([1.0])
    try:
        dg.set_grad_enabled(False)
        assert (x * 2.0).requires_grad is False
    finally:
        dg.set_grad_enabled(True)
    assert (x * 2.0).requires_grad is True


def test_grad_modes_as_decorators():
    x = f64([1.0])

    @dg.no_grad()
    def f_no():
        return x * 2.0

    @dg.enable_grad()
    def f_en():
        return x * 2.0

    @dg.set_grad_enabled(False)
    def f_off():
        return x * 2.0

    assert f_no().requires_grad is False
    assert f_off().requires_grad is False
    with dg.no_grad():
        assert f_en().requires_grad is True
    assert (x * 2.0).requires_grad is True


def test_no_grad_restores_mode_after_exception():
    x = f64([1.0])
    with pytest.raises(KeyError):
        with dg.no_grad():
            raise KeyError("boom")
    assert (x * 2.0).requires_grad is True


# --------------------------------------------------------------------------------------------
# leaves, requires_grad propagation, detach, clone, dtype conversion
# --------------------------------------------------------------------------------------------
def test_is_leaf_and_requires_grad_propagation():
    x = f64([1.0, 2.0])
    c = dg.ones(2, dtype=dg.float64)
    assert x.is_leaf and x.requires_grad
    assert c.is_leaf and not c.requires_grad
    y = x * c
    assert y.requires_grad and not y.is_leaf
    z = c * 2.0
    assert not z.requires_grad and z.is_leaf
    assert (c + x).requires_grad
    assert x.grad is None


def test_requires_grad_attribute_settable():
    x = dg.ones(2, dtype=dg.float64)
    x.requires_grad = True
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_detach_cuts_the_graph():
    x = f64([1.0, 2.0])
    y = x * 3.0
    d = y.detach()
    assert d.requires_grad is False and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), y.detach().numpy())
    (y * d).sum().backward()  # d is a constant: grad = 3 * d
    np.testing.assert_allclose(x.grad.numpy(), 3.0 * np.array([3.0, 6.0]))


def test_detach_shares_storage_like_torch():
    x = f64([1.0, 2.0])
    d = x.detach()
    d.add_(1.0)
    np.testing.assert_array_equal(x.detach().numpy(), [2.0, 3.0])


def test_clone_is_differentiable_and_independent():
    x = f64([1.0, 2.0])
    c = x.clone()
    assert c.requires_grad and not c.is_leaf
    (c * c).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])
    with dg.no_grad():
        c.add_(5.0)
    np.testing.assert_array_equal(x.detach().numpy(), [1.0, 2.0])


@pytest.mark.parametrize("convert, dtype", [
    (lambda t: t.double(), np.float64),
    (lambda t: t.float(), np.float32),
    (lambda t: t.to(dg.float64), np.float64),
])
def test_float_conversions_are_differentiable(convert, dtype):
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    y = convert(x)
    assert y.dtype == dtype
    (y * y).sum().backward()
    assert x.grad.dtype == dg.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_long_conversion():
    x = dg.tensor([1.7, -2.2, 3.0])
    y = x.long()
    assert y.dtype == dg.int64
    np.testing.assert_array_equal(y.numpy(), [1, -2, 3])  # truncation toward zero, as torch
    assert y.requires_grad is False


# --------------------------------------------------------------------------------------------
# user-defined Functions
# --------------------------------------------------------------------------------------------
class Cube(dg.autograd.Function):
    def forward(self, x):
        self.x = x
        return x ** 3

    def backward(self, grad):
        return (3.0 * self.x ** 2 * grad,)


class MulAdd(dg.autograd.Function):
    """a * b + a, with broadcasting handled by the engine."""

    def forward(self, a, b):
        self.a = a
        self.b = b
        return a * b + a

    def backward(self, grad):
        return grad * (self.b + 1.0), grad * self.a


def test_custom_function_forward_backward():
    x = f64([1.0, -2.0])
    y = Cube.apply(x)
    assert isinstance(y, dg.Tensor)
    np.testing.assert_allclose(y.detach().numpy(), [1.0, -8.0])
    assert y.requires_grad and not y.is_leaf
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 12.0])


def test_custom_function_gradcheck():
    rng = np.random.default_rng(0)
    run_gradcheck(lambda m, x: Cube.apply(x), [rng.standard_normal((3, 4))])
    run_gradcheck(lambda m, a, b: MulAdd.apply(a, b),
                  [rng.standard_normal((3, 4)), rng.standard_normal((4,))])


def test_custom_function_in_a_graph():
    x = f64([0.5, 1.5])
    y = (Cube.apply(x * 2.0) + x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0 * (2.0 * np.array([0.5, 1.5])) ** 2 * 2.0 + 1)


def test_custom_function_without_grad_inputs():
    x = f64([1.0, 2.0], requires_grad=False)
    y = Cube.apply(x)
    assert y.requires_grad is False
    with dg.no_grad():
        assert Cube.apply(f64([1.0])).requires_grad is False


def test_gradcheck_detects_wrong_backward():
    class Wrong(dg.autograd.Function):
        def forward(self, x):
            return x * 2.0

        def backward(self, grad):
            return (grad * 3.0,)

    x = f64(np.array([0.1, 0.2, 0.3]))
    try:
        ok = dg.autograd.gradcheck(lambda t: Wrong.apply(t), (x,))
    except Exception:  # the documented way to fail
        ok = False
    assert ok is not True
