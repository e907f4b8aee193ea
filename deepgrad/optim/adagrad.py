"""``Adagrad``: per-coordinate learning rates from the sum of squared gradients (Duchi et al.)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..tensor import _make
from .optimizer import l2_gradient, _check_impl_flags, _check_nonneg, _ElementwiseOptimizer

_mul = np.multiply
_add = np.add
_sub = np.subtract
_div = np.divide
_sqrt = np.sqrt
_array = np.array


class Adagrad(_ElementwiseOptimizer):
    r"""Adagrad, PyTorch's algorithm (step t counted per parameter)::

        g = -grad if maximize else grad
        if weight_decay != 0:  g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g                       (s starts at initial_accumulator_value)
        p = p - clr * g / (sqrt(s) + eps)

    Args:
        params: tensors, ``(name, tensor)`` pairs or param-group dicts to optimize.
        lr: learning rate (default 1e-2).
        lr_decay: learning-rate decay per step (default 0).
        weight_decay: L2 penalty (default 0).
        initial_accumulator_value: starting value of the squared-gradient sums (default 0).
        eps: added to the denominator for stability (default 1e-10).
        maximize: maximize the objective instead of minimizing it.
        foreach, fused: accepted for PyTorch compatibility and ignored.
        differentiable: not supported (raises NotImplementedError when True).

    As in PyTorch, the state (``step`` and ``sum``) is created with the optimizer, not at the
    first step.

    Example:
        >>> opt = deepgrad.optim.Adagrad(model.parameters(), lr=1e-2)
    """

    _param_shaped_state = ("sum",)

    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        _check_nonneg("Adagrad", "lr", group["lr"], "learning rate")
        _check_nonneg("Adagrad", "lr_decay", group["lr_decay"], "lr_decay value")
        _check_nonneg("Adagrad", "weight_decay", group["weight_decay"], "weight_decay value")
        _check_nonneg("Adagrad", "initial_accumulator_value",
                      group["initial_accumulator_value"], "initial_accumulator_value value")
        _check_nonneg("Adagrad", "eps", group["eps"], "epsilon value")
        _check_impl_flags("Adagrad", group)

    def _append_group(self, group: dict[str, Any]) -> None:
        super()._append_group(group)
        init = float(group["initial_accumulator_value"])
        for p in group["params"]:
            st = self.state[p]
            if not st:
                self._init_state(st, p, init)

    @staticmethod
    def _init_state(st: dict, p, init: float) -> None:
        st["step"] = 0
        st["sum"] = _make(np.full_like(p.data, init))

    # -- the algorithm (run by _ElementwiseOptimizer.step) ------------------------------------
    _has_step = True

    def _hyper(self, group: dict[str, Any]) -> tuple:
        return (float(group["lr"]), float(group["lr_decay"]), float(group["eps"]),
                float(group["weight_decay"]), bool(group["maximize"]),
                float(group["initial_accumulator_value"]))

    def _state_names(self, h: tuple) -> tuple:
        return ("sum",)

    def _new_state(self, name: str, a: np.ndarray, h: tuple) -> np.ndarray:
        return np.full_like(a, h[5])

    def _static_consts(self, h: tuple, dt: np.dtype) -> tuple:
        return (_array(h[2], dt), _array(h[3], dt))

    def _step_consts(self, h: tuple, dt: np.dtype, step: int) -> tuple:
        lr, lr_decay = h[:2]
        return (_array(-(lr / (1 + (step - 1) * lr_decay)), dt),)

    def _update(self, a, d, bufs, h, c, sc, t0, t1, fresh) -> None:
        weight_decay, maximize = h[3], h[4]
        c_eps, c_wd = c
        (neg_clr,) = sc
        d = l2_gradient(a, d, weight_decay, c_wd, maximize, t0)
        # s = s + d * d;  p = p - clr * d / (sqrt(s) + eps)
        s = bufs[0]
        _mul(d, d, out=t1)
        _add(s, t1, out=s)
        _sqrt(s, out=t1)
        _add(t1, c_eps, out=t1)
        _div(d, t1, out=t1)
        _mul(t1, neg_clr, out=t1)
        _add(a, t1, out=a)
