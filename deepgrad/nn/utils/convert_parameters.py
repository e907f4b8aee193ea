"""Parameters to and from one flat vector."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor, _make


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """Concatenate the parameters' values into one 1-d tensor (a copy)."""
    arrays = [p.data.ravel() for p in parameters]
    return _make(np.concatenate(arrays) if arrays else np.zeros(0, np.float32))


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of ``vec`` into the parameters, in place."""
    params = list(parameters)
    total = sum(p.data.size for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(
            f"vector_to_parameters: expected a 1-d vector of {total} values, got shape "
            f"{vec.shape}")
    offset = 0
    with no_grad():
        for p in params:
            n = p.data.size
            p.data[...] = vec.data[offset:offset + n].reshape(p.shape)
            p._version += 1
            offset += n
