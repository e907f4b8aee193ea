"""``SGD``: stochastic gradient descent with optional momentum, Nesterov momentum, weight decay."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .. import _native
from .optimizer import (l2_gradient, native_operands, _check_impl_flags, _check_nonneg,
                        _check_real, _ElementwiseOptimizer)

_mul = np.multiply
_add = np.add
_sub = np.subtract
_array = np.array


class SGD(_ElementwiseOptimizer):
    r"""Stochastic gradient descent, PyTorch's algorithm::

        g = -grad if maximize else grad
        if weight_decay != 0:  g = g + weight_decay * p
        if momentum != 0:
            b = g                                   (first step)
            b = momentum * b + (1 - dampening) * g  (later steps)
            g = g + momentum * b if nesterov else b
        p = p - lr * g

    Args:
        params: tensors, ``(name, tensor)`` pairs or param-group dicts to optimize.
        lr: learning rate (default 1e-3).
        momentum: momentum factor (default 0).
        dampening: dampening of the momentum (default 0).
        weight_decay: L2 penalty (default 0).
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: maximize the objective instead of minimizing it.
        foreach, fused: accepted for PyTorch compatibility; deepgrad has one implementation.
        differentiable: not supported (raises NotImplementedError when True).

    Example:
        >>> opt = deepgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> opt.zero_grad(); loss.backward(); opt.step()
    """

    _param_shaped_state = ("momentum_buffer",)

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, differentiable=differentiable, fused=fused)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        _check_nonneg("SGD", "lr", group["lr"], "learning rate")
        _check_nonneg("SGD", "momentum", group["momentum"], "momentum value")
        _check_nonneg("SGD", "weight_decay", group["weight_decay"], "weight_decay value")
        _check_real("SGD", "dampening", group["dampening"])
        _check_impl_flags("SGD", group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "SGD: Nesterov momentum requires a momentum and zero dampening; expected "
                f"momentum > 0 and dampening == 0, got momentum={group['momentum']}, "
                f"dampening={group['dampening']}")

    # -- the algorithm (run by _ElementwiseOptimizer.step) ------------------------------------
    def _hyper(self, group: dict[str, Any]) -> tuple:
        return (float(group["lr"]), float(group["momentum"]), float(group["dampening"]),
                float(group["weight_decay"]), bool(group["nesterov"]), bool(group["maximize"]))

    def _state_names(self, h: tuple) -> tuple:
        return ("momentum_buffer",) if h[1] != 0 else ()

    def _new_state(self, name: str, a: np.ndarray, h: tuple) -> np.ndarray:
        return np.empty_like(a)  # filled with the first gradient by _update (fresh=True)

    def _static_consts(self, h: tuple, dt: np.dtype) -> tuple:
        lr, momentum, dampening, weight_decay = h[:4]
        return (_array(-lr, dt), _array(weight_decay, dt), _array(momentum, dt),
                _array(1.0 - dampening, dt))

    def _native_update(self, a, d, bufs, h, c, sc, fresh) -> bool:
        k = native_operands(a, d, bufs)
        if k is None:
            return False
        _, momentum, dampening, weight_decay, nesterov, maximize = h
        neg_lr, wd, mom, damp = c
        flags = ((weight_decay != 0) | maximize << 1 | (momentum != 0) << 2 | fresh << 3
                 | (dampening != 0) << 4 | nesterov << 5)
        addr = _native.address
        k.sgd_update[a.dtype](addr(a), addr(d), addr(bufs[0]) if bufs else None, a.size,
                              float(neg_lr), float(wd), float(mom), float(damp), flags)
        return True

    def _update(self, a, d, bufs, h, c, sc, t0, t1, fresh) -> None:
        _, momentum, dampening, weight_decay, nesterov, maximize = h
        neg_lr, wd, mom, damp = c
        d = l2_gradient(a, d, weight_decay, wd, maximize, t0)
        if momentum != 0:
            b = bufs[0]
            if fresh:
                np.copyto(b, d)
            else:
                _mul(b, mom, out=b)
                if dampening != 0:
                    _mul(d, damp, out=t1)
                    _add(b, t1, out=b)
                else:
                    _add(b, d, out=b)
            if nesterov:
                _mul(b, mom, out=t1)
                _add(d, t1, out=t1)
                d = t1
            else:
                d = b
        _mul(d, neg_lr, out=t1)
        _add(a, t1, out=a)
