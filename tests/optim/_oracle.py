"""Run a deepgrad optimizer and a torch optimizer side by side on the same gradients."""
from __future__ import annotations

import numpy as np

import deepgrad as dg
import deepgrad.optim  # noqa: F401

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

SHAPES = [(3, 4), (4,), (2, 3, 2)]


def make_params(lib, arrays, dtype):
    if lib is dg:
        return [dg.nn.Parameter(np.array(a, dtype=dtype)) for a in arrays]
    return [torch.nn.Parameter(torch.tensor(np.array(a, dtype=dtype))) for a in arrays]


def build(lib, cls_name, params, kwargs, groups):
    """``groups``: None (one group of all params) or a list of (indices, overrides)."""
    cls = getattr(lib.optim, cls_name)
    if groups is None:
        return cls(params, **kwargs)
    spec = [dict(params=[params[i] for i in idx], **over) for idx, over in groups]
    return cls(spec, **kwargs)


def as_numpy(x):
    if isinstance(x, dg.Tensor):
        return x.data
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


class Pair:
    """One deepgrad and one torch optimizer fed identical gradients step after step.

    The gradient of parameter i at step t is ``0.5 * p_i + noise`` (a quadratic plus noise, so
    the trajectory feeds back into the gradients). With ``skip``, parameter 2 has no gradient
    every 4th step (so steps alternate between the flat and the per-parameter path); without,
    the group stays on the flat path.
    """

    def __init__(self, cls_name, kwargs=None, groups=None, dtype=np.float64, seed=0, skip=True):
        self.skip = skip
        self.rng = np.random.default_rng(seed)
        init = [self.rng.standard_normal(s) for s in SHAPES]
        self.dtype = dtype
        self.dp = make_params(dg, init, dtype)
        self.tp = make_params(torch, init, dtype)
        kwargs = kwargs or {}
        self.dopt = build(dg, cls_name, self.dp, kwargs, groups)
        self.topt = build(torch, cls_name, self.tp, kwargs, groups)
        self.t = 0

    def step(self):
        for i, (dp, tp) in enumerate(zip(self.dp, self.tp)):
            noise = self.rng.standard_normal(dp.shape)
            if self.skip and i == 2 and self.t % 4 == 3:
                dp.grad = None
                tp.grad = None
                continue
            dp.grad = dg.tensor((0.5 * dp.data + noise).astype(self.dtype))
            tp.grad = torch.tensor((0.5 * tp.detach().numpy() + noise).astype(self.dtype))
        self.dopt.step()
        self.topt.step()
        self.t += 1

    def assert_close(self, rtol=1e-6, atol=1e-9):
        for i, (dp, tp) in enumerate(zip(self.dp, self.tp)):
            np.testing.assert_allclose(dp.data, tp.detach().numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"param {i} after {self.t} steps")

    def assert_state_close(self, rtol=1e-6, atol=1e-9):
        dsd = self.dopt.state_dict()
        tsd = self.topt.state_dict()
        assert sorted(dsd["state"]) == sorted(tsd["state"])
        for k, tstate in tsd["state"].items():
            dstate = dsd["state"][k]
            assert list(dstate) == list(tstate), (k, list(dstate), list(tstate))
            for name, tv in tstate.items():
                dv = dstate[name]
                if name == "step":
                    assert float(dv) == float(tv)
                    continue
                np.testing.assert_allclose(as_numpy(dv), as_numpy(tv), rtol=rtol, atol=atol,
                                           err_msg=f"state {k}.{name}")
