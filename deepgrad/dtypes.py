"""PyTorch's dtype names, as NumPy dtypes (``deepgrad.float32 == numpy.dtype('float32')``).

Kept apart from everything else because the short names (``float``, ``int``, ``bool``) shadow
Python's built-ins inside this module.
"""
import numpy as np

float16 = half = np.dtype(np.float16)
float32 = float = np.dtype(np.float32)
float64 = double = np.dtype(np.float64)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
int16 = short = np.dtype(np.int16)
int32 = int = np.dtype(np.int32)
int64 = long = np.dtype(np.int64)
bool = np.dtype(np.bool_)  # noqa: A001

