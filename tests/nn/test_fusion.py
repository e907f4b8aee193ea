"""Sequential runs a Linear or convolution and the ReLU/Sigmoid/Tanh after it as one node
(deepgrad/ops/fused.py): the same bits as the two modules called one after the other, the
activation's own semantics, and nothing fused where a hook or an override could tell."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn
from deepgrad.autograd.gradcheck import gradcheck

_ACTS = [nn.ReLU, nn.Sigmoid, nn.Tanh]


def _one_by_one(seq, x):
    for m in seq:
        x = m(x)
    return x


def _mlp(act, dt=np.float32):
    dg.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 300), act(), nn.Linear(300, 40), act(),
                         nn.Linear(40, 5)).to(dg.float64 if dt == np.float64 else dg.float32)


def _convnet(act, dt=np.float32):
    dg.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), act(), nn.Conv2d(32, 8, 5), act(),
                         nn.Flatten(), nn.Linear(8 * 12 * 12, 6), act()).to(
                             dg.float64 if dt == np.float64 else dg.float32)


def _run(model, forward, x: np.ndarray) -> list:
    """Output, input grad and parameter grads of ``(forward(x) ** 2).sum()``."""
    model.zero_grad()
    t = dg.from_numpy(x.copy()).requires_grad_(True)
    y = forward(t)
    (y * y).sum().backward()
    return [y.data.copy(), t.grad.data.copy()] + [p.grad.data.copy() for p in model.parameters()]


def _names(y) -> list:
    """The node names from y back to the leaves, depth first."""
    names, todo = [], [y.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None:
            continue
        names.append(fn.name)
        todo.extend(t.grad_fn for t in fn.inputs if t is not None)
    return names


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("act", _ACTS)
@pytest.mark.parametrize("build,shape", [(_mlp, (64, 20)), (_convnet, (4, 3, 16, 16))],
                         ids=["mlp", "convnet"])
def test_fused_equals_module_by_module_bit_for_bit(dt, act, build, shape):
    model = build(act, dt)
    x = np.random.default_rng(0).standard_normal(shape).astype(dt) * 2
    fused = _run(model, model, x)
    separate = _run(model, lambda t: _one_by_one(model, t), x)
    for a, b in zip(fused, separate):
        np.testing.assert_array_equal(a, b)
    name = "Relu" if act is nn.ReLU else act.__name__
    assert f"Linear{name}Backward" in _names(model(dg.from_numpy(x)))


def test_nodes_are_fused_and_grad_fn_names_both():
    model = _convnet(nn.ReLU)
    y = model(dg.randn(2, 3, 16, 16))
    names = _names(y)
    assert names.count("ConvNdReluBackward") == 2 and names.count("LinearReluBackward") == 1
    assert "ReluBackward" not in names


@pytest.mark.parametrize("act", _ACTS)
def test_fused_gradcheck(act):
    dg.manual_seed(1)
    lin = nn.Sequential(nn.Linear(5, 4), act()).double()
    conv = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), act()).double()
    x = dg.randn(3, 5, dtype=dg.float64, requires_grad=True)
    assert gradcheck(lambda x, w, b: lin(x), (x, lin[0].weight, lin[0].bias))
    xc = dg.randn(2, 2, 7, dtype=dg.float64, requires_grad=True)
    assert gradcheck(lambda x, w, b: conv(xc), (xc, conv[0].weight, conv[0].bias))


def test_no_grad_and_leading_dims():
    model = _mlp(nn.Tanh)
    x = np.random.default_rng(1).standard_normal((3, 7, 20)).astype(np.float32)
    with dg.no_grad():
        y = model(dg.from_numpy(x))
    assert y.grad_fn is None and y.shape == (3, 7, 5)
    np.testing.assert_array_equal(y.data, _one_by_one(model, dg.from_numpy(x)).data)


def test_hooks_and_overrides_see_the_layers_as_they_are():
    model = _mlp(nn.ReLU)
    seen = []
    handle = model[0].register_forward_hook(lambda m, args, out: seen.append(out.data.copy()))
    x = dg.randn(8, 20)
    y = model(x)
    # the hook got the Linear's own output, negatives and all, and the ReLU still ran after it
    assert (seen[0] < 0).any()
    assert "ReluBackward" in _names(y)
    handle.remove()
    act_hook = model[1].register_forward_pre_hook(lambda m, args: seen.append("pre"))
    model(x)
    assert seen[-1] == "pre"
    act_hook.remove()
    model[0].forward = lambda inp: dg.zeros(inp.shape[0], 300)  # an instance override
    np.testing.assert_array_equal(model(x).data, model[2:](dg.zeros(8, 300)).data)
    del model[0].__dict__["forward"]
    assert "LinearReluBackward" in _names(model(x))


def test_subclasses_and_changed_modules_are_not_fused():
    class Scaled(nn.Linear):
        def forward(self, input):
            return super().forward(input) * 2

    seq = nn.Sequential(Scaled(4, 3), nn.ReLU())
    names = _names(seq(dg.randn(2, 4)))
    assert "ReluBackward" in names and "LinearReluBackward" not in names
    seq = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    seq(dg.randn(2, 4))
    seq[1] = nn.Identity()  # the cached plan must follow the change
    y = seq(dg.from_numpy(np.full((2, 4), -1.0, np.float32)))
    np.testing.assert_array_equal(y.data, seq[0](dg.from_numpy(np.full((2, 4), -1.0,
                                                                        np.float32))).data)
    seq.append(nn.Sigmoid())
    assert "LinearSigmoidBackward" not in _names(seq(dg.randn(2, 4)))


def test_output_changed_in_place_is_caught():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    y = model(dg.randn(2, 4))
    with dg.no_grad():
        y.add_(1.0)
    with pytest.raises(RuntimeError, match="LinearTanh.*in-place"):
        y.sum().backward()


def test_errors_name_the_layer():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(),
                          nn.Sequential(nn.Linear(5, 2), nn.Sigmoid()))
    with pytest.raises(ValueError, match=r"^2\.0 \(Linear\): expected input with last dim 5"):
        model(dg.randn(2, 4))
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"^0 \(Conv2d\): .*3 channels"):
        conv(dg.randn(1, 2, 8, 8))


def test_integer_layers_fall_back_to_separate_ops():
    lin = nn.Linear(3, 2)
    lin.weight = nn.Parameter(dg.tensor([[1, -2, 0], [0, 1, 1]]), requires_grad=False)
    lin.bias = None
    seq = nn.Sequential(lin, nn.ReLU())
    y = seq(dg.tensor([[1, 1, 1], [-3, 0, 2]]))
    assert y.dtype == lin.weight.dtype
    np.testing.assert_array_equal(y.data, [[0, 2], [0, 2]])


def test_retain_graph_backward_twice():
    model = _mlp(nn.Sigmoid)
    x = dg.randn(4, 20)
    y = model(x).sum()
    y.backward(retain_graph=True)
    first = model[0].weight.grad.data.copy()
    y.backward()
    np.testing.assert_allclose(model[0].weight.grad.data, 2 * first, rtol=1e-6)
