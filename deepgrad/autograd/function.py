"""The ``Function`` base class: one differentiable op, forward and backward side by side.

A Function instance is also the op's node in the graph. ``apply`` runs ``forward`` on raw arrays;
when grad mode is on and some input requires grad, it records the node on the outputs so that
``engine.backward`` can call ``backward`` later.
"""
from __future__ import annotations

import weakref

import numpy as np

from ..tensor import Tensor, _make
from .grad_mode import state as _grad_state


class Function:
    """Base class of differentiable operations, used for the built-in ops and for users' own.

    Subclasses define ``forward(self, *args, **params)`` taking arrays (each Tensor argument of
    ``apply`` arrives as its ndarray; other arguments arrive unchanged) and returning an array or
    a tuple of arrays, and ``backward(self, *grads)`` taking one gradient array per output and
    returning one gradient per positional argument of ``forward`` (``None`` where
    ``self.needs_input_grad[i]`` is false or the argument is not a tensor). A gradient may have
    the broadcast shape of the output; the engine sums it down to the input's shape.
    ``backward`` must not modify its incoming gradient in place: it can be shared.

    Keep on ``self`` only what backward needs; it is dropped after backward unless
    ``retain_graph=True``.

    Class attributes tell the engine what the op keeps, for its in-place checks:
    ``saves_inputs`` (default True) if backward reads input arrays, ``saves_output`` if it reads
    the output array.

    Example:
        >>> class Cube(Function):
        ...     def forward(self, x):
        ...         self.x = x
        ...         return x ** 3
        ...     def backward(self, grad):
        ...         return (grad * 3 * self.x ** 2,)
        >>> y = Cube.apply(deepgrad.tensor([2.0], requires_grad=True))
    """

    __slots__ = ("inputs", "needs_input_grad", "_saved_versions", "_out_ref", "_n_out",
                 "_freed", "_hooks", "__dict__", "__weakref__")
    inputs: tuple
    needs_input_grad: tuple  # per input: does backward need to return its gradient

    saves_inputs = True
    saves_output = False
    xp = np  # op math uses self.xp; a CuPy backend would set it per call

    def forward(self, *args, **params):
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def backward(self, *grads):
        raise NotImplementedError(
            f"{type(self).__name__}.backward is not implemented; this op is not differentiable")

    @classmethod
    def apply(cls, *args, **params):
        """Run the op on tensors (and plain values) and return the output tensor(s)."""
        fn = cls.__new__(cls)
        # plain loops, not comprehensions: on Python 3.11 each comprehension is a function
        # call, and four of them were most of this method's 1.8 us
        data = []
        record = False
        if _grad_state.enabled:
            needs = []
            for a in args:
                if isinstance(a, Tensor):
                    data.append(a.data)
                    if a.requires_grad:
                        needs.append(True)
                        record = True
                        continue
                else:
                    data.append(a)
                needs.append(False)
            fn.needs_input_grad = tuple(needs)
        else:
            for a in args:
                data.append(a.data if isinstance(a, Tensor) else a)
            fn.needs_input_grad = (False,) * len(args)
        out = fn.forward(*data, **params)
        if not record:
            if type(out) is tuple:
                return tuple([_make(o) for o in out])
            return _make(out)

        inputs = []
        saved = []
        for a, n in zip(args, needs):
            inputs.append(a if n else None)
            if isinstance(a, Tensor):
                saved.append((a, a._version))
        fn.inputs = tuple(inputs)
        fn._freed = False
        fn._hooks = None
        fn._out_ref = None
        fn._saved_versions = tuple(saved) if cls.saves_inputs else ()
        if type(out) is tuple:
            fn._n_out = len(out)
            fn._out_shapes = tuple([o.shape for o in out])
            fn._out_dtypes = tuple([o.dtype for o in out])
            # integer outputs (indices) are not differentiable and stay out of the graph
            outs = tuple([_make(o, True, fn, i) if o.dtype.kind == "f" else _make(o)
                          for i, o in enumerate(out)])
            if cls.saves_output:
                fn._out_ref = [weakref.ref(o) for o in outs]
            return outs
        fn._n_out = 1
        y = _make(out, True, fn, 0)
        if cls.saves_output:
            fn._out_ref = (weakref.ref(y),)
        return y

    # -- used by the engine -------------------------------------------------------------
    def _check_versions(self) -> None:
        t: Tensor
        v: int
        for t, v in self._saved_versions:
            if t._version != v:
                raise RuntimeError(
                    f"{type(self).__name__}: an input of shape {t.shape} was changed by an "
                    f"in-place operation (version {v} -> {t._version}) after the op used it, but "
                    "backward needs its original value. Apply the in-place change after "
                    "backward, or use the out-of-place op (x = x + 1 instead of x.add_(1)).")
        if self._out_ref is not None:
            for ref in self._out_ref:
                y = ref()
                if y is not None and y._version != 0:
                    raise RuntimeError(
                        f"{type(self).__name__}: its output of shape {y.shape} was changed by an "
                        "in-place operation, but backward needs its original value. Clone the "
                        "output before changing it in place.")

    def _release(self) -> None:
        """Drop saved arrays and the links to inputs so memory goes back after backward.

        A released node is a dead end for the graph walk; reaching it again with a gradient
        raises the "backward a second time" error.
        """
        self.__dict__.clear()
        self._saved_versions = ()
        self._out_ref = None
        self._freed = True
        self.inputs = ()

    @property
    def name(self) -> str:
        return type(self).__name__ + "Backward"

    def __repr__(self) -> str:
        return f"<{self.name}>"
