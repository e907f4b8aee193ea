"""Reverse-mode automatic differentiation: the engine, grad mode, Function and gradcheck."""
from __future__ import annotations

from ..tensor import Tensor
from . import engine
from .function import Function
from .gradcheck import GradcheckError, gradcheck
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled


def backward(tensors, grad_tensors=None, retain_graph: bool = False) -> None:
    """Backward from several tensors at once; gradients are summed into the leaves' ``.grad``."""
    if isinstance(tensors, Tensor):
        tensors = (tensors,)
        grad_tensors = None if grad_tensors is None else (grad_tensors,)
    engine.backward(list(tensors), None if grad_tensors is None else list(grad_tensors),
                    retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool = False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned instead of put in ``.grad``."""
    single = isinstance(inputs, Tensor)
    if isinstance(outputs, Tensor):
        outputs = [outputs]
        grad_outputs = None if grad_outputs is None else [grad_outputs]
    inputs = [inputs] if single else list(inputs)
    result = engine.backward(list(outputs), grad_outputs, retain_graph, inputs=inputs)
    if not allow_unused and any(g is None for g in result):
        raise RuntimeError(
            "grad: one of the inputs was not used to compute the outputs; pass "
            "allow_unused=True to get None for it")
    return result


__all__ = ["Function", "backward", "grad", "gradcheck", "GradcheckError", "no_grad",
           "enable_grad", "set_grad_enabled", "is_grad_enabled"]
