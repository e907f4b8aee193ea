"""``Module``: the base class of layers and models, with PyTorch's registration rules.

Parameters, buffers and sub-modules assigned as attributes are registered by name, which is
what ``parameters()``, ``state_dict()`` and ``load_state_dict()`` walk. Registered values are
also kept in the instance ``__dict__`` so that reading ``self.weight`` in ``forward`` is a plain
attribute lookup, not a ``__getattr__`` fallback.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterator

import numpy as np

from .. import _native
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, _make
from .parameter import Buffer, Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

_EXCEPTIONS_WITH_PATH = (ValueError, TypeError, RuntimeError, IndexError)


class _CallDepth:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


_depth = _CallDepth()


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, assign their parameters, buffers and
    sub-modules as attributes, and define ``forward``. Calling the module runs ``forward``;
    an error raised inside is prefixed with the path of the module that raised it in the
    model, e.g. ``features.3 (Conv2d): ...``.

    Example:
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.Linear(4, 2)
        ...     def forward(self, x):
        ...         return self.fc(x).relu()
    """

    training: bool
    _parameters: OrderedDict[str, Parameter | None]
    _buffers: OrderedDict[str, Tensor | None]
    _non_persistent_buffers: set[str]
    _modules: OrderedDict[str, Module | None]
    _forward_hooks: OrderedDict
    _forward_pre_hooks: OrderedDict

    def __init__(self) -> None:
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()
        d["training"] = True
        # parameters are allocated next: load the native kernels first, and with them the
        # memory handler that starts arrays on cache lines (deepgrad/_native/memory.py)
        _native.prepare()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: forward() is not defined")

    # -- calling ---------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        depth = _depth
        depth.n += 1
        try:
            if self._forward_pre_hooks or self._forward_hooks:
                return self._call_with_hooks(args, kwargs)
            return self.forward(*args, **kwargs)
        except _EXCEPTIONS_WITH_PATH as e:
            _record_path(e, self, depth.n == 1)
            raise
        finally:
            depth.n -= 1

    def _call_activated(self, activation: str, input):
        """``activation(self(input))`` as one op, for a layer with ``_forward_activated``
        (``Sequential`` calls it); an error names this layer, as a call would."""
        depth = _depth
        depth.n += 1
        try:
            return self._forward_activated(input, activation)
        except _EXCEPTIONS_WITH_PATH as e:
            _record_path(e, self, depth.n == 1)
            raise
        finally:
            depth.n -= 1

    def _call_with_hooks(self, args, kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            out = hook(self, args)
            if out is not None:
                args = out if isinstance(out, tuple) else (out,)
        result = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            out = hook(self, args, result)
            if out is not None:
                result = out
        return result

    def register_forward_hook(self, hook: Callable) -> _RemovableHandle:
        """Call ``hook(module, args, output)`` after every forward; it may replace the output."""
        return _RemovableHandle(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """Call ``hook(module, args)`` before every forward; it may replace the inputs."""
        return _RemovableHandle(self._forward_pre_hooks, hook)

    # -- registration ----------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        params = d.get("_parameters")
        if params is None:
            raise AttributeError(
                f"{type(self).__name__}: cannot assign attributes before Module.__init__(); "
                "call super().__init__() first")
        if isinstance(value, Parameter):
            self._discard(name)
            params[name] = value
        elif isinstance(value, Module):
            self._discard(name)
            d["_modules"][name] = value
        elif isinstance(value, Buffer):
            self._discard(name)
            self.register_buffer(name, _make(value.data), value.persistent)
            return
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}: cannot assign {type(value).__name__} to parameter "
                    f"'{name}'; expected a Parameter or None")
            params[name] = None
        elif name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}: cannot assign {type(value).__name__} to submodule "
                    f"'{name}'; expected a Module or None")
            d["_modules"][name] = None
        elif name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: cannot assign {type(value).__name__} to buffer "
                    f"'{name}'; expected a Tensor or None")
            d["_buffers"][name] = value
        d[name] = value

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: registered values live in __dict__ too, so
        # this is the error path (and keeps type checkers aware of dynamic attributes)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _discard(self, name: str) -> None:
        d = self.__dict__
        for registry in (d["_parameters"], d["_buffers"], d["_modules"]):
            registry.pop(name, None)
        d["_non_persistent_buffers"].discard(name)

    def __delattr__(self, name: str) -> None:
        if name in self.__dict__.get("_parameters", ()) or name in self.__dict__.get(
                "_buffers", ()) or name in self.__dict__.get("_modules", ()):
            self._discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None, for an optional parameter that is absent) as ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"register_parameter: '{name}' must be a Parameter or None, got "
                f"{type(param).__name__}")
        if "." in name or name == "":
            raise KeyError(f"register_parameter: invalid name {name!r}")
        self._discard(name)
        self._parameters[name] = param
        self.__dict__[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register non-trainable state (e.g. running statistics), saved in ``state_dict``
        unless ``persistent=False``."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"register_buffer: '{name}' must be a Tensor or None, got {type(tensor).__name__}")
        if "." in name or name == "":
            raise KeyError(f"register_buffer: invalid name {name!r}")
        self._discard(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)
        self.__dict__[name] = tensor

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module")
        if "." in name or name == "":
            raise KeyError(f"add_module: invalid name {name!r}")
        self._discard(name)
        self._modules[name] = module
        self.__dict__[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        mod = self
        for part in target.split(".") if target else []:
            child = mod._modules.get(part)
            if child is None:
                raise AttributeError(
                    f"get_submodule: {type(mod).__name__} has no submodule {part!r}")
            mod = child
        return mod

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        param = mod._parameters.get(name)
        if param is None:
            raise AttributeError(f"get_parameter: {type(mod).__name__} has no parameter {name!r}")
        return param

    # -- iteration -------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """Yield ``(path, module)`` for this module and every module below it."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, mod in self._modules.items():
            if mod is None:
                continue
            yield from mod.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                         remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, mod in self._modules.items():
            if mod is not None and id(mod) not in seen:
                seen.add(id(mod))
                yield name, mod

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for path, mod in mods:
            for name, value in getattr(mod, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{path}.{name}" if path else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        """Yield ``(name, parameter)``, names as in ``state_dict`` (e.g. ``'0.weight'``)."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -- modes and bulk changes ------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode here and in every sub-module (dropout, batch norm)."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be a bool, got {mode!r}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.data.fill(0)

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every sub-module (children first) and then on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args, **kwargs) -> Module:
        """Convert floating-point parameters and buffers to a dtype, in place."""
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, str) and a.split(":")[0] in ("cpu",):
                continue
            if isinstance(a, str) and a.split(":")[0] not in ("cpu",):
                try:
                    np.dtype(a)
                except TypeError:
                    raise ValueError(f"to: device {a!r} is not available; deepgrad runs on 'cpu'")
            dtype = a
        if dtype is None:
            return self
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"to: modules convert only to floating dtypes, got {dt}")
        for t in list(self.parameters()) + list(self.buffers()):
            if t.data.dtype.kind == "f" and t.data.dtype != dt:
                t.data = t.data.astype(dt)
                if t.grad is not None:
                    t.grad.data = t.grad.data.astype(dt)
        return self

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    def half(self) -> Module:
        return self.to(np.float16)

    def cpu(self) -> Module:
        return self

    # -- state -----------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by dotted name, in PyTorch's key layout."""
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, mod in self._modules.items():
            if mod is not None:
                mod.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into this module's parameters and buffers, in place.

        Values may be tensors, ndarrays or anything ``numpy.asarray`` takes (e.g. a
        PyTorch tensor's ``.numpy()``). Shape mismatches always raise; with ``strict=True``
        missing and unexpected keys raise too, each listed by name. Nothing is changed when
        an error is raised.
        """
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        staged = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            arr = value.data if isinstance(value, Tensor) else np.asarray(value)
            if arr.shape != target.data.shape:
                errors.append(
                    f"shape mismatch for '{key}'; checkpoint {tuple(arr.shape)}, model "
                    f"{target.data.shape}")
                continue
            staged.append((target, arr))
        if strict:
            if missing:
                errors.append("missing keys: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                errors.append("unexpected keys: " + ", ".join(repr(k) for k in unexpected))
        if errors:
            raise RuntimeError(
                f"load_state_dict: error(s) loading into {type(self).__name__}:\n  "
                + "\n  ".join(errors))
        with no_grad():
            for target, arr in staged:
                np.copyto(target.data, arr, casting="unsafe")
                target._version += 1
        return IncompatibleKeys(missing, unexpected)

    # -- repr ------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The constructor arguments shown in ``repr``; layers override this."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, mod in self._modules.items():
            body = repr(mod).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not lines:
            return f"{self._get_name()}()"
        if len(lines) == 1 and not self._modules:
            return f"{self._get_name()}({lines[0]})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()))

    def __getstate__(self):
        raise TypeError(
            "Module: pickling is not supported (checkpoints use safetensors); save "
            "model.state_dict() with deepgrad.save")


class _RemovableHandle:
    def __init__(self, registry: OrderedDict, hook) -> None:
        self._registry = registry
        self._key = object()
        registry[self._key] = hook

    def remove(self) -> None:
        self._registry.pop(self._key, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _record_path(e: BaseException, module: Module, outermost: bool) -> None:
    """Collect the modules an error passed through; at the top, prefix the message with the
    path of the innermost one (e.g. ``features.3 (Conv2d): ...``)."""
    chain = e.__dict__.get("_deepgrad_modules")
    if chain is None:
        if e.__dict__.get("_deepgrad_done"):
            return
        chain = e.__dict__["_deepgrad_modules"] = []
    chain.append(module)
    if not outermost:
        return
    del e.__dict__["_deepgrad_modules"]
    e.__dict__["_deepgrad_done"] = True
    names = []
    outer_first = chain[::-1]
    for parent, child in zip(outer_first, outer_first[1:]):
        for name, m in parent._modules.items():
            if m is child:
                names.append(name)
                break
    inner = chain[0]
    path = ".".join(names)
    label = f"{path} ({type(inner).__name__})" if path else type(inner).__name__
    if e.args and isinstance(e.args[0], str):
        e.args = (f"{label}: {e.args[0]}",) + e.args[1:]
    else:
        e.args = (f"{label}: {e.args[0] if e.args else type(e).__name__}",) + e.args[1:]
