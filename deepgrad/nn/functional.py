"""Stateless forms of the layers (``deepgrad.nn.functional``, imported as ``F``).

Thin: the math lives in ``deepgrad.ops``; this module only gathers the public functions.
"""
from ..ops.conv import *  # noqa: F401,F403
from ..ops.elementwise import relu, sigmoid, tanh  # noqa: F401
from ..ops.linalg import linear  # noqa: F401
from ..ops.nn_ops import *  # noqa: F401,F403
from ..ops.shape import pad  # noqa: F401
