"""Optimizers against PyTorch: 100-step trajectories, state, float32, state_dict round trips."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import optim
from helpers import requires_torch

from ._oracle import SHAPES, Pair, as_numpy, torch

# (optimizer, constructor kwargs) — a grid over every option of each algorithm
GRID = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, maximize=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.5), eps=1e-3)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(centered=True)),
    ("RMSprop", dict(momentum=0.9)),
    ("RMSprop", dict(centered=True, momentum=0.9, weight_decay=0.1)),
    ("RMSprop", dict(alpha=0.3, centered=True)),
    ("RMSprop", dict(maximize=True, weight_decay=0.1)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr_decay=0.01)),
    ("Adagrad", dict(weight_decay=0.1, initial_accumulator_value=0.1)),
    ("Adagrad", dict(maximize=True, eps=1e-3)),
]


def _id(case):
    name, kw = case
    return name + "-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")


@requires_torch
@pytest.mark.parametrize("case", GRID, ids=[_id(c) for c in GRID])
@pytest.mark.parametrize("skip", [False, True], ids=["all-grads", "some-grads-missing"])
def test_trajectory_matches_torch(case, skip):
    name, kwargs = case
    pair = Pair(name, kwargs, skip=skip)
    for _ in range(100):
        pair.step()
        pair.assert_close()
    pair.assert_state_close()


# per-group overrides: different lrs and a second option per group
GROUP_CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9),
     [([0, 1], dict(lr=0.01)), ([2], dict(nesterov=True, weight_decay=0.1))]),
    ("Adam", dict(lr=0.01), [([0], dict(lr=0.003, amsgrad=True)), ([1, 2], dict())]),
    ("AdamW", dict(lr=0.01), [([0, 2], dict(weight_decay=0.5)), ([1], dict(lr=0.02))]),
    ("RMSprop", dict(lr=0.01), [([0], dict(centered=True)), ([1, 2], dict(momentum=0.5))]),
    ("Adagrad", dict(lr=0.05), [([0, 1], dict(lr_decay=0.1)), ([2], dict(lr=0.2))]),
]


@requires_torch
@pytest.mark.parametrize("case", GROUP_CASES, ids=[c[0] for c in GROUP_CASES])
def test_param_groups_match_torch(case):
    name, kwargs, groups = case
    pair = Pair(name, kwargs, groups)
    for _ in range(100):
        pair.step()
    pair.assert_close()
    pair.assert_state_close()
    for dg_group, t_group in zip(pair.dopt.param_groups, pair.topt.param_groups):
        assert {k: v for k, v in dg_group.items() if k != "params"} == \
            {k: v for k, v in t_group.items() if k != "params"}


FLOAT32_CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(centered=True, momentum=0.9)),
    ("Adagrad", dict(lr_decay=0.01, weight_decay=0.1)),
]


@requires_torch
@pytest.mark.parametrize("case", FLOAT32_CASES, ids=[c[0] for c in FLOAT32_CASES])
def test_float32_stays_float32(case):
    name, kwargs = case
    pair = Pair(name, kwargs, dtype=np.float32)
    for _ in range(30):
        pair.step()
    pair.assert_close(rtol=1e-4, atol=1e-5)
    pair.assert_state_close(rtol=1e-4, atol=1e-5)
    for p in pair.dp:
        assert p.data.dtype == np.float32
    for st in pair.dopt.state.values():
        for k, v in st.items():
            if k != "step":
                assert v.data.dtype == np.float32, k


# ---------------------------------------------------------------------------------------------
# state_dict
# ---------------------------------------------------------------------------------------------
def _grads(rng, params):
    for p in params:
        p.grad = dg.tensor(0.5 * p.data + rng.standard_normal(p.shape))


def _fresh_params(values):
    return [dg.nn.Parameter(np.array(v, dtype=np.float64)) for v in values]


ROUND_TRIP = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(centered=True, momentum=0.9)),
    ("Adagrad", dict(lr_decay=0.01)),
]


@pytest.mark.parametrize("case", ROUND_TRIP, ids=[c[0] for c in ROUND_TRIP])
def test_state_dict_round_trip_continues_identically(case):
    name, kwargs = case
    cls = getattr(optim, name)
    init = [np.random.default_rng(1).standard_normal(s) for s in SHAPES]

    # uninterrupted: 20 steps
    rng = np.random.default_rng(2)
    ref = _fresh_params(init)
    opt = cls(ref, **kwargs)
    for _ in range(20):
        _grads(rng, ref)
        opt.step()

    # interrupted: 10 steps, save, load into a fresh optimizer (other lr), 10 more
    rng = np.random.default_rng(2)
    first = _fresh_params(init)
    opt1 = cls(first, **kwargs)
    for _ in range(10):
        _grads(rng, first)
        opt1.step()
    saved = opt1.state_dict()
    second = _fresh_params([p.data for p in first])
    opt2 = cls(second, **dict(kwargs, lr=123.0))
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == kwargs.get("lr", opt1.defaults["lr"])
    # the loaded state is a copy: stepping opt2 leaves opt1's state untouched
    before = {k: {n: as_numpy(v).copy() for n, v in s.items() if n != "step"}
              for k, s in saved["state"].items()}
    for _ in range(10):
        _grads(rng, second)
        opt2.step()
    for k, s in saved["state"].items():
        for n, v in before[k].items():
            np.testing.assert_array_equal(as_numpy(s[n]), v)
    for a, b in zip(ref, second):
        np.testing.assert_array_equal(a.data, b.data)


STRUCTURE = [
    ("SGD", dict(momentum=0.9)),
    ("SGD", dict()),
    ("Adam", dict(amsgrad=True)),
    ("Adam", dict()),
    ("AdamW", dict()),
    ("RMSprop", dict(centered=True, momentum=0.9)),
    ("RMSprop", dict()),
    ("Adagrad", dict()),
]


@requires_torch
@pytest.mark.parametrize("case", STRUCTURE, ids=[_id(c) for c in STRUCTURE])
@pytest.mark.parametrize("named", [False, True], ids=["plain", "named"])
def test_state_dict_structure_mirrors_torch(case, named):
    name, kwargs = case
    init = [np.ones(s) for s in SHAPES]
    dps = [dg.nn.Parameter(a.copy()) for a in init]
    tps = [torch.nn.Parameter(torch.tensor(a)) for a in init]
    if named:
        dspec = [{"params": [("a", dps[0]), ("b", dps[1])], "lr": 0.5},
                 {"params": [("c", dps[2])]}]
        tspec = [{"params": [("a", tps[0]), ("b", tps[1])], "lr": 0.5},
                 {"params": [("c", tps[2])]}]
    else:
        dspec = [{"params": dps[:2], "lr": 0.5}, {"params": dps[2:]}]
        tspec = [{"params": tps[:2], "lr": 0.5}, {"params": tps[2:]}]
    dopt = getattr(optim, name)(dspec, **kwargs)
    topt = getattr(torch.optim, name)(tspec, **kwargs)

    def check():
        dsd, tsd = dopt.state_dict(), topt.state_dict()
        assert list(dsd) == list(tsd) == ["state", "param_groups"]
        assert dsd["param_groups"] == tsd["param_groups"]  # keys, order, values, indices
        assert list(dsd["state"]) == list(tsd["state"])
        for k in tsd["state"]:
            assert list(dsd["state"][k]) == list(tsd["state"][k])
            for n, v in dsd["state"][k].items():
                assert isinstance(v, (dg.Tensor, int, float)), (n, type(v))

    check()  # before any step (Adagrad already has state)
    for dp, tp in zip(dps, tps):
        dp.grad = dg.ones(*dp.shape, dtype=np.float64)
        tp.grad = torch.ones(tp.shape, dtype=torch.float64)
    dopt.step()
    topt.step()
    check()


def test_load_state_dict_accepts_tensor_step_and_casts_dtype():
    p = dg.nn.Parameter(np.ones(3, dtype=np.float32))
    opt = optim.Adam([p])
    sd = {"state": {0: {"step": dg.tensor(4.0), "exp_avg": dg.tensor(np.ones(3)),
                        "exp_avg_sq": dg.tensor(np.ones(3))}},
          "param_groups": [dict(opt.state_dict()["param_groups"][0])]}
    opt.load_state_dict(sd)
    st = opt.state[p]
    assert st["step"] == 4.0 and not isinstance(st["step"], dg.Tensor)
    assert st["exp_avg"].dtype == np.float32
    assert st["exp_avg"].data is not sd["state"][0]["exp_avg"].data


# ---------------------------------------------------------------------------------------------
# in-place updates and hand-computed steps
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_updates_are_in_place(name):
    kwargs = dict(momentum=0.9) if name in ("SGD", "RMSprop") else {}
    p = dg.nn.Parameter(np.arange(6, dtype=np.float32).reshape(2, 3))
    opt = getattr(optim, name)([p], **kwargs)
    arr = p.data
    v0 = p._version
    p.grad = dg.ones(2, 3)
    opt.step()
    state_arrays = {k: v.data for k, v in opt.state[p].items() if k != "step"}
    for _ in range(3):
        p.grad = dg.ones(2, 3)
        opt.step()
    assert p.data is arr
    assert p._version == v0 + 4
    for k, v in opt.state[p].items():
        if k != "step":
            assert v.data is state_arrays[k], k


def test_sgd_one_step_by_hand():
    p = dg.nn.Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    p.grad = dg.tensor(np.array([0.2, 0.4]))
    opt.step()  # g = grad + 0.5 p = [0.7, -0.6]; buf = g; p -= 0.1 g
    np.testing.assert_allclose(p.data, [0.93, -1.94])
    p.grad = dg.tensor(np.array([0.2, 0.4]))
    opt.step()  # g = [0.2 + 0.465, 0.4 - 0.97]; buf = 0.9 buf + g
    g = np.array([0.665, -0.57])
    buf = 0.9 * np.array([0.7, -0.6]) + g
    np.testing.assert_allclose(p.data, np.array([0.93, -1.94]) - 0.1 * buf)


def test_adam_first_step_is_lr_times_sign():
    p = dg.nn.Parameter(np.array([1.0, -2.0, 3.0]))
    opt = optim.Adam([p], lr=0.1)
    p.grad = dg.tensor(np.array([0.5, -3.0, 1e-3]))
    opt.step()  # m_hat = g, v_hat = g^2: step = lr * g / (|g| + eps)
    np.testing.assert_allclose(p.data, [0.9, -1.9, 2.9], rtol=1e-6)


def test_params_without_grad_are_skipped():
    a = dg.nn.Parameter(np.ones(2))
    b = dg.nn.Parameter(np.ones(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = dg.ones(2, dtype=np.float64)
    opt.step()
    np.testing.assert_array_equal(b.data, [1.0, 1.0])
    assert b not in opt.state or not opt.state[b]
    assert opt.state[a]["step"] == 1


def test_mixed_dtypes_in_one_group():
    a = dg.nn.Parameter(np.ones(3, dtype=np.float32))
    b = dg.nn.Parameter(np.ones(3, dtype=np.float64))
    for cls in (optim.SGD, optim.Adam, optim.RMSprop, optim.Adagrad):
        opt = cls([a, b], lr=0.1)
        a.grad = dg.ones(3, dtype=np.float32)
        b.grad = dg.ones(3, dtype=np.float64)
        opt.step()
        assert a.data.dtype == np.float32 and b.data.dtype == np.float64
        np.testing.assert_allclose(a.data, b.data, rtol=1e-6)


def test_end_to_end_training_loss_drops():
    dg.manual_seed(0)
    model = dg.nn.Sequential(dg.nn.Linear(2, 8), dg.nn.Tanh(), dg.nn.Linear(8, 1))
    x = dg.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = dg.tensor([[0.0], [1.0], [1.0], [0.0]])
    opt = optim.Adam(model.parameters(), lr=0.05)
    sched = optim.lr_scheduler.StepLR(opt, step_size=100, gamma=0.5)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 < losses[0]
