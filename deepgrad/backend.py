"""Array backend and dtype helpers.

Op math is written against ``xp``, the array module of its inputs. Today that is always NumPy;
the indirection keeps the door open for CuPy without touching the ops. Nothing here runs at
import time beyond defining names.
"""
from __future__ import annotations

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

_default_float = [float32]


def get_default_dtype() -> np.dtype:
    """The dtype given to tensors made from Python floats (float32 unless changed)."""
    return _default_float[0]


def set_default_dtype(dtype) -> None:
    """Set the dtype of tensors made from Python floats; float32 or float64."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dt}")
    _default_float[0] = dt


def get_array_module(*arrays):
    """Return the array module (``numpy`` or ``cupy``) that owns ``arrays``."""
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy  # optional accelerator, imported only when its arrays appear

            return cupy
    return np


def is_floating(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """Type promotion as PyTorch does it for two tensors.

    NumPy promotes int64 with float32 to float64; PyTorch keeps the float type of the float
    operand, which is what keeps float32 models in float32.
    """
    if a == b:
        return a
    ka, kb = a.kind, b.kind
    fa, fb = ka == "f", kb == "f"
    if fa and not fb:
        return a
    if fb and not fa:
        return b
    return np.promote_types(a, b)


def dtype_name(dtype) -> str:
    return "deepgrad." + np.dtype(dtype).name
