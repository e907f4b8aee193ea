"""Containers: ``Sequential``, ``ModuleList``, ``ModuleDict``."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator

from ..module import Module
from .activation import ReLU, Sigmoid, Tanh
from .conv import Conv1d, Conv2d
from .linear import Linear

__all__ = ["Sequential", "ModuleList", "ModuleDict"]

# exact types only: a subclass may change what forward does
_FUSING_LAYERS = (Linear, Conv1d, Conv2d)
_ACTIVATIONS = {ReLU: "relu", Sigmoid: "sigmoid", Tanh: "tanh"}


class Sequential(Module):
    """Modules applied one after another; each takes the previous one's output.

    A ``Linear``, ``Conv1d`` or ``Conv2d`` followed by ``ReLU``, ``Sigmoid`` or ``Tanh`` runs as
    one autograd node (``ops/fused.py``) with the same results, bit for bit, unless a hook on
    either module or an instance ``forward`` asks to see them separately.

    Args:
        *args: modules, or a single ``OrderedDict`` of named modules.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> net[0].weight.shape
        (8, 2)
    """

    def __init__(self, *args: Module) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def forward(self, input):
        for module, activation in self._steps():
            if activation is None:
                input = module(input)
            elif (module._forward_hooks or module._forward_pre_hooks
                  or activation._forward_hooks or activation._forward_pre_hooks
                  or "forward" in module.__dict__ or "forward" in activation.__dict__):
                input = activation(module(input))  # hooks see both as they are
            else:
                input = module._call_activated(_ACTIVATIONS[type(activation)], input)
        return input

    def _steps(self) -> tuple:
        """``(module, activation or None)`` pairs to run: a ``Linear`` or convolution and
        the ``ReLU``, ``Sigmoid`` or ``Tanh`` right after it become one op (``ops/fused.py``:
        the same bits, one node and one array fewer). Worked out again when the modules
        change."""
        modules = tuple(self._modules.values())
        cached = self.__dict__.get("_steps_cache")
        if cached is not None and cached[0] == modules:
            return cached[1]
        steps = []
        k = 0
        while k < len(modules):
            m = modules[k]
            nxt = modules[k + 1] if k + 1 < len(modules) else None
            if type(m) in _FUSING_LAYERS and type(nxt) in _ACTIVATIONS:
                steps.append((m, nxt))
                k += 2
            else:
                steps.append((m, None))
                k += 1
        self.__dict__["_steps_cache"] = (modules, tuple(steps))
        return self.__dict__["_steps_cache"][1]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return (m for m in self._modules.values() if m is not None)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_index(self, idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        key = list(self._modules.keys())[_index(self, idx)]
        self.add_module(key, module)

    def __delitem__(self, idx) -> None:
        keys = list(self._modules.keys())
        for key in (keys[idx] if isinstance(idx, slice) else [keys[_index(self, idx)]]):
            delattr(self, key)
        # keep integer keys contiguous, as PyTorch does
        items = list(self._modules.items())
        for key, _ in items:
            self._discard(key)
            self.__dict__.pop(key, None)
        for i, (_, module) in enumerate(items):
            self.add_module(str(i), module)

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        items = list(self._modules.values())
        n = len(items)
        if not -n <= index <= n:
            raise IndexError(f"Sequential.insert: index {index} out of range for length {n}")
        items.insert(index % (n + 1) if index < 0 else index, module)
        for key in list(self._modules.keys()):
            self._discard(key)
            self.__dict__.pop(key, None)
        for i, m in enumerate(items):
            self.add_module(str(i), m)
        return self


def _index(container: Module, idx: int) -> int:
    n = len(container._modules)
    if not isinstance(idx, int):
        raise TypeError(f"{type(container).__name__}: index must be an int or slice, got {idx!r}")
    if not -n <= idx < n:
        raise IndexError(f"{type(container).__name__}: index {idx} is out of range for length {n}")
    return idx % n


class ModuleList(Module):
    """A list of modules, registered so their parameters are found. Has no forward."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return (m for m in self._modules.values() if m is not None)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(_index(self, idx))]

    def __setitem__(self, idx: int, module: Module) -> None:
        self.add_module(str(_index(self, idx)), module)

    def __delitem__(self, idx) -> None:
        items = list(self._modules.values())
        del items[idx]
        for key in list(self._modules.keys()):
            self._discard(key)
            self.__dict__.pop(key, None)
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = list(self._modules.values())
        items.insert(index, module)
        for key in list(self._modules.keys()):
            self._discard(key)
            self.__dict__.pop(key, None)
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList(list(self) + list(other))


class ModuleDict(Module):
    """A dict of modules by name, registered so their parameters are found. Has no forward."""

    def __init__(self, modules=None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        module = self._modules[key]
        assert module is not None  # ModuleDict never stores None
        return module

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def pop(self, key: str) -> Module:
        module = self[key]
        delattr(self, key)
        return module

    def clear(self) -> None:
        for key in list(self._modules):
            delattr(self, key)

    def update(self, modules) -> None:
        items = modules.items() if hasattr(modules, "items") else modules
        for key, module in items:
            self[key] = module
