"""Attach the op functions to ``Tensor`` as methods and operators.

``x.exp()`` is ``deepgrad.exp(x)``: the functions take the tensor first, so they are assigned
as methods directly, with no wrapper in between.
"""
from __future__ import annotations

import numpy as np

from ..autograd.grad_mode import state as _grad_state
from ..tensor import Tensor, _make
from . import elementwise as ew
from . import linalg, nn_ops, reduce, shape
from .elementwise import Add, Div, Mul, Pow, Sub, _binary


def _attach(name: str, fn) -> None:
    setattr(Tensor, name, fn)


def _reflected(cls, op):
    def method(self, other):
        return _binary(cls, op, other, self)

    return method


def _forward(cls, op):
    def method(self, other):
        return _binary(cls, op, self, other)

    return method


_attach("__add__", _forward(Add, "add"))
_attach("__radd__", _reflected(Add, "add"))
_attach("__sub__", _forward(Sub, "sub"))
_attach("__rsub__", _reflected(Sub, "sub"))
_attach("__mul__", _forward(Mul, "mul"))
_attach("__rmul__", _reflected(Mul, "mul"))
_attach("__truediv__", lambda self, other: ew.div(self, other))
_attach("__rtruediv__", lambda self, other: ew.div(other, self))
_attach("__pow__", _forward(Pow, "pow"))
_attach("__rpow__", _reflected(Pow, "pow"))
_attach("__neg__", ew.neg)
_attach("__abs__", ew.abs)
_attach("__matmul__", linalg.matmul)
_attach("__rmatmul__", lambda self, other: linalg.matmul(other, self))
_attach("__getitem__", shape.getitem)

_attach("__eq__", ew.eq)
_attach("__ne__", ew.ne)
_attach("__lt__", ew.lt)
_attach("__le__", ew.le)
_attach("__gt__", ew.gt)
_attach("__ge__", ew.ge)
_attach("__and__", lambda self, other: _make(np.bitwise_and(
    self.data, other.data if isinstance(other, Tensor) else other)))
_attach("__rand__", getattr(Tensor, "__and__"))
_attach("__or__", lambda self, other: _make(np.bitwise_or(
    self.data, other.data if isinstance(other, Tensor) else other)))
_attach("__ror__", getattr(Tensor, "__or__"))
_attach("__xor__", lambda self, other: _make(np.bitwise_xor(
    self.data, other.data if isinstance(other, Tensor) else other)))
_attach("__rxor__", getattr(Tensor, "__xor__"))
_attach("__invert__", lambda self: _make(np.invert(self.data)))
_attach("__floordiv__", lambda self, other: ew.div(self, other, rounding_mode="floor"))
_attach("__mod__", lambda self, other: _make(np.mod(
    self.data, other.data if isinstance(other, Tensor) else other)))

_METHODS = {
    ew: ["add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "sqrt", "sin", "cos",
         "clamp", "clip", "relu", "sigmoid", "tanh", "maximum", "minimum", "square", "clone",
         "eq", "ne", "lt", "le", "gt", "ge", "sign", "floor", "ceil", "round", "isnan", "isinf",
         "isfinite", "logical_and", "logical_or", "logical_not", "allclose", "equal"],
    reduce: ["sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin",
             "logsumexp", "prod", "all", "any"],
    shape: ["reshape", "view", "view_as", "reshape_as", "flatten", "unflatten", "squeeze",
            "unsqueeze", "permute", "transpose", "swapaxes", "t", "expand", "expand_as",
            "repeat", "split", "chunk", "unbind"],
    linalg: ["matmul", "mm", "bmm", "dot"],
    nn_ops: ["softmax", "log_softmax"],
}
for _module, _names in _METHODS.items():
    for _name in _names:
        _attach(_name, getattr(_module, _name))
_attach("subtract", ew.sub)
_attach("multiply", ew.mul)
_attach("divide", ew.div)
_attach("negative", ew.neg)
_attach("absolute", ew.abs)
_attach("where", lambda self, condition, other: ew.where(condition, self, other))


# -- in-place ops: for use under no_grad (optimizer steps, initialisation) ------------------


def _check_inplace(t: Tensor, op: str) -> None:
    if _grad_state.enabled and t.requires_grad:
        if t._ctx is None:
            raise RuntimeError(
                f"{op}: a leaf tensor that requires grad is used in an in-place operation; "
                "do it inside `with deepgrad.no_grad():` (as optimizers do).")
        raise RuntimeError(
            f"{op}: in-place operations on a tensor in the graph are not differentiable in "
            "deepgrad; use the out-of-place form (e.g. y = y + 1 instead of y.add_(1)).")


def _value(other):
    return other.data if isinstance(other, Tensor) else other


def _inplace(op, fn):
    def method(self, *args, **kwargs):
        _check_inplace(self, op)
        try:
            fn(self.data, *args, **kwargs)
        except ValueError as e:
            shapes = ", ".join(str(a.shape) for a in args if isinstance(a, Tensor))
            raise RuntimeError(
                f"{op}: can't apply to a tensor of shape {self.shape}"
                + (f" with operand shapes {shapes}" if shapes else "")
                + f"; in-place results must keep the tensor's shape ({e})") from None
        self._version += 1
        return self

    method.__name__ = op
    return method


def _add_(data, other, alpha=1):
    v = _value(other)
    np.add(data, v if alpha == 1 else v * alpha, out=data, casting="same_kind")


def _sub_(data, other, alpha=1):
    v = _value(other)
    np.subtract(data, v if alpha == 1 else v * alpha, out=data, casting="same_kind")


def _mul_(data, other):
    np.multiply(data, _value(other), out=data, casting="same_kind")


def _div_(data, other):
    np.true_divide(data, _value(other), out=data, casting="same_kind")


def _pow_(data, other):
    np.power(data, _value(other), out=data, casting="same_kind")


def _fill_(data, value):
    data[...] = _value(value)


def _zero_(data):
    data[...] = 0


def _copy_(data, src):
    src = _value(src)
    try:
        np.copyto(data, np.broadcast_to(src, data.shape), casting="unsafe")
    except ValueError:
        raise ValueError(
            f"copy_: can't copy a source of shape {np.shape(src)} into a tensor of shape "
            f"{data.shape}") from None


def _clamp_(data, min=None, max=None):
    np.clip(data, min, max, out=data)


def _uniform_(data, a=0.0, b=1.0, generator=None):
    from ..random import _generator

    data[...] = _generator(generator).uniform(a, b, data.shape)


def _normal_(data, mean=0.0, std=1.0, generator=None):
    from ..random import _generator

    data[...] = _generator(generator).normal(mean, std, data.shape)


def _setitem(data, key, value):
    key, _ = shape._index_key(key)
    data[key] = _value(value)


_attach("add_", _inplace("add_", _add_))
_attach("sub_", _inplace("sub_", _sub_))
_attach("mul_", _inplace("mul_", _mul_))
_attach("div_", _inplace("div_", _div_))
_attach("pow_", _inplace("pow_", _pow_))
_attach("fill_", _inplace("fill_", _fill_))
_attach("zero_", _inplace("zero_", _zero_))
_attach("copy_", _inplace("copy_", _copy_))
_attach("clamp_", _inplace("clamp_", _clamp_))
_attach("uniform_", _inplace("uniform_", _uniform_))
_attach("normal_", _inplace("normal_", _normal_))
_attach("__setitem__", _inplace("__setitem__", _setitem))


def _augmented(op, inplace, outofplace):
    def method(self, other):
        # Python's `x += y`: in place where PyTorch would be, out of place inside a graph
        if _grad_state.enabled and (self.requires_grad or
                                    isinstance(other, Tensor) and other.requires_grad):
            if self.requires_grad and self._ctx is None:
                _check_inplace(self, op)
            return outofplace(self, other)
        inplace(self.data, other)
        self._version += 1
        return self

    return method


_attach("__iadd__", _augmented("__iadd__", _add_, ew.add))
_attach("__isub__", _augmented("__isub__", _sub_, ew.sub))
_attach("__imul__", _augmented("__imul__", _mul_, ew.mul))
_attach("__itruediv__", _augmented("__itruediv__", _div_, ew.div))
