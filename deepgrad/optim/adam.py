"""``Adam`` and ``AdamW``: adaptive moment estimation (Kingma & Ba), with decoupled weight
decay for AdamW (Loshchilov & Hutter)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .. import _native
from .optimizer import (native_operands, _check_impl_flags, _check_nonneg, _check_real,
                        _ElementwiseOptimizer)

_mul = np.multiply
_add = np.add
_sub = np.subtract
_div = np.divide
_sqrt = np.sqrt
_array = np.array


class Adam(_ElementwiseOptimizer):
    r"""Adam, PyTorch's algorithm (step t counted per parameter)::

        g = -grad if maximize else grad
        if weight_decay != 0:
            p = p * (1 - lr * weight_decay)  if decoupled_weight_decay (AdamW)
            g = g + weight_decay * p         otherwise (L2)
        m = lerp(m, g, 1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                (amsgrad; v_max replaces v below)
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps
        p = p - lr / (1 - beta1**t) * m / denom

    Args:
        params: tensors, ``(name, tensor)`` pairs or param-group dicts to optimize.
        lr: learning rate (default 1e-3).
        betas: decay rates of the first and second moment averages (default (0.9, 0.999)).
        eps: added to the denominator for stability (default 1e-8).
        weight_decay: L2 penalty, or decoupled decay with ``decoupled_weight_decay`` (default 0).
        amsgrad: use the maximum of past second moments (AMSGrad).
        maximize: maximize the objective instead of minimizing it.
        decoupled_weight_decay: decay the weights directly, as AdamW does.
        foreach, fused, capturable: accepted for PyTorch compatibility and ignored.
        differentiable: not supported (raises NotImplementedError when True).

    Example:
        >>> opt = deepgrad.optim.Adam(model.parameters(), lr=1e-3)
    """

    _param_shaped_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        name = type(self).__name__
        _check_nonneg(name, "lr", group["lr"], "learning rate")
        _check_nonneg(name, "eps", group["eps"], "epsilon value")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(
                f"{name}: betas should be a pair of floats; expected (beta1, beta2), got "
                f"{betas!r}")
        for i, beta in enumerate(betas):
            _check_real(name, f"betas[{i}]", beta)
            if not 0.0 <= float(beta) < 1.0:
                raise ValueError(
                    f"{name}: Invalid beta parameter at index {i}; expected 0.0 <= betas[{i}] "
                    f"< 1.0, got {beta}")
        _check_nonneg(name, "weight_decay", group["weight_decay"], "weight_decay value")
        _check_impl_flags(name, group)

    # -- the algorithm (run by _ElementwiseOptimizer.step) ------------------------------------
    _has_step = True

    def _hyper(self, group: dict[str, Any]) -> tuple:
        beta1, beta2 = group["betas"]
        return (float(group["lr"]), float(beta1), float(beta2), float(group["eps"]),
                float(group["weight_decay"]), bool(group["amsgrad"]), bool(group["maximize"]),
                bool(group.get("decoupled_weight_decay", False)))

    def _state_names(self, h: tuple) -> tuple:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if h[5] else ("exp_avg", "exp_avg_sq")

    def _static_consts(self, h: tuple, dt: np.dtype) -> tuple:
        lr, beta1, beta2, eps, weight_decay = h[:5]
        w1 = 1.0 - beta1
        return (_array(w1 if w1 < 0.5 else 1.0 - w1, dt), _array(beta2, dt),
                _array(1.0 - beta2, dt), _array(eps, dt), _array(weight_decay, dt),
                _array(1.0 - lr * weight_decay, dt))

    def _step_consts(self, h: tuple, dt: np.dtype, step: int) -> tuple:
        lr, beta1, beta2 = h[:3]
        step_size = lr / (1.0 - beta1 ** step)
        return (_array((1.0 - beta2 ** step) ** 0.5, dt), _array(-step_size, dt))

    def _native_update(self, a, d, bufs, h, c, sc, fresh) -> bool:
        k = native_operands(a, d, bufs)
        if k is None:
            return False
        _, beta1, _, _, weight_decay, amsgrad, maximize, decoupled = h
        flags = ((weight_decay != 0) | decoupled << 1 | maximize << 2 | amsgrad << 3
                 | (1.0 - beta1 < 0.5) << 4)
        addr = _native.address
        k.adam_update[a.dtype](addr(a), addr(d), addr(bufs[0]), addr(bufs[1]),
                               addr(bufs[2]) if amsgrad else None, a.size,
                               *(float(x) for x in c), *(float(x) for x in sc), flags)
        return True

    def _update(self, a, d, bufs, h, c, sc, t0, t1, fresh) -> None:
        _, beta1, _, _, weight_decay, amsgrad, maximize, decoupled = h
        c_w1, c_b2, c_1mb2, c_eps, c_wd, c_decay = c
        c_bc2_sqrt, c_neg_step = sc
        m = bufs[0]
        v = bufs[1]
        if weight_decay != 0:
            if decoupled:
                _mul(a, c_decay, out=a)
                if maximize:
                    np.negative(d, out=t0)
                    d = t0
            else:
                _mul(a, c_wd, out=t0)
                if maximize:
                    _sub(t0, d, out=t0)
                else:
                    _add(d, t0, out=t0)
                d = t0
        elif maximize:
            np.negative(d, out=t0)
            d = t0
        # m = lerp(m, d, 1 - beta1), with torch's two forms of lerp
        _sub(d, m, out=t1)
        _mul(t1, c_w1, out=t1)
        if 1.0 - beta1 < 0.5:
            _add(m, t1, out=m)
        else:
            _sub(d, t1, out=m)
        # v = beta2 * v + (1 - beta2) * d * d
        _mul(v, c_b2, out=v)
        _mul(d, c_1mb2, out=t1)
        _mul(t1, d, out=t1)
        _add(v, t1, out=v)
        if amsgrad:
            np.maximum(bufs[2], v, out=bufs[2])
            v = bufs[2]
        # p = p - step_size * m / (sqrt(v) / sqrt(bias_correction2) + eps)
        _sqrt(v, out=t1)
        _div(t1, c_bc2_sqrt, out=t1)
        _add(t1, c_eps, out=t1)
        _div(m, t1, out=t1)
        _mul(t1, c_neg_step, out=t1)
        _add(a, t1, out=a)


class AdamW(Adam):
    r"""Adam with decoupled weight decay: ``p = p * (1 - lr * weight_decay)`` before the Adam
    update, instead of adding ``weight_decay * p`` to the gradient.

    Args: as :class:`Adam`, with ``weight_decay`` defaulting to 1e-2.

    Example:
        >>> opt = deepgrad.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
