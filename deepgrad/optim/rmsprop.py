"""``RMSprop``: divide the gradient by a running root mean square (Hinton's lecture 6e)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .optimizer import l2_gradient, _check_impl_flags, _check_nonneg, _ElementwiseOptimizer

_mul = np.multiply
_add = np.add
_sub = np.subtract
_div = np.divide
_sqrt = np.sqrt
_array = np.array


class RMSprop(_ElementwiseOptimizer):
    r"""RMSprop, PyTorch's algorithm::

        g = -grad if maximize else grad
        if weight_decay != 0:  g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            m = lerp(m, g, 1 - alpha);  avg = sqrt(v - m * m) + eps
        else:
            avg = sqrt(v) + eps
        if momentum > 0:  b = momentum * b + g / avg;  p = p - lr * b
        else:             p = p - lr * g / avg

    Args:
        params: tensors, ``(name, tensor)`` pairs or param-group dicts to optimize.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant of the squared-gradient average (default 0.99).
        eps: added to the denominator for stability (default 1e-8).
        weight_decay: L2 penalty (default 0).
        momentum: momentum factor (default 0).
        centered: normalize by an estimate of the gradient's variance.
        maximize: maximize the objective instead of minimizing it.
        capturable, foreach: accepted for PyTorch compatibility and ignored.
        differentiable: not supported (raises NotImplementedError when True).

    Example:
        >>> opt = deepgrad.optim.RMSprop(model.parameters(), lr=1e-2, momentum=0.9)
    """

    _param_shaped_state = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, capturable: bool = False, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        _check_nonneg("RMSprop", "lr", group["lr"], "learning rate")
        _check_nonneg("RMSprop", "eps", group["eps"], "epsilon value")
        _check_nonneg("RMSprop", "momentum", group["momentum"], "momentum value")
        _check_nonneg("RMSprop", "weight_decay", group["weight_decay"], "weight_decay value")
        _check_nonneg("RMSprop", "alpha", group["alpha"], "alpha value")
        _check_impl_flags("RMSprop", group)

    # -- the algorithm (run by _ElementwiseOptimizer.step) ------------------------------------
    _has_step = True

    def _hyper(self, group: dict[str, Any]) -> tuple:
        return (float(group["lr"]), float(group["alpha"]), float(group["eps"]),
                float(group["weight_decay"]), float(group["momentum"]), bool(group["centered"]),
                bool(group["maximize"]))

    def _state_names(self, h: tuple) -> tuple:
        names: tuple[str, ...] = ("square_avg",)
        if h[4] > 0:
            names += ("momentum_buffer",)
        if h[5]:
            names += ("grad_avg",)
        return names

    def _static_consts(self, h: tuple, dt: np.dtype) -> tuple:
        lr, alpha, eps, weight_decay, momentum = h[:5]
        w = 1.0 - alpha
        return (_array(-lr, dt), _array(alpha, dt), _array(w, dt),
                _array(w if w < 0.5 else 1.0 - w, dt), _array(eps, dt),
                _array(weight_decay, dt), _array(momentum, dt))

    def _update(self, a, d, bufs, h, c, sc, t0, t1, fresh) -> None:
        _, alpha, _, weight_decay, momentum, centered, maximize = h
        neg_lr, c_alpha, c_w, c_lerp, c_eps, c_wd, c_mom = c
        d = l2_gradient(a, d, weight_decay, c_wd, maximize, t0)
        # v = alpha * v + (1 - alpha) * d * d
        v = bufs[0]
        _mul(v, c_alpha, out=v)
        _mul(d, c_w, out=t1)
        _mul(t1, d, out=t1)
        _add(v, t1, out=v)
        if centered:
            # m = lerp(m, d, 1 - alpha); avg = sqrt(v - m * m)
            m = bufs[-1]
            _sub(d, m, out=t1)
            _mul(t1, c_lerp, out=t1)
            if 1.0 - alpha < 0.5:
                _add(m, t1, out=m)
            else:
                _sub(d, t1, out=m)
            _mul(m, m, out=t1)
            _sub(v, t1, out=t1)
            _sqrt(t1, out=t1)
        else:
            _sqrt(v, out=t1)
        _add(t1, c_eps, out=t1)
        if momentum > 0:
            b = bufs[1]
            _mul(b, c_mom, out=b)
            _div(d, t1, out=t1)
            _add(b, t1, out=b)
            _mul(b, neg_lr, out=t1)
        else:
            _div(d, t1, out=t1)
            _mul(t1, neg_lr, out=t1)
        _add(a, t1, out=a)
