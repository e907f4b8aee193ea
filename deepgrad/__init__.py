"""deepgrad: a deep-learning library built from first principles on NumPy.

Tensors with reverse-mode autograd and PyTorch's API; see README.md.
"""
from __future__ import annotations

__version__ = "0.1.0"

import builtins as _builtins  # deepgrad.bool (a dtype) shadows the builtin below

from . import autograd
from .autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import get_default_dtype, set_default_dtype
from .creation import (arange, as_tensor, bernoulli, empty, empty_like, eye, from_numpy, full,
                       full_like, is_tensor, linspace, logspace, normal, numel, ones, ones_like,
                       rand, rand_like, randint, randint_like, randn, randn_like, randperm,
                       tensor, zeros, zeros_like)
from .dtypes import (bool, double, float, float16, float32, float64, half, int, int8, int16,
                     int32, int64, long, short, uint8)
from .ops.elementwise import (abs, add, allclose, ceil, clamp, clip, clone, cos, div, eq,
                              equal, exp, floor, ge, gt, isfinite, isinf, isnan, le, log,
                              logical_and, logical_not, logical_or, lt, maximum, minimum, mul,
                              ne, neg, pow, relu, round, sigmoid, sign, sin, sqrt, square, sub,
                              tanh, where)
from .ops.linalg import bmm, dot, matmul, mm
from .ops.nn_ops import log_softmax, softmax
from .ops.reduce import (all, amax, amin, any, argmax, argmin, logsumexp, max, mean, min,
                         prod, std, sum, var)
from .ops.shape import (broadcast_to, cat, chunk, concat, concatenate, expand, flatten, pad,
                        permute, repeat, reshape, split, squeeze, stack, swapaxes, t, transpose,
                        unbind, unflatten, unsqueeze)
from .random import Generator, default_generator, get_rng_state, initial_seed, manual_seed, \
    seed, set_rng_state
from .tensor import Tensor
from . import nn  # noqa: E402
from .nn.summary import summary  # noqa: E402

subtract = sub
multiply = mul
divide = div
negative = neg
absolute = abs

# Submodules that pull in more code than the core are loaded on first use, so that
# `import deepgrad` stays fast.
_LAZY_SUBMODULES = ("optim", "data", "datasets", "io", "models", "train", "viz", "cli")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'deepgrad' has no attribute {name!r}")


def save(obj, f) -> None:
    """Save tensors and metadata (a state dict, a checkpoint) to ``f``: safetensors + JSON,
    written atomically. See ``deepgrad.io.save``."""
    from .io import save as _save

    _save(obj, f)


def load(f, map_location=None, weights_only: _builtins.bool = True):
    """Load what ``save`` wrote. Never runs code from the file. See ``deepgrad.io.load``."""
    from .io import load as _load

    return _load(f)
