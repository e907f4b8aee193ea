"""Finite-difference gradient checking in float64."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .engine import backward as _backward
from .grad_mode import enable_grad


class GradcheckError(RuntimeError):
    """Raised by ``gradcheck`` when analytic and numerical gradients disagree."""


def _outputs(fn, inputs) -> tuple:
    with enable_grad():
        out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f")


def _flat_outputs(fn, inputs) -> np.ndarray:
    from .grad_mode import no_grad

    with no_grad():
        out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return np.concatenate([np.asarray(o.data, np.float64).ravel() for o in outs
                           if isinstance(o, Tensor) and o.dtype.kind == "f"])


def _analytic_vjp(fn, inputs, diff, cotangents) -> list:
    """Gradients of sum(out_i * cotangent_i) with respect to each differentiable input."""
    outs = _outputs(fn, inputs)
    roots = [o for o in outs if o.requires_grad]
    if not roots:
        return [np.zeros(inputs[i].shape) for i in diff]
    cots = []
    offset = 0
    for o in outs:
        n = o.data.size
        if o.requires_grad:
            cots.append(cotangents[offset:offset + n].reshape(o.shape).astype(o.dtype))
        offset += n
    grads = _backward(roots, cots, inputs=[inputs[i] for i in diff])
    return [np.zeros(inputs[i].shape) if g is None else np.asarray(g.data, np.float64)
            for i, g in zip(diff, grads)]


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, fast_mode: bool = False, seed: int = 0) -> bool:
    """Compare ``fn``'s analytic gradients with central finite differences.

    Args:
        fn: takes the tensors in ``inputs`` and returns a tensor or a tuple of tensors.
        inputs: a tensor or tuple of tensors; those with ``requires_grad=True`` are checked and
            must be float64 (float32 differences are too coarse to say anything).
        eps: the finite-difference step.
        atol, rtol: the tolerance of ``|analytic - numerical| <= atol + rtol * |numerical|``.
        fast_mode: check one random directional derivative per input instead of the full
            Jacobian; use it for large inputs.
    Returns:
        True if every gradient matches; otherwise raises ``GradcheckError`` (or returns False
        when ``raise_exception=False``).
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    diff = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input has requires_grad=True; nothing to check")
    for i in diff:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; use float64 inputs "
                "(x.double()), float32 is too coarse for finite differences")
    rng = np.random.default_rng(seed)
    n_out = _flat_outputs(fn, inputs).size

    def numerical_directional(i, direction):
        x = inputs[i].data
        saved = x.copy()
        try:
            x += eps * direction
            plus = _flat_outputs(fn, inputs)
            x[...] = saved - eps * direction
            minus = _flat_outputs(fn, inputs)
        finally:
            x[...] = saved
        return (plus - minus) / (2 * eps)

    def fail(msg):
        if raise_exception:
            raise GradcheckError(msg)
        return False

    if fast_mode:
        u = rng.standard_normal(n_out)
        vjps = _analytic_vjp(fn, inputs, diff, u)
        for k, i in enumerate(diff):
            d = rng.standard_normal(inputs[i].shape)
            num = float(u @ numerical_directional(i, d))
            ana = float(np.sum(vjps[k] * d))
            if not abs(ana - num) <= atol + rtol * abs(num):
                return fail(f"gradcheck: input {i}: directional derivative analytic {ana!r} "
                            f"vs numerical {num!r}")
        return True

    # full Jacobians, one row of the analytic one per output element
    for k, i in enumerate(diff):
        x = inputs[i]
        numerical = np.zeros((x.data.size, n_out))
        for j in range(x.data.size):
            e = np.zeros(x.data.size)
            e[j] = 1.0
            numerical[j] = numerical_directional(i, e.reshape(x.shape))
        analytic = np.zeros_like(numerical)
        for r in range(n_out):
            cot = np.zeros(n_out)
            cot[r] = 1.0
            analytic[:, r] = _analytic_vjp(fn, inputs, [i], cot)[0].ravel()
        bad = np.abs(analytic - numerical) > atol + rtol * np.abs(numerical)
        if bad.any():
            j, r = np.argwhere(bad)[0]
            return fail(
                f"gradcheck: Jacobian mismatch for input {i} (shape {x.shape}) at input element "
                f"{j}, output element {r}: analytic {analytic[j, r]!r}, numerical "
                f"{numerical[j, r]!r} ({int(bad.sum())} of {bad.size} entries differ)")
    return True
