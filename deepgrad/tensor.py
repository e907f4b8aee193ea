"""``Tensor``: an ndarray, and what autograd needs to know about it.

The class holds state and the Python protocol (operators, repr, conversion). The math of every
differentiable op lives in ``deepgrad.ops``; the methods here are those functions attached to the
class at the bottom of this file, so ``x.exp()`` and ``deepgrad.exp(x)`` are one code path.
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from . import backend
from .autograd.grad_mode import state as _grad_state


class Tensor:
    """A multi-dimensional array that can record the operations applied to it.

    Args:
        data: an ndarray (used as is, no copy) or anything ``numpy.asarray`` takes; Python
            floats become float32 (the default dtype), ints int64, bools bool.
        requires_grad: record operations on this tensor so that ``backward`` fills ``.grad``.
        dtype: convert to this dtype.

    Example:
        >>> x = deepgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad
        tensor([2., 4., 6.])
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_out_idx", "_version", "_hooks",
                 "__weakref__")
    # NumPy must hand binary operators with a Tensor on the right back to the Tensor
    __array_ufunc__ = None

    def __init__(self, data: Any = (), requires_grad: bool = False, dtype=None) -> None:
        arr = _as_array(data, dtype)
        if requires_grad and arr.dtype.kind not in "fc":
            raise TypeError(f"Tensor: only floating-point tensors can require grad, got {arr.dtype}")
        self.data = arr
        self.grad: Tensor | None = None
        self.requires_grad = builtins.bool(requires_grad)
        self._ctx = None
        self._out_idx = 0
        self._version = 0
        self._hooks = None

    # -- attributes --------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    @property
    def T(self) -> Tensor:
        from .ops.shape import permute

        return permute(self, *range(self.data.ndim - 1, -1, -1))

    @property
    def mT(self) -> Tensor:
        from .ops.shape import transpose

        return transpose(self, -2, -1)

    def size(self, dim: int | None = None):
        if dim is None:
            return self.data.shape
        return self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return self.data.size

    def element_size(self) -> int:
        return self.data.itemsize

    def is_floating_point(self) -> bool:
        return self.data.dtype.kind == "f"

    # -- conversion --------------------------------------------------------------------
    def item(self):
        if self.data.size != 1:
            raise ValueError(
                f"item: only a tensor with one element can be converted to a Python number, "
                f"got shape {self.shape}")
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        if self.requires_grad and _grad_state.enabled:
            raise RuntimeError(
                "numpy: can't call numpy() on a tensor that requires grad; use "
                "tensor.detach().numpy() instead.")
        return self.data

    def tolist(self):
        return self.data.tolist()

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut from the graph."""
        return _make(self.data)

    def detach_(self) -> Tensor:
        self._ctx = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"requires_grad_: only floating-point tensors can require grad, got {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError(
                "requires_grad_: can't turn off requires_grad of a non-leaf tensor; "
                "use detach() to get a tensor outside the graph.")
        self.requires_grad = builtins.bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        if self._ctx is None:
            return
        import weakref

        ref = weakref.ref(self)

        def store(g: Tensor) -> None:
            t = ref()
            if t is not None:
                t.grad = _make(g.data.copy()) if t.grad is None else _make(t.grad.data + g.data)

        self.register_hook(store)

    def register_hook(self, hook):
        """Call ``hook(grad)`` with this tensor's gradient during backward.

        The hook may return a new gradient (same shape) that replaces it. Returns a handle
        whose ``remove()`` unregisters the hook.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "register_hook: can't register a hook on a tensor that does not require grad")
        if self._ctx is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if self._ctx._hooks is None:
                self._ctx._hooks = {}
            hooks = self._ctx._hooks.setdefault(self._out_idx, [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def backward(self, gradient=None, retain_graph: bool | None = None,
                 create_graph: bool = False) -> None:
        """Compute gradients of this tensor with respect to the leaves of its graph.

        Args:
            gradient: d(something)/d(self), needed unless this tensor has one element.
            retain_graph: keep saved values so that backward can run through the graph again.
        """
        if create_graph:
            raise NotImplementedError(
                "backward: create_graph=True (higher-order gradients) is not supported; "
                "deepgrad's backward is first-order.")
        _engine.backward(self, gradient, builtins.bool(retain_graph))

    def to(self, *args, **kwargs) -> Tensor:
        """Convert dtype: ``x.to(deepgrad.float64)``; device strings other than 'cpu' raise."""
        dtype = kwargs.pop("dtype", None)
        for a in list(args) + [kwargs.pop("device", None)]:
            if a is None:
                continue
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif isinstance(a, str) and not _is_dtype_string(a):
                if a.split(":")[0] != "cpu":
                    raise ValueError(f"to: device {a!r} is not available; deepgrad runs on 'cpu'")
            else:
                dtype = a
        if dtype is None or np.dtype(dtype) == self.data.dtype:
            return self
        return _cast(self, np.dtype(dtype))

    def type(self, dtype=None):
        if dtype is None:
            return "deepgrad." + self.data.dtype.name
        return self.to(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def half(self) -> Tensor:
        return self.to(np.float16)

    def long(self) -> Tensor:
        return self.to(np.int64)

    def int(self) -> Tensor:
        return self.to(np.int32)

    def bool(self) -> Tensor:
        return self.to(np.bool_)

    def cpu(self) -> Tensor:
        return self

    def contiguous(self) -> Tensor:
        return self

    # -- Python protocol ---------------------------------------------------------------
    def __len__(self) -> builtins.int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            return self.data.astype(dtype)
        if copy:
            return self.data.copy()
        return self.data

    def __bool__(self) -> builtins.bool:
        if self.data.size != 1:
            raise RuntimeError(
                f"bool: the truth value of a tensor with {self.data.size} elements is "
                "ambiguous; use .any() or .all()")
        return builtins.bool(self.data)

    def __float__(self) -> builtins.float:
        return builtins.float(self.item())

    def __int__(self) -> builtins.int:
        return builtins.int(self.item())

    def __index__(self) -> builtins.int:
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return builtins.int(self.data)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return _format(self)

    def __getstate__(self):
        raise TypeError(
            "Tensor: pickling is not supported (checkpoints use safetensors); "
            "use deepgrad.save / deepgrad.load")


class _HookHandle:
    __slots__ = ("_hooks", "_hook")

    def __init__(self, hooks: list, hook) -> None:
        self._hooks = hooks
        self._hook = hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


_new = object.__new__


def _make(a, requires_grad: builtins.bool = False, ctx=None, idx: builtins.int = 0) -> Tensor:
    """Wrap an array without checks: the fast constructor used by ops."""
    t = _new(Tensor)
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    t.data = a
    t.grad = None
    t.requires_grad = requires_grad
    t._ctx = ctx
    t._out_idx = idx
    t._version = 0
    t._hooks = None
    return t


def _infer_array(data) -> np.ndarray:
    """``numpy.asarray`` with PyTorch's dtype rules for Python data."""
    if isinstance(data, Tensor):
        return data.data
    if isinstance(data, np.ndarray):
        return data
    if isinstance(data, (list, tuple)) and data and any(isinstance(d, Tensor) for d in data):
        data = [d.data if isinstance(d, Tensor) else d for d in data]
    arr = np.asarray(data)
    if arr.dtype == np.float64 and not isinstance(data, np.generic):
        arr = arr.astype(backend.get_default_dtype())
    elif arr.dtype.kind in "iu" and not isinstance(data, (np.ndarray, np.generic)):
        arr = arr.astype(np.int64)
    elif arr.dtype == object:
        raise TypeError(f"tensor: can't convert data of type {type(data).__name__} to a tensor")
    return arr


def _as_array(data, dtype=None) -> np.ndarray:
    arr = _infer_array(data)
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype), copy=False)
    return arr


def _is_dtype_string(s: str) -> builtins.bool:
    try:
        np.dtype(s)
    except TypeError:
        return False
    return s not in ("cpu", "cuda")


def _format(t: Tensor) -> str:
    a = t.data
    kw: dict[str, Any] = {"separator": ", ", "prefix": "tensor("}
    if a.dtype.kind == "f" and a.size:
        finite = a[np.isfinite(a)]
        if finite.size and np.all(finite == np.round(finite)) and np.abs(finite).max() < 1e8:
            kw["formatter"] = {"float_kind": lambda v: f"{v:.0f}." if np.isfinite(v) else str(v)}
        else:
            kw["precision"] = 4
            kw["floatmode"] = "fixed"
    body = np.array2string(a, **kw)
    extras = []
    if a.dtype not in (backend.get_default_dtype(), np.int64, np.bool_):
        extras.append(f"dtype={backend.dtype_name(a.dtype)}")
    if t._ctx is not None:
        extras.append(f"grad_fn=<{t._ctx.name}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"


def _cast(x: Tensor, dtype: np.dtype) -> Tensor:
    from .ops.elementwise import cast

    return cast(x, dtype)


# Attach the ops as methods; imported here because the ops import Tensor.
from .ops import _methods  # noqa: E402,F401
from .autograd import engine as _engine  # noqa: E402
