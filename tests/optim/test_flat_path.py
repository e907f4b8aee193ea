"""The flat fast path: same numbers as the per-parameter path, and it steps aside safely."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import optim
from deepgrad.optim import optimizer as optimizer_module

from ._oracle import SHAPES
from .test_optimizers import GRID, _id


def _params(seed=0, dtype=np.float64, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [dg.nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def _set_grads(rng, params, dtype=np.float64):
    for p in params:
        p.grad = dg.tensor((0.5 * p.data + rng.standard_normal(p.shape)).astype(dtype))


def _is_flat(params):
    base = params[0].data.base
    return base is not None and all(p.data.base is base for p in params)


@pytest.mark.parametrize("case", GRID, ids=[_id(c) for c in GRID])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_flat_path_is_bit_identical_to_per_parameter_path(case, dtype, monkeypatch):
    name, kwargs = case
    cls = getattr(optim, name)
    flat_params, plain_params = _params(dtype=dtype), _params(dtype=dtype)
    flat_opt = cls(flat_params, **kwargs)
    rng = np.random.default_rng(5)
    for _ in range(30):
        _set_grads(rng, flat_params, dtype)
        flat_opt.step()
    assert _is_flat(flat_params)

    monkeypatch.setattr(optimizer_module, "_FLAT_MAX_NUMEL", 0)
    plain_opt = cls(plain_params, **kwargs)
    rng = np.random.default_rng(5)
    for _ in range(30):
        _set_grads(rng, plain_params, dtype)
        plain_opt.step()
    assert not _is_flat(plain_params)

    for a, b in zip(flat_params, plain_params):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.data.dtype == dtype
    fs, ps = flat_opt.state_dict()["state"], plain_opt.state_dict()["state"]
    assert list(fs) == list(ps)
    for k in fs:
        assert list(fs[k]) == list(ps[k])
        for n in fs[k]:
            if n == "step":
                assert fs[k][n] == ps[k][n]
            else:
                np.testing.assert_array_equal(fs[k][n].data, ps[k][n].data)


def test_flat_path_only_for_small_groups_of_several_parameters():
    one = _params(shapes=[(3, 3)])
    opt = optim.SGD(one, lr=0.1, momentum=0.9)
    arr = one[0].data
    one[0].grad = dg.ones(3, 3, dtype=np.float64)
    opt.step()
    assert one[0].data is arr  # a single parameter keeps its array

    big = _params(shapes=[(300, 300), (300,)])
    opt = optim.SGD(big, lr=0.1, momentum=0.9)
    arrays = [p.data for p in big]
    _set_grads(np.random.default_rng(0), big)
    opt.step()
    assert all(p.data is a for p, a in zip(big, arrays))

    small = _params()
    opt = optim.SGD(small, lr=0.1, momentum=0.9)
    before = [p.data.copy() for p in small]
    for p in small:
        p.grad = dg.zeros(*p.shape, dtype=np.float64)
    opt.step()
    assert _is_flat(small)
    for p, b in zip(small, before):
        np.testing.assert_array_equal(p.data, b)  # moving into the buffer kept the values
    for p in small:
        assert opt.state[p]["momentum_buffer"].data.base is not None


def _reference_run(cls, kwargs, n_steps, seed=3, mutate=None):
    """Deepgrad per-parameter reference: flat path disabled."""
    params = _params()
    opt = cls(params, **kwargs)
    rng = np.random.default_rng(seed)
    for t in range(n_steps):
        if mutate is not None:
            mutate(t, params, opt)
        _set_grads(rng, params)
        opt.step()
    return params


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.05, momentum=0.9)),
                                         ("Adam", dict(lr=0.01, amsgrad=True))])
def test_reassigned_param_data_and_replaced_state_are_honoured(name, kwargs, monkeypatch):
    cls = getattr(optim, name)

    def mutate(t, params, opt):
        if t == 5:  # e.g. model.to(...) or user code assigning new arrays
            params[1].data = params[1].data * 0.5
        if t == 9:
            key = "momentum_buffer" if name == "SGD" else "exp_avg"
            st = opt.state[params[0]]
            st[key] = dg.tensor(np.full(params[0].shape, 0.25))
        if t == 13:
            opt.state[params[2]][next(k for k in opt.state[params[2]] if k != "step")] \
                .data.fill(0.0)  # in-place edits of state tensors are seen too

    flat = _reference_run(cls, kwargs, 20, mutate=mutate)
    assert _is_flat(flat)
    monkeypatch.setattr(optimizer_module, "_FLAT_MAX_NUMEL", 0)
    plain = _reference_run(cls, kwargs, 20, mutate=mutate)
    for a, b in zip(flat, plain):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_into_a_stepped_optimizer(monkeypatch):
    def run():
        params = _params()
        opt = optim.Adam(params, lr=0.01)
        other = optim.Adam(_params(seed=1), lr=0.02)
        rng = np.random.default_rng(0)
        for _ in range(5):
            _set_grads(rng, params)
            opt.step()
            _set_grads(rng, other.param_groups[0]["params"])
            other.step()
        opt.load_state_dict(other.state_dict())
        for _ in range(5):
            _set_grads(rng, params)
            opt.step()
        return params, opt

    flat, opt = run()
    assert _is_flat(flat) and opt.param_groups[0]["lr"] == 0.02
    assert opt.state[flat[0]]["step"] == 10
    monkeypatch.setattr(optimizer_module, "_FLAT_MAX_NUMEL", 0)
    plain, _ = run()
    for a, b in zip(flat, plain):
        np.testing.assert_array_equal(a.data, b.data)


def test_two_optimizers_sharing_parameters(monkeypatch):
    def run():
        params = _params()
        opt1 = optim.SGD(params, lr=0.1, momentum=0.9)
        opt2 = optim.Adam(params, lr=0.01)
        rng = np.random.default_rng(0)
        for _ in range(10):
            _set_grads(rng, params)
            opt1.step()
            opt2.step()
        return params

    flat = run()
    monkeypatch.setattr(optimizer_module, "_FLAT_MAX_NUMEL", 0)
    plain = run()
    for a, b in zip(flat, plain):
        np.testing.assert_array_equal(a.data, b.data)


def test_module_load_state_dict_after_flat_steps():
    model = dg.nn.Sequential(dg.nn.Linear(2, 8), dg.nn.Tanh(), dg.nn.Linear(8, 1))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = dg.randn(4, 2)
    for _ in range(3):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    assert _is_flat(list(model.parameters()))
    fresh = dg.nn.Sequential(dg.nn.Linear(2, 8), dg.nn.Tanh(), dg.nn.Linear(8, 1))
    model.load_state_dict(fresh.state_dict())  # copies into the views in place
    for p, q in zip(model.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    assert _is_flat(list(model.parameters()))


@pytest.mark.parametrize("case", GRID, ids=[_id(c) for c in GRID])
def test_blocked_update_of_large_parameters_is_bit_identical(case, monkeypatch):
    name, kwargs = case
    cls = getattr(optim, name)
    shapes = [(200, 100), (40000,)]  # 2 and 2.4 blocks of float64

    def run():
        params = _params(shapes=shapes)
        opt = cls(params, **kwargs)
        rng = np.random.default_rng(7)
        for _ in range(5):
            _set_grads(rng, params)
            opt.step()
        return params

    blocked = run()
    monkeypatch.setattr(optimizer_module, "_CHUNK_BYTES", 1 << 40)
    whole = run()
    for a, b in zip(blocked, whole):
        np.testing.assert_array_equal(a.data, b.data)


def test_gradient_of_the_wrong_shape():
    p = dg.nn.Parameter(np.ones((2, 3)))
    opt = optim.SGD([p], lr=0.1)
    p.grad = dg.ones(3, dtype=np.float64)
    with pytest.raises(RuntimeError, match=r"SGD.step: gradient shape does not match its "
                                           r"parameter; expected \(2, 3\), got \(3,\)"):
        opt.step()
    np.testing.assert_array_equal(p.data, 1.0)
