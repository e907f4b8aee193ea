"""Gradient clipping, in place, as ``torch.nn.utils`` does it."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from ...tensor import Tensor, _make


def _grads(parameters) -> list:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    """Scale all gradients together so that their joint norm is at most ``max_norm``.

    Returns the total norm before clipping (as a 0-d tensor).
    """
    grads = _grads(parameters)
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if not grads:
        return _make(np.zeros((), np.float32))
    dtype = grads[0].data.dtype
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g.data))) if g.data.size else 0.0 for g in grads)
    else:
        total = sum(float(np.sum(np.abs(g.data) ** norm_type)) for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            f"{total}; pass error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            np.multiply(g.data, g.data.dtype.type(coef), out=g.data)
            g._version += 1
    return _make(np.asarray(total, dtype))


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float,
                     foreach=None) -> None:
    """Clip every gradient element to ``[-clip_value, clip_value]``, in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        np.clip(g.data, -clip_value, clip_value, out=g.data)
        g._version += 1
