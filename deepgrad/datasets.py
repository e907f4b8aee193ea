"""``deepgrad.datasets``: shorthand for ``deepgrad.data.datasets`` (``deepgrad.datasets.MNIST``)."""
from __future__ import annotations

from .data import datasets as _datasets
from .data.datasets import *  # noqa: F401,F403  (the same names, by design)

__all__ = list(_datasets.__all__)
