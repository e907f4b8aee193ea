"""Neural-network layers and tools: ``Module``, layers, ``functional``, ``init``, ``utils``."""
from . import functional, init  # noqa: F401
from .module import Module  # noqa: F401
from .modules import *  # noqa: F401,F403
from .parameter import Buffer, Parameter  # noqa: F401
from . import utils  # noqa: F401
from .summary import ModelSummary, summary  # noqa: F401
