"""Optimizers and learning-rate schedulers, with PyTorch's classes, arguments and algorithms.

Example:
    >>> opt = deepgrad.optim.Adam(model.parameters(), lr=1e-3)
    >>> sched = deepgrad.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
"""
from __future__ import annotations

from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
