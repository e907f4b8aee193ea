"""``Parameter``: a tensor that a Module registers as trainable."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, _as_array


class Parameter(Tensor):
    """A tensor that is a module's trainable weight: assigning it to a Module attribute
    registers it, and it requires grad unless told otherwise.

    Args:
        data: the initial values (an ndarray is used as is).
        requires_grad: whether the optimizer should train it (default True).
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad: bool = True) -> None:
        if data is None:
            data = np.empty((0,), np.float32)
        super().__init__(_as_array(data), requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Buffer(Tensor):
    """Marks a tensor to be registered as a module buffer when assigned (like ``torch.nn.Buffer``)."""

    __slots__ = ("persistent",)

    def __init__(self, data, persistent: bool = True) -> None:
        super().__init__(_as_array(data))
        self.persistent = persistent
