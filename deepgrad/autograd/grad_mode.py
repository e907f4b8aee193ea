"""Grad mode: whether ops record the graph.

One process-wide flag, read on every op, so it is a plain attribute of a tiny object rather than
a thread-local (which costs more per read). deepgrad does not train from several threads.
"""
from __future__ import annotations

import functools


class _GradState:
    __slots__ = ("enabled",)

    def __init__(self) -> None:
        self.enabled = True


state = _GradState()


def is_grad_enabled() -> bool:
    """True when operations record the graph for backward."""
    return state.enabled


class _GradModeContext:
    """Base of the grad-mode switches: usable with ``with`` and as a decorator."""

    _target: bool

    def __enter__(self) -> None:
        self._prev = state.enabled
        state.enabled = self._target

    def __exit__(self, *exc) -> None:
        state.enabled = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper

    def _fresh(self):
        return self.__class__()


class no_grad(_GradModeContext):
    """Context manager and decorator that stops recording the graph.

    Example:
        >>> with deepgrad.no_grad():
        ...     w.add_(w.grad, alpha=-0.1)
    """

    _target = False


class enable_grad(_GradModeContext):
    """Context manager and decorator that turns recording back on inside ``no_grad``."""

    _target = True


class set_grad_enabled(_GradModeContext):
    """Set grad mode on or off: as a function call, a context manager or a decorator."""

    def __init__(self, mode: bool) -> None:
        self._target = bool(mode)
        self._prev = state.enabled
        state.enabled = self._target

    def __enter__(self) -> None:
        pass  # already switched in __init__, as PyTorch does, so a bare call works too

    def _fresh(self):
        return set_grad_enabled(self._target)

    def __call__(self, fn):
        state.enabled = self._prev  # used as a decorator: undo the switch made by __init__
        return super().__call__(fn)
