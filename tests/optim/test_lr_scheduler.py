"""Learning-rate schedulers against PyTorch: lr sequences, momentum cycling, state dicts."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.optim import lr_scheduler as L
from helpers import requires_torch

from ._oracle import torch

N_STEPS = 50


def _opt(lib, name="SGD", **kwargs):
    """An optimizer with two param groups of different lrs."""
    if lib is dg:
        a, b = dg.nn.Parameter(np.ones(2)), dg.nn.Parameter(np.ones(3))
    else:
        a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    return getattr(lib.optim, name)([{"params": [a]}, {"params": [b], "lr": 0.03}],
                                    lr=0.1, **kwargs)


def _sched(lib, cls, opt, kwargs):
    return getattr(lib.optim.lr_scheduler, cls)(opt, **kwargs)


class _Scaled:
    """A callable object whose state LambdaLR saves (functions are not saved)."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate ** epoch


# (scheduler, kwargs, optimizer name, optimizer kwargs)
CASES = [
    ("StepLR", dict(step_size=7), "SGD", {}),
    ("StepLR", dict(step_size=3, gamma=0.5), "SGD", {}),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 30], gamma=0.3), "SGD", {}),
    ("ExponentialLR", dict(gamma=0.93), "SGD", {}),
    ("CosineAnnealingLR", dict(T_max=10), "SGD", {}),
    ("CosineAnnealingLR", dict(T_max=17, eta_min=1e-3), "Adam", {}),
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (1 + e)), "SGD", {}),
    ("LambdaLR", dict(lr_lambda=[lambda e: 0.9 ** e, lambda e: min(1.0, (e + 1) / 10)]),
     "SGD", {}),
    ("MultiplicativeLR", dict(lr_lambda=lambda e: 0.95), "SGD", {}),
    ("ConstantLR", dict(factor=0.5, total_iters=4), "SGD", {}),
    ("LinearLR", dict(start_factor=0.1, end_factor=0.9, total_iters=20), "SGD", {}),
    ("PolynomialLR", dict(total_iters=30, power=2.0), "SGD", {}),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=N_STEPS), "SGD", dict(momentum=0.9)),
    ("OneCycleLR", dict(max_lr=[0.5, 0.2], total_steps=N_STEPS, anneal_strategy="linear"),
     "SGD", dict(momentum=0.9)),
    ("OneCycleLR", dict(max_lr=0.5, epochs=5, steps_per_epoch=10, three_phase=True,
                        pct_start=0.25), "SGD", dict(momentum=0.9)),
    ("OneCycleLR", dict(max_lr=0.01, total_steps=N_STEPS, base_momentum=0.8,
                        max_momentum=0.9), "Adam", {}),
    ("OneCycleLR", dict(max_lr=0.01, total_steps=N_STEPS, cycle_momentum=False), "Adagrad", {}),
]


def _case_id(case):
    return case[0] + "-" + "-".join(f"{k}" for k in case[1]) + "-" + case[2]


def _momenta(opt):
    out = []
    for g in opt.param_groups:
        out.append(g["betas"][0] if "betas" in g else g.get("momentum", 0.0))
    return out


@requires_torch
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_lr_sequence_matches_torch(case):
    cls, kwargs, opt_name, opt_kwargs = case
    dopt = _opt(dg, opt_name, **opt_kwargs)
    topt = _opt(torch, opt_name, **opt_kwargs)
    dsched = _sched(dg, cls, dopt, kwargs)
    tsched = _sched(torch, cls, topt, kwargs)
    steps = N_STEPS - 1 if cls == "OneCycleLR" else N_STEPS
    for t in range(steps + 1):
        dlrs = dsched.get_last_lr()
        np.testing.assert_allclose(dlrs, tsched.get_last_lr(), rtol=1e-12, atol=0,
                                   err_msg=f"step {t}")
        assert dlrs == [g["lr"] for g in dopt.param_groups]
        np.testing.assert_allclose(_momenta(dopt), _momenta(topt), rtol=1e-12,
                                   err_msg=f"momentum at step {t}")
        if t == steps:
            break
        dopt.step()
        topt.step()
        dsched.step()
        tsched.step()
    assert dsched.last_epoch == tsched.last_epoch
    assert [g.get("initial_lr") for g in dopt.param_groups] == \
        [g.get("initial_lr") for g in topt.param_groups]


@requires_torch
@pytest.mark.parametrize("mode,threshold_mode", [("min", "rel"), ("min", "abs"), ("max", "rel"),
                                                 ("max", "abs")])
def test_reduce_lr_on_plateau_matches_torch(mode, threshold_mode):
    kwargs = dict(mode=mode, factor=0.5, patience=2, threshold=0.05,
                  threshold_mode=threshold_mode, cooldown=1, min_lr=[1e-3, 0.01], eps=1e-4)
    dopt, topt = _opt(dg), _opt(torch)
    dsched = L.ReduceLROnPlateau(dopt, **kwargs)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    rng = np.random.default_rng(0)
    metrics = np.concatenate([np.linspace(1.0, 0.5, 10), np.full(10, 0.5),
                              0.5 + 0.02 * rng.standard_normal(30)])
    if mode == "max":
        metrics = 2.0 - metrics  # rises, then plateaus
    for t, m in enumerate(metrics):
        dopt.step()
        topt.step()
        dsched.step(dg.tensor(m) if t % 2 else float(m))  # m is a float64 scalar
        tsched.step(float(m))
        assert dsched.get_last_lr() == tsched.get_last_lr(), t
        assert dsched.num_bad_epochs == tsched.num_bad_epochs
        assert dsched.cooldown_counter == tsched.cooldown_counter
    assert dsched.get_last_lr() != [0.1, 0.03]  # the schedule did reduce
    assert list(dsched.state_dict()) == list(tsched.state_dict())


@requires_torch
@pytest.mark.parametrize("case", CASES[:1] + CASES[2:5] + CASES[12:13],
                         ids=lambda c: c[0])
def test_state_dict_keys_mirror_torch(case):
    cls, kwargs, opt_name, opt_kwargs = case
    dsched = _sched(dg, cls, _opt(dg, opt_name, **opt_kwargs), kwargs)
    tsched = _sched(torch, cls, _opt(torch, opt_name, **opt_kwargs), kwargs)
    assert dsched.state_dict() == tsched.state_dict()
    assert list(dsched.state_dict()) == list(tsched.state_dict())
    assert list(dsched.optimizer.param_groups[0]) == list(tsched.optimizer.param_groups[0])


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "LambdaLR"],
                         ids=lambda c: _case_id(c))
def test_state_dict_round_trip(case):
    cls, kwargs, opt_name, opt_kwargs = case
    ref_opt = _opt(dg, opt_name, **opt_kwargs)
    ref = _sched(dg, cls, ref_opt, kwargs)
    for _ in range(40):
        ref_opt.step()
        ref.step()

    opt1 = _opt(dg, opt_name, **opt_kwargs)
    s1 = _sched(dg, cls, opt1, kwargs)
    for _ in range(20):
        opt1.step()
        s1.step()
    opt_sd, sched_sd = opt1.state_dict(), s1.state_dict()
    opt2 = _opt(dg, opt_name, **opt_kwargs)
    s2 = _sched(dg, cls, opt2, kwargs)  # scheduler first, then the optimizer state (PyTorch)
    opt2.load_state_dict(opt_sd)
    s2.load_state_dict(sched_sd)
    for _ in range(20):
        opt2.step()
        s2.step()
    assert s2.get_last_lr() == ref.get_last_lr()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in ref_opt.param_groups]
    assert s1.last_epoch == 20  # loading copied, s2's steps did not move s1


def test_lambda_lr_saves_callable_objects_not_functions():
    opt = _opt(dg)
    sched = L.LambdaLR(opt, [lambda e: 1.0, _Scaled(0.5)])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [None, {"rate": 0.5}]
    sd["lr_lambdas"][1]["rate"] = 0.25
    sched.load_state_dict(sd)
    assert sched.lr_lambdas[1].rate == 0.25


def test_resume_with_last_epoch():
    opt = _opt(dg)
    with pytest.raises(KeyError, match=r"StepLR: param 'initial_lr' is not specified in "
                                       r"param_groups\[0\]"):
        L.StepLR(opt, step_size=2, last_epoch=5)
    assert "initial_lr" not in opt.param_groups[0]
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    sched = L.ExponentialLR(opt, gamma=0.5, last_epoch=3)
    assert sched.last_epoch == 4
    opt.step()
    with pytest.warns(UserWarning, match="The epoch parameter in `scheduler.step\\(\\)`"):
        sched.step(epoch=2)  # deprecated: closed form
    np.testing.assert_allclose(sched.get_last_lr(), [0.1 * 0.25, 0.03 * 0.25])


def test_warnings():
    opt = _opt(dg)
    sched = L.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match=r"Detected call of `lr_scheduler.step\(\)` before "
                                         r"`optimizer.step\(\)`"):
        sched.step()
    opt = _opt(dg)
    sched = L.StepLR(opt, step_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
        sched.step()
        opt.step()
        sched.step()
    assert "step" not in opt.__dict__  # the one-shot tracker removed itself
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        sched.get_lr()


def test_one_cycle_stepping_past_total_steps():
    opt = _opt(dg, momentum=0.9)
    sched = L.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    opt.step()
    sched.step()
    sched.step()
    sched.step()
    with pytest.raises(ValueError, match="OneCycleLR: Tried to step 4 times. The specified "
                                         "number of total steps is 3"):
        sched.step()


BAD = [
    ("StepLR", dict(step_size=0), ValueError, "StepLR: step_size must be >= 1; got 0"),
    ("StepLR", dict(step_size=2.5), TypeError, "StepLR: step_size must be an int"),
    ("CosineAnnealingLR", dict(T_max=0), ValueError, "T_max must be > 0"),
    ("LambdaLR", dict(lr_lambda=[lambda e: 1.0]), ValueError, "LambdaLR: Expected 2 lr_lambdas, "
                                                               "but got 1"),
    ("LambdaLR", dict(lr_lambda=0.5), TypeError, "lr_lambda should be a function"),
    ("ConstantLR", dict(factor=2.0), ValueError, "between 0 and 1"),
    ("LinearLR", dict(start_factor=0.0), ValueError, "Starting multiplicative factor"),
    ("OneCycleLR", dict(max_lr=0.1), ValueError, "You must define either total_steps OR"),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=0), ValueError,
     "Expected positive integer total_steps, but got 0"),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=10, pct_start=1), ValueError,
     "Expected float between 0 and 1 pct_start"),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=10, anneal_strategy="exp"), ValueError,
     "anneal_strategy must be one of 'cos' or 'linear'"),
    ("OneCycleLR", dict(max_lr=[0.1, 0.2, 0.3], total_steps=10), ValueError,
     "max_lr must have the same length as optimizer.param_groups; expected 2 values, got 3"),
    ("ReduceLROnPlateau", dict(factor=1.0), ValueError, "Factor should be < 1.0"),
    ("ReduceLROnPlateau", dict(mode="up"), ValueError, "mode up is unknown"),
    ("ReduceLROnPlateau", dict(threshold_mode="pct"), ValueError, "threshold mode pct is unknown"),
    ("ReduceLROnPlateau", dict(min_lr=[0.1]), ValueError, "expected 2 min_lrs, got 1"),
]


@pytest.mark.parametrize("case", BAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD)])
def test_bad_arguments(case):
    cls, kwargs, exc, msg = case
    opt = _opt(dg)
    groups_before = [dict(g) for g in opt.param_groups]
    with pytest.raises(exc, match=msg):
        getattr(L, cls)(opt, **kwargs)
    assert opt.param_groups == groups_before  # nothing half-applied


def test_one_cycle_needs_momentum_or_betas():
    opt = _opt(dg, "Adagrad")
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        L.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    assert "initial_lr" not in opt.param_groups[0]


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="StepLR: list is not an Optimizer"):
        L.StepLR([], step_size=1)


def test_sequential_lr_matches_torch_warmup_then_cosine():
    pytest.importorskip("torch")
    dopt, topt = _opt(dg), _opt(torch)
    dsched = L.SequentialLR(dopt, [L.LinearLR(dopt, start_factor=0.1, total_iters=5),
                                   L.CosineAnnealingLR(dopt, T_max=20)], milestones=[5])
    TL = torch.optim.lr_scheduler
    tsched = TL.SequentialLR(topt, [TL.LinearLR(topt, start_factor=0.1, total_iters=5),
                                    TL.CosineAnnealingLR(topt, T_max=20)], milestones=[5])
    for _ in range(30):
        np.testing.assert_allclose(dsched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12)
        dopt.step()
        topt.step()
        dsched.step()
        tsched.step()


def test_multistep_milestones_survive_a_plain_dict_round_trip():
    opt = _opt(dg)
    sched = L.MultiStepLR(opt, milestones=[2, 2, 4], gamma=0.5)
    sd = sched.state_dict()
    sd["milestones"] = dict(sd["milestones"])  # e.g. through a JSON-like checkpoint
    sched.load_state_dict(sd)
    assert sched.milestones == {2: 2, 4: 1}
    opt.step()
    with pytest.warns(UserWarning, match="epoch parameter"):
        sched.step(epoch=4)  # closed form needs Counter.elements()
    np.testing.assert_allclose(sched.get_last_lr(), [0.1 / 8, 0.03 / 8])
