"""Pictures of training: loss and error curves (``plot_curves``; needs matplotlib)."""
from __future__ import annotations

from .plots import plot_curves

__all__ = ["plot_curves"]
