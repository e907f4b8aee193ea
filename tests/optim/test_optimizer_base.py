"""Optimizer protocol: parameter groups, validation errors, zero_grad, closure, load checks."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import optim
from helpers import requires_torch

from ._oracle import torch

ALL = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


def _params(n=3):
    return [dg.nn.Parameter(np.ones((2, 2))) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# constructor arguments and defaults
# ---------------------------------------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("name", ALL)
def test_defaults_match_torch(name):
    dopt = getattr(optim, name)(_params(1))
    topt = getattr(torch.optim, name)([torch.nn.Parameter(torch.ones(2, 2))])
    assert dopt.defaults == topt.defaults
    assert list(dopt.defaults) == list(topt.defaults)


def test_accepts_generator_list_dicts_and_named_pairs():
    model = dg.nn.Sequential(dg.nn.Linear(2, 3), dg.nn.Linear(3, 1))
    opt = optim.SGD(model.parameters(), lr=0.1)
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 4

    opt = optim.SGD(list(model.parameters()))
    assert opt.param_groups[0]["lr"] == 1e-3

    opt = optim.SGD([{"params": model[0].parameters()},
                     {"params": model[1].parameters(), "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)

    opt = optim.Adam(model.named_parameters())
    assert opt.param_groups[0]["param_names"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert opt.param_groups[0]["params"][0] is model[0].weight

    p = dg.nn.Parameter(np.ones(2))
    opt = optim.SGD([{"params": p}])  # a single tensor as a group's params
    assert opt.param_groups[0]["params"] == [p]


def test_user_group_dict_is_not_modified():
    p = dg.nn.Parameter(np.ones(2))
    group = {"params": [p], "lr": 0.5}
    opt = optim.SGD([group], momentum=0.9)
    assert group == {"params": [p], "lr": 0.5}
    assert opt.param_groups[0]["momentum"] == 0.9


def test_add_param_group():
    a, b = _params(2)
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert opt.param_groups[1]["momentum"] == 0.9
    with pytest.raises(ValueError, match=r"SGD: some parameters appear in more than one "
                                          r"parameter group.*group 0.*group 2"):
        opt.add_param_group({"params": [a]})
    assert len(opt.param_groups) == 2  # the failed group left nothing behind


def test_adagrad_state_exists_before_step_and_for_added_groups():
    a, b = _params(2)
    opt = optim.Adagrad([a], initial_accumulator_value=0.25)
    assert opt.state[a]["step"] == 0
    np.testing.assert_array_equal(opt.state[a]["sum"].data, np.full((2, 2), 0.25))
    opt.add_param_group({"params": [b]})
    b.grad = dg.ones(2, 2, dtype=np.float64)
    opt.step()
    assert opt.state[b]["step"] == 1


def test_repr_lists_groups():
    opt = optim.SGD(_params(1), lr=0.1)
    text = repr(opt)
    assert text.startswith("SGD (\nParameter Group 0\n")
    assert "    lr: 0.1\n" in text and "params" not in text


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
BAD_HYPER = [
    ("SGD", dict(lr=-0.1), ValueError, r"SGD: Invalid learning rate; expected lr >= 0.0, got -0.1"),
    ("SGD", dict(momentum=-0.5), ValueError, r"SGD: Invalid momentum value"),
    ("SGD", dict(weight_decay=-1.0), ValueError, r"SGD: Invalid weight_decay value"),
    ("SGD", dict(nesterov=True), ValueError, r"SGD: Nesterov momentum requires a momentum and "
                                             r"zero dampening.*momentum=0"),
    ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True), ValueError, "dampening=0.1"),
    ("SGD", dict(lr="fast"), TypeError, r"SGD: lr must be a real number; expected float, got str"),
    ("SGD", dict(lr=float("nan")), ValueError, "Invalid learning rate"),
    ("Adam", dict(lr=-1e-3), ValueError, r"Adam: Invalid learning rate"),
    ("Adam", dict(eps=-1.0), ValueError, r"Adam: Invalid epsilon value"),
    ("Adam", dict(betas=(1.0, 0.999)), ValueError,
     r"Adam: Invalid beta parameter at index 0; expected 0.0 <= betas\[0\] < 1.0, got 1.0"),
    ("Adam", dict(betas=(0.9, -0.1)), ValueError, r"Invalid beta parameter at index 1"),
    ("Adam", dict(betas=0.9), ValueError, r"Adam: betas should be a pair"),
    ("Adam", dict(weight_decay=-0.1), ValueError, r"Adam: Invalid weight_decay value"),
    ("AdamW", dict(betas=(0.9, 1.5)), ValueError, r"AdamW: Invalid beta parameter at index 1"),
    ("Adam", dict(differentiable=True), NotImplementedError, "differentiable=True"),
    ("Adam", dict(fused=True, foreach=True), RuntimeError, "cannot be `True` together"),
    ("RMSprop", dict(alpha=-0.5), ValueError, r"RMSprop: Invalid alpha value"),
    ("RMSprop", dict(momentum=-0.5), ValueError, r"RMSprop: Invalid momentum value"),
    ("RMSprop", dict(eps=-1.0), ValueError, r"RMSprop: Invalid epsilon value"),
    ("Adagrad", dict(lr_decay=-1.0), ValueError, r"Adagrad: Invalid lr_decay value"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), ValueError,
     r"Adagrad: Invalid initial_accumulator_value value"),
    ("Adagrad", dict(eps=-1.0), ValueError, r"Adagrad: Invalid epsilon value"),
]


@pytest.mark.parametrize("case", BAD_HYPER, ids=[f"{c[0]}-{list(c[1])[0]}-{i}"
                                                 for i, c in enumerate(BAD_HYPER)])
def test_bad_hyper_parameters(case):
    name, kwargs, exc, msg = case
    with pytest.raises(exc, match=msg):
        getattr(optim, name)(_params(1), **kwargs)


def test_bad_hyper_parameter_in_a_group():
    a, b = _params(2)
    with pytest.raises(ValueError, match="SGD: Invalid learning rate; expected lr >= 0.0, got -1"):
        optim.SGD([{"params": [a]}, {"params": [b], "lr": -1}])
    opt = optim.SGD([a])
    with pytest.raises(ValueError, match="Invalid momentum value"):
        opt.add_param_group({"params": [b], "momentum": -1})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("name", ALL)
def test_params_must_be_an_iterable_of_tensors(name):
    cls = getattr(optim, name)
    p = dg.nn.Parameter(np.ones(3))
    with pytest.raises(TypeError, match=rf"{name}: params argument given to the optimizer should "
                                        r"be an iterable of Tensors or dicts; got Tensor of "
                                        r"shape \(3,\)"):
        cls(p)
    with pytest.raises(TypeError, match=rf"{name}: params argument .* got int"):
        cls(5)
    with pytest.raises(ValueError, match=rf"{name}: optimizer got an empty parameter list"):
        cls([])
    with pytest.raises(TypeError, match="ordering of tensors in sets"):
        cls({p})
    with pytest.raises(TypeError, match=r"optimizer can only optimize Tensors; expected Tensor, "
                                        r"got ndarray \(params\[1\]\)"):
        cls([p, np.ones(3)])


def test_non_leaf_and_duplicate_and_group_errors():
    w = dg.nn.Parameter(np.ones(3))
    y = w * 2
    with pytest.raises(ValueError, match=r"SGD: can't optimize a non-leaf Tensor.*Mul"):
        optim.SGD([y])
    with pytest.raises(ValueError, match=r"some parameters appear in more than one parameter "
                                         r"group.*shape \(3,\) in group 0"):
        optim.SGD([{"params": [w]}, {"params": [w]}])
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optim.SGD([w, w])
    v = dg.nn.Parameter(np.ones(3))
    with pytest.raises(ValueError, match="all optimizer params should be with/without names"):
        optim.SGD([("w", w), v])
    with pytest.raises(ValueError, match="all optimizer param groups should be with/without"):
        optim.SGD([{"params": [("w", w)]}, {"params": [v]}])
    with pytest.raises(TypeError, match="param_group must be a dict"):
        optim.SGD([{"params": [w]}, [v]])
    with pytest.raises(ValueError, match="param_group has no 'params' entry"):
        optim.SGD([{"lr": 0.1}])


def test_load_state_dict_errors_leave_the_optimizer_unchanged():
    a, b, c = _params(3)
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = dg.ones(2, 2, dtype=np.float64)
    opt.step()
    before = opt.state_dict()
    other = optim.Adam([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match="different number of parameter groups; expected 1, "
                                         "got 2"):
        opt.load_state_dict(other.state_dict())
    bigger = optim.Adam([a, b, c])
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group; group 0 "
                                         "has 2 params, checkpoint 3"):
        opt.load_state_dict(bigger.state_dict())
    bad = opt.state_dict()
    bad["state"][0] = dict(bad["state"][0], exp_avg=dg.zeros(5, dtype=np.float64))
    with pytest.raises(ValueError, match=r"shape mismatch for state 'exp_avg' of parameter 0; "
                                         r"checkpoint \(5,\), parameter \(2, 2\)"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.load_state_dict(bad)
    with pytest.raises(TypeError, match="Adam.load_state_dict: expected a dict with keys"):
        opt.load_state_dict({"state": {}})
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert after["state"][0]["exp_avg"] is before["state"][0]["exp_avg"]


# ---------------------------------------------------------------------------------------------
# zero_grad, closure, grad mode
# ---------------------------------------------------------------------------------------------
def test_zero_grad():
    a, b = _params(2)
    opt = optim.SGD([a, b])
    a.grad = dg.ones(2, 2, dtype=np.float64)
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    a.grad = dg.ones(2, 2, dtype=np.float64)
    g = a.grad
    arr = g.data
    opt.zero_grad(set_to_none=False)
    assert a.grad is g and g.data is arr
    np.testing.assert_array_equal(arr, 0.0)
    assert b.grad is None


def test_step_with_closure_returns_loss_and_runs_with_grad():
    w = dg.nn.Parameter(np.array([1.0, 2.0]))
    opt = optim.SGD([w], lr=0.1)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        calls.append(dg.is_grad_enabled())
        return loss

    with dg.no_grad():
        loss = opt.step(closure)
    assert calls == [True]
    assert loss.item() == 5.0
    np.testing.assert_allclose(w.data, [0.8, 1.6])
    assert opt.step() is None


def test_step_records_nothing():
    w = dg.nn.Parameter(np.array([1.0, 2.0]))
    opt = optim.Adam([w], lr=0.1)
    w.grad = dg.ones(2, dtype=np.float64)
    opt.step()
    assert w.is_leaf and w.grad_fn is None and w.requires_grad


def test_state_is_per_parameter_and_hyper_parameters_are_read_each_step():
    w = dg.nn.Parameter(np.array([0.0]))
    opt = optim.SGD([w], lr=0.1)
    w.grad = dg.ones(1, dtype=np.float64)
    opt.step()
    opt.param_groups[0]["lr"] = 1.0
    opt.step()
    np.testing.assert_allclose(w.data, [-1.1])


def test_no_pickling():
    opt = optim.SGD(_params(1))
    with pytest.raises(TypeError, match="pickling is not supported"):
        opt.__getstate__()
